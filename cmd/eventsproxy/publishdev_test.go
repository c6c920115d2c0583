package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/sse"
)

// TestPublishIntoDev publishes with --dev-url into a running dev, on its
// amq.topic, and watches the message arrive on a stream.
func TestPublishIntoDev(t *testing.T) {
	base, _ := startDev(t, "--listen", "127.0.0.1:0", "--rate", "0")
	q, err := json.Marshal(map[string]any{"bindings": []map[string]string{{"exchange": "amq.topic", "routingKeyPattern": "a.#"}}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/api/events/v1/connect/?properties=1&bindings="+url.QueryEscape(string(q)), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	events := sse.NewReader(resp.Body)
	if ev, err := events.Next(); err != nil || ev.Kind != "ready" {
		t.Fatalf("first event %q (%v), want ready", ev.Kind, err)
	}

	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"publish", "--dev-url", base, "--exchange", "amq.topic", "--routing-key", "a.b", "--cc", "route.index.x",
		"--header", "x-trace=abc", "--content-type", "text/plain", `{"hello": "world"}`},
		envOf(map[string]string{"AMQP_URL": "amqp://ignored/"}), strings.NewReader(""), &stdout, &stderr)
	if code != 0 || !strings.Contains(stderr.String(), `published 18 bytes to exchange "amq.topic" with routing key "a.b"`) {
		t.Fatalf("publish: exit %d, stderr %q", code, stderr.String())
	}
	ev, err := events.Next()
	for err == nil && ev.Kind == "ping" {
		ev, err = events.Next()
	}
	if err != nil || ev.Kind != "message" {
		t.Fatalf("event %q (%v), want the message", ev.Kind, err)
	}
	var m struct {
		Exchange, RoutingKey string
		Routes               []string
		Payload              map[string]string
		Properties           struct{ ContentType string }
		Headers              map[string]any
	}
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatal(err)
	}
	if m.Exchange != "amq.topic" || m.RoutingKey != "a.b" || !reflect.DeepEqual(m.Routes, []string{"index.x"}) || m.Payload["hello"] != "world" ||
		m.Properties.ContentType != "text/plain" || !reflect.DeepEqual(m.Headers, map[string]any{"x-trace": "abc", "CC": []any{"route.index.x"}}) {
		t.Errorf("message %s", ev.Data)
	}

	stderr.Reset()
	code = run(ctx, []string{"publish", "--dev-url", base, "--exchange", "no/such", "--routing-key", "a", "{}"}, envOf(nil), strings.NewReader(""), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), `Exchange "no/such" does not exist.`) {
		t.Errorf("missing exchange: exit %d, stderr %q", code, stderr.String())
	}
}

// TestPublishDevURLNotDev points --dev-url at a server that is not dev,
// as serve is not: publish says so.
func TestPublishDevURLNotDev(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"code":"ResourceNotFound","message":"no such thing"}`))
	}))
	defer srv.Close()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"publish", "--dev-url", srv.URL, "--exchange", "amq.topic", "--routing-key", "a", "{}"}, envOf(nil), strings.NewReader(""), &stdout, &stderr)
	if code != 1 || !strings.Contains(stderr.String(), "is not an eventsproxy dev") {
		t.Errorf("exit %d, stderr %q", code, stderr.String())
	}

	stderr.Reset()
	code = run(context.Background(), []string{"publish", "--dev-url", srv.URL, "--amqp-url", "amqp://h/", "--exchange", "amq.topic", "--routing-key", "a", "{}"}, envOf(nil), strings.NewReader(""), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "do not go together") {
		t.Errorf("both: exit %d, stderr %q", code, stderr.String())
	}
}
