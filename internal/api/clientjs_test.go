package api

import (
	"bytes"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	clientjs "eventsproxy/clients/js"
)

func TestClientJS(t *testing.T) {
	t.Parallel()
	h := NewHandler(Config{CORSOrigin: "https://pages.example"}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + clientJSPath)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !bytes.Equal(body, clientjs.Source) {
		t.Fatalf("GET %s: %d, %d bytes; want 200 and the %d bytes of clients/js/index.js", clientJSPath, resp.StatusCode, len(body), len(clientjs.Source))
	}
	for name, want := range map[string]string{
		// A module script must have a JavaScript type; one from another
		// origin needs CORS.
		"Content-Type":                "text/javascript; charset=utf-8",
		"Access-Control-Allow-Origin": "https://pages.example",
		"X-Content-Type-Options":      "nosniff",
		"Cache-Control":               "public, max-age=300, must-revalidate",
	} {
		if got := resp.Header.Get(name); got != want {
			t.Errorf("%s: %q, want %q", name, got, want)
		}
	}
	etag := resp.Header.Get("ETag")
	if len(etag) < 10 {
		t.Fatalf("ETag %q, want a hash of the content", etag)
	}

	req, _ := http.NewRequest(http.MethodGet, srv.URL+clientJSPath, nil)
	req.Header.Set("If-None-Match", etag)
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotModified {
		t.Errorf("with If-None-Match %s: %d, want 304", etag, resp.StatusCode)
	}
}
