package api_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"eventsproxy/internal/api"
	"eventsproxy/internal/sse"
)

// FuzzConnect drives the whole request path, from the raw query string to
// the first event: whatever a client sends, it gets a 200 stream with one
// `error` event whose data is a single-line JSON string that says nothing of
// the broker, and then the end of the stream.
func FuzzConnect(f *testing.F) {
	seeds := []string{
		"",
		"bindings=",
		"bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`),
		"bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"e\u0000","routingKeyPattern":"a*"}]}`),
		"bindings=" + url.QueryEscape(`{"bindings":"x"}`),
		"bindings=%7B&bindings=%7D",
		"bindings=%ff%fe",
		"bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"e","routingKeyPattern":"`+strings.Repeat("a.", 200)+`"}]}`),
		"x=1;y=2",
	}
	for _, s := range seeds {
		f.Add(s)
	}
	internal := errors.New("dial amqp://guest:hunter2@10.1.2.3:5672: refused")
	h := api.NewHandler(api.Config{}, &fakeBroker{connected: true, err: internal}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	f.Fuzz(func(t *testing.T, rawQuery string) {
		r := httptest.NewRequest(http.MethodGet, "/api/events/v1/connect/", nil)
		r.URL.RawQuery = rawQuery
		w := httptest.NewRecorder()
		h.ServeHTTP(w, r)
		if w.Code != http.StatusOK {
			t.Fatalf("status %d", w.Code)
		}
		body := w.Body.Bytes()
		rd := sse.NewReader(bytes.NewReader(body))
		ev, err := rd.Next()
		if err != nil {
			t.Fatalf("first event: %v in %q", err, body)
		}
		var text string
		if ev.Kind != "error" || ev.ID != "-" || bytes.ContainsAny(ev.Data, "\r\n") || json.Unmarshal(ev.Data, &text) != nil || text == "" {
			t.Fatalf("first event %q %q id %q: want one error event with a JSON string", ev.Kind, ev.Data, ev.ID)
		}
		if strings.Contains(text, "hunter2") || strings.Contains(text, "10.1.2.3") || strings.Contains(text, "amqp") {
			t.Fatalf("error text leaks the cause: %q", text)
		}
		if _, err := rd.Next(); err != io.EOF {
			t.Fatalf("after the error event: %v, want the end of the stream", err)
		}
	})
}
