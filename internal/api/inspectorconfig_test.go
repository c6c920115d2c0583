package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
)

func TestInspectorConfig(t *testing.T) {
	t.Parallel()
	secret := [][]byte{[]byte("a secret of thirty-two bytes, ok")}
	public, err := access.ParseGrants(`[{"exchange": "public/", "routingKeyPattern": "#"}]`)
	if err != nil {
		t.Fatal(err)
	}
	authorizer := func(cfg access.Config) *access.Authorizer {
		a, err := access.Open(cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(a.Close)
		return a
	}
	for _, tc := range []struct {
		name string
		cfg  Config
		want inspectorConfig
	}{
		{"serve", Config{}, inspectorConfig{Exchanges: []string{}, AllowedExchanges: []string{}}},
		{"serve with allowed exchanges", Config{Limits: binding.Limits{AllowedExchanges: []string{"exchange/a/", "b"}}},
			inspectorConfig{Exchanges: []string{}, AllowedExchanges: []string{"exchange/a/", "b"}}},
		{"dev", Config{Inspector: InspectorConfig{Dev: true, Exchanges: []string{"x", "amq.topic"}}},
			inspectorConfig{Dev: true, Exchanges: []string{"x", "amq.topic"}, AllowedExchanges: []string{}}},
		{"tokens required", Config{Access: authorizer(access.Config{HMACSecrets: secret})},
			inspectorConfig{Exchanges: []string{}, AllowedExchanges: []string{}, Tokens: "required"}},
		{"tokens beside a public part", Config{Access: authorizer(access.Config{HMACSecrets: secret, AnonymousGrants: public})},
			inspectorConfig{Exchanges: []string{}, AllowedExchanges: []string{}, Tokens: "optional"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(NewHandler(tc.cfg, nil, slog.New(slog.NewTextHandler(io.Discard, nil))))
			defer srv.Close()
			resp, err := http.Get(srv.URL + "/inspector/config.json")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var got inspectorConfig
			if err := json.NewDecoder(resp.Body).Decode(&got); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("%d %v", resp.StatusCode, err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("got %+v, want %+v", got, tc.want)
			}
			if csp := resp.Header.Get("Content-Security-Policy"); csp == "" {
				t.Error("no Content-Security-Policy: it is one of the inspector's files")
			}
		})
	}
}
