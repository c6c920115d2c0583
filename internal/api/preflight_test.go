package api

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPreflight(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{CORSOrigin: "https://pages.example"}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()
	for _, path := range []string{"/api/events/v1/connect/", "/api/events/v1/connect"} {
		req, _ := http.NewRequest(http.MethodOptions, srv.URL+path+"?bindings=x", nil)
		req.Header.Set("Origin", "https://pages.example")
		req.Header.Set("Access-Control-Request-Method", "GET")
		req.Header.Set("Access-Control-Request-Headers", "authorization")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNoContent {
			t.Errorf("OPTIONS %s: %d, want 204", path, resp.StatusCode)
		}
		if got := resp.Header.Get("Access-Control-Allow-Origin"); got != "https://pages.example" {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Origin %q", path, got)
		}
		if got := resp.Header.Get("Access-Control-Allow-Headers"); !strings.Contains(got, "Authorization") {
			t.Errorf("OPTIONS %s: Access-Control-Allow-Headers %q, want Authorization named", path, got)
		}
	}
	// Other paths keep their 405.
	req, _ := http.NewRequest(http.MethodOptions, srv.URL+"/api/events/v1/ping", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("OPTIONS /api/events/v1/ping: %d, want 405", resp.StatusCode)
	}
}
