//go:build integration

package e2e

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// browserClient is the script that watches the proxy from a page in
// headless Chromium.
const browserClient = "browser-client.mjs"

// chromiumPath is where Debian's chromium package puts the browser that
// browser-client.mjs launches.
const chromiumPath = "/usr/bin/chromium"

// needChromium fails the test at once when Chromium is missing.
func needChromium(t testing.TB) {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is missing (apt-get install chromium; .ci/run installs it): %v", err)
	}
}

// servePage serves testdata/file at / (and nothing else) from an origin of
// the test's own, http://localhost:PORT, which it returns: the proxy is
// served as 127.0.0.1, another origin (another site, even), so the browser
// enforces CORS. It is registered to close at the end of the test before a
// browser started afterwards, so it closes after the browser has gone:
// Close waits for the browser's connections.
func servePage(t testing.TB, file string) (origin string) {
	t.Helper()
	page, err := os.ReadFile(filepath.Join("testdata", file))
	if err != nil {
		t.Fatal(err)
	}
	pages := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = w.Write(page)
	}))
	t.Cleanup(pages.Close)
	_, port, err := net.SplitHostPort(pages.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	return "http://localhost:" + port
}

func TestBrowserCrossOrigin(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	c, pageOrigin := startBrowser(t, connectURL(t, p.URL, binding{ex.Name, "#"}))

	checkReady(t, c.expect(t, "ready", browserStartTimeout))

	injected := map[string]any{"text": injection, "lines": []any{"a\nb", "event: message"}}
	ex.publish(t, "primary.browser", jsonMessage(t, injected, "route.index.browser"))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, "primary.browser", []string{"index.browser"}, mustJSON(t, injected))

	// Messages keep their order, so a last one arriving next shows that the
	// one before came once and forged nothing after it.
	last := map[string]any{"last": true}
	ex.publish(t, "primary.browser", jsonMessage(t, last))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, "primary.browser", []string{}, mustJSON(t, last))

	req := c.waitFor(t, "the EventSource's request", eventTimeout, func(ev clientEvent) bool {
		return ev.Type == "request" && strings.HasPrefix(ev.URL, p.URL+connectPath)
	})
	if got := req.Headers["origin"]; got != pageOrigin {
		t.Errorf("the EventSource's request carried Origin %q, want %q", got, pageOrigin)
	}
	res := c.waitFor(t, "the answer to the EventSource's request", eventTimeout, func(ev clientEvent) bool {
		return ev.Type == "response" && strings.HasPrefix(ev.URL, p.URL+connectPath)
	})
	if res.Status != http.StatusOK {
		t.Errorf("the browser got status %d, want 200", res.Status)
	}
	if got := res.Headers["access-control-allow-origin"]; got != "*" {
		t.Errorf("the browser got Access-Control-Allow-Origin %q, want %q", got, "*")
	}
	if got := res.Headers["content-type"]; !strings.HasPrefix(got, "text/event-stream") {
		t.Errorf("the browser got Content-Type %q, want text/event-stream", got)
	}

	checkCounts(t, c, map[string]int{
		"ready": 1, "message": 2, "error": 0, "connection-error": 0,
		"pageerror": 0, "console": 0, "requestfailed": 0,
	})
}

func TestBrowserInvalidBindingsNoReconnect(t *testing.T) {
	t.Parallel()
	p := startProxy(t)
	connect := connectURLRaw(p.URL, `{"bindings": "x"}`)
	c, _ := startBrowser(t, connect)

	ev := c.expect(t, "error", browserStartTimeout)
	checkEventID(t, ev)
	var text string
	decodeData(t, ev, &text)
	if want := "Bindings must be an array of {exchange, routingKeyPattern}"; text != want {
		t.Errorf("error event's text is %q, want %q", text, want)
	}

	// The proxy ends the stream; the browser reconnects (after its default
	// delay) carrying Last-Event-ID: -, and the proxy's 204 closes it. The
	// browser sees that 204 only if it passes CORS: otherwise it gets a
	// network error and a console error instead, and whether it then stops
	// or goes on reconnecting is up to the browser.
	ev = c.expect(t, "connection-error", eventTimeout)
	if ev.ReadyState == nil || *ev.ReadyState != 0 {
		t.Errorf("after the stream ended: got %s, want readyState 0 (CONNECTING)", ev.Line)
	}
	ev = c.expect(t, "connection-error", eventTimeout)
	if ev.ReadyState == nil || *ev.ReadyState != 2 {
		t.Errorf("after the reconnection: got %s, want readyState 2 (CLOSED)", ev.Line)
	}

	isConnect := func(ev clientEvent) bool { return strings.HasPrefix(ev.URL, p.URL+connectPath) }
	answer := c.waitFor(t, "the answer to the reconnection", eventTimeout, func(ev clientEvent) bool {
		return isConnect(ev) && (ev.Type == "response" && ev.Status != http.StatusOK || ev.Type == "requestfailed")
	})
	if answer.Type != "response" || answer.Status != http.StatusNoContent {
		t.Fatalf("the browser's reconnection got %s, want a 204 that passes CORS (Access-Control-Allow-Origin: *)", answer.Line)
	}

	reconnection := c.waitFor(t, "the reconnection's request", eventTimeout, func(ev clientEvent) bool {
		return ev.Type == "request" && isConnect(ev) && ev.Headers["last-event-id"] != ""
	})
	if got := reconnection.Headers["last-event-id"]; got != "-" {
		t.Errorf("the reconnection carried Last-Event-ID %q, want %q", got, "-")
	}
	// A CLOSED EventSource never reconnects, so two requests are all there is.
	var requests int
	for _, ev := range c.all() {
		if ev.Type == "request" && isConnect(ev) {
			requests++
		}
	}
	if requests != 2 {
		t.Errorf("the browser made %d requests, want 2 (the first and one reconnection)", requests)
	}
	checkCounts(t, c, map[string]int{
		"ready": 0, "message": 0, "error": 1,
		"pageerror": 0, "console": 0, "requestfailed": 0,
	})
}

func TestStreamHeadersDirect(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)

	ctx, cancel := context.WithTimeout(t.Context(), eventTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, connectURL(t, p.URL, binding{ex.Name, "#"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Origin", "http://page.example")
	// Do returns as soon as the headers have arrived, before the body is read.
	res := do(t, req)

	if res.StatusCode != http.StatusOK {
		t.Fatalf("status %s, want 200 OK", res.Status)
	}
	for name, want := range map[string]string{
		"Content-Type":                "text/event-stream",
		"Cache-Control":               "no-cache",
		"Access-Control-Allow-Origin": "*",
		"X-Accel-Buffering":           "no",
	} {
		got := res.Header.Get(name)
		if name == "Content-Type" {
			got, _, _ = strings.Cut(got, ";")
		}
		if got != want {
			t.Errorf("header %s is %q, want %q", name, got, want)
		}
	}

	body := bufio.NewReader(res.Body)
	frame, err := readFrame(body)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"event: ready", "data: {}", "id: -"}; !reflect.DeepEqual(frame.Lines, want) {
		t.Fatalf("first event is %q, want %q", frame, strings.Join(want, "\n")+"\n\n")
	}

	injected := map[string]any{"text": injection}
	ex.publish(t, "primary.direct", jsonMessage(t, injected))
	for {
		frame, err = readFrame(body)
		if err != nil {
			t.Fatal(err)
		}
		if kind := frame.field("event"); !reflect.DeepEqual(kind, []string{"ping"}) {
			break
		}
	}
	if len(frame.Lines) != 3 || !reflect.DeepEqual(frame.field("event"), []string{"message"}) ||
		len(frame.field("data")) != 1 || !reflect.DeepEqual(frame.field("id"), []string{"-"}) {
		t.Fatalf("got event %q, want event: message, one data line, id: -", frame)
	}
	ev := clientEvent{Type: "message", Data: []byte(frame.field("data")[0]), LastEventID: &frame.field("id")[0], Line: frame.String()}
	checkMessage(t, ev, ex.Name, "primary.direct", []string{}, mustJSON(t, injected))
}

// startBrowser serves testdata/page.html from an origin of the test's own
// and opens it in headless Chromium through browser-client.mjs; the page's
// EventSource connects to connect. It returns the client and the page's
// origin. The screenshot goes to artifacts/<test name>.png.
func startBrowser(t testing.TB, connect string) (c *client, pageOrigin string) {
	t.Helper()
	needChromium(t)
	pageOrigin = servePage(t, "page.html")
	c = startClient(t, browserClient, pageOrigin+"/?connect="+url.QueryEscape(connect),
		"--screenshot", filepath.Join("artifacts", strings.ReplaceAll(t.Name(), "/", "_")+".png"))
	return c, pageOrigin
}
