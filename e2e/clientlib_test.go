//go:build integration

package e2e

import (
	"encoding/json"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// clientLibScript opens tabs of testdata/clientlib.html, which uses the
// client library that the proxy serves.
const clientLibScript = "clientlib.mjs"

// tabEvent is a line of clientlib.mjs: what one tab reported.
type tabEvent struct {
	Type    string          `json:"type"`
	Tab     string          `json:"tab"`
	State   string          `json:"state"`
	Binding *binding        `json:"binding"`
	Data    json.RawMessage `json:"data"`
	URL     string          `json:"url"`
}

// tabs drives clientlib.mjs: one Chromium context, several tabs.
type tabs struct {
	c       *client
	pageURL string
	from    int // wait looks at the events from this index on
}

// startTabs serves testdata/clientlib.html from an origin of the test's own
// (localhost: a secure context, as Web Locks need, and another origin than
// the proxy's, so that importing the library needs CORS).
func startTabs(t *testing.T) *tabs {
	t.Helper()
	needChromium(t)
	pageURL := servePage(t, "clientlib.html") + "/"
	c := startClient(t, clientLibScript, pageURL,
		"--screenshot", filepath.Join("artifacts", strings.ReplaceAll(t.Name(), "/", "_")))
	return &tabs{c: c, pageURL: pageURL}
}

func (ts *tabs) send(t *testing.T, cmd map[string]string) {
	t.Helper()
	line, _ := json.Marshal(cmd)
	if _, err := ts.c.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: %v", clientLibScript, err)
	}
}

// open opens a tab whose page subscribes to binds through the proxy p.
func (ts *tabs) open(t *testing.T, tab string, p *proxy, share string, bindings ...binding) {
	t.Helper()
	ts.openWith(t, tab, p, url.Values{"share": {share}}, bindings...)
}

// openWith opens a tab as open does, with more of the page's parameters
// (share, resume, token).
func (ts *tabs) openWith(t *testing.T, tab string, p *proxy, q url.Values, bindings ...binding) {
	t.Helper()
	bs, _ := json.Marshal(bindings)
	q.Set("lib", p.URL+"/api/events/v1/client.js")
	q.Set("root", p.URL+"/")
	q.Set("bindings", string(bs))
	ts.send(t, map[string]string{"op": "open", "tab": tab, "query": q.Encode()})
	ts.wait(t, "tab "+tab+" opened", browserStartTimeout, func(ev tabEvent) bool { return ev.Type == "opened" && ev.Tab == tab })
}

func (ts *tabs) close(t *testing.T, tab string) {
	t.Helper()
	ts.send(t, map[string]string{"op": "close", "tab": tab})
	ts.wait(t, "tab "+tab+" closed", eventTimeout, func(ev tabEvent) bool { return ev.Type == "closed" && ev.Tab == tab })
}

// mark makes wait look only at the events printed from now on.
func (ts *tabs) mark() {
	ts.c.mu.Lock()
	ts.from = len(ts.c.events)
	ts.c.mu.Unlock()
}

// wait returns the first event since the last mark for which match is
// true, and fails the test on a page error.
func (ts *tabs) wait(t *testing.T, what string, timeout time.Duration, match func(tabEvent) bool) tabEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	c := ts.c
	for {
		c.mu.Lock()
		events, ended := c.events[ts.from:], c.ended
		c.mu.Unlock()
		for _, ev := range events {
			var te tabEvent
			if err := json.Unmarshal([]byte(ev.Line), &te); err != nil {
				t.Fatalf("%s printed %q: %v", clientLibScript, ev.Line, err)
			}
			switch te.Type {
			case "pageerror", "failed", "error", "console":
				t.Fatalf("waiting for %s: %s", what, ev.Line)
			}
			if match(te) {
				return te
			}
		}
		if ended {
			t.Fatalf("%s ended without printing %s", clientLibScript, what)
		}
		select {
		case <-c.changed:
		case <-timer.C:
			t.Fatalf("%s did not print %s within %v", clientLibScript, what, timeout)
		}
	}
}

// events returns every event of type typ that tab reported so far.
func (ts *tabs) events(t *testing.T, tab, typ string) []tabEvent {
	t.Helper()
	var out []tabEvent
	for _, ev := range ts.c.all() {
		var te tabEvent
		if err := json.Unmarshal([]byte(ev.Line), &te); err == nil && te.Tab == tab && te.Type == typ {
			out = append(out, te)
		}
	}
	return out
}

// routingKeys returns the routing keys of the messages tab received.
func (ts *tabs) routingKeys(t *testing.T, tab string) []string {
	t.Helper()
	var keys []string
	for _, ev := range ts.events(t, tab, "message") {
		var m struct{ RoutingKey string }
		if err := json.Unmarshal(ev.Data, &m); err != nil {
			t.Fatal(err)
		}
		keys = append(keys, m.RoutingKey)
	}
	return keys
}

func TestClientLibSharedTabs(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	ts := startTabs(t)

	ready := func(tab, pattern string) {
		t.Helper()
		ts.wait(t, tab+" ready for "+pattern, eventTimeout, func(ev tabEvent) bool {
			return ev.Tab == tab && ev.Type == "ready" && ev.Binding.RoutingKeyPattern == pattern
		})
	}
	ts.open(t, "a", p, "e2e", binding{ex.Name, "a.#"})
	ready("a", "a.#")
	ts.open(t, "b", p, "e2e", binding{ex.Name, "b.#"})
	ready("b", "b.#")
	ts.open(t, "c", p, "e2e", binding{ex.Name, "#"})
	ready("c", "#")
	waitStreamsOpen(t, p, 1, "three tabs sharing a stream")

	publish := func(keys ...string) {
		t.Helper()
		for _, k := range keys {
			ex.publish(t, k, jsonMessage(t, map[string]string{"key": k}))
		}
		last := keys[len(keys)-1]
		ts.wait(t, "c gets "+last, eventTimeout, func(ev tabEvent) bool {
			return ev.Tab == "c" && ev.Type == "message" && strings.Contains(string(ev.Data), `"routingKey":"`+last+`"`)
		})
	}
	publish("a.1", "b.1", "x.1")
	check := func(tab string, want ...string) {
		t.Helper()
		if got := ts.routingKeys(t, tab); strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("tab %s got messages %q, want %q", tab, got, want)
		}
	}
	// The last message reached c; a and b had theirs before it, in order,
	// since the leader posts each tab the same sequence.
	ts.wait(t, "b gets b.1", eventTimeout, func(ev tabEvent) bool { return ev.Tab == "b" && ev.Type == "message" })
	check("a", "a.1")
	check("b", "b.1")
	check("c", "a.1", "b.1", "x.1")

	// The first tab holds the stream; when it closes, another takes over.
	ts.close(t, "a")
	ts.mark()
	for _, tab := range []string{"b", "c"} {
		ts.wait(t, tab+" ready again", eventTimeout, func(ev tabEvent) bool {
			return ev.Tab == tab && ev.Type == "state" && ev.State == "ready"
		})
	}
	waitStreamsOpen(t, p, 1, "two tabs after the leader closed")
	publish("b.2", "x.2")
	ts.wait(t, "b gets b.2", eventTimeout, func(ev tabEvent) bool {
		return ev.Tab == "b" && ev.Type == "message" && strings.Contains(string(ev.Data), `"b.2"`)
	})
	check("b", "b.1", "b.2")
	check("c", "a.1", "b.1", "x.1", "b.2", "x.2")

	// Only a leader ever connects: c never was one.
	if reqs := ts.events(t, "c", "request"); len(reqs) != 0 {
		t.Errorf("tab c, never the leader, made %d requests to the proxy", len(reqs))
	}

	// A tab of its own (no share name) has a stream of its own.
	ts.open(t, "solo", p, "", binding{ex.Name, "x.#"})
	ready("solo", "x.#")
	waitStreamsOpen(t, p, 2, "a shared stream and one of a tab of its own")
}

// TestClientLibToken: a page on another origin sends its token in an
// Authorization header through the library's fetch transport; the
// browser's preflight passes, and the page gets what the token grants.
func TestClientLibToken(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t, "--token-secrets", accessSecret)
	tok := mintToken(t, "--grant", ex.Name+"=primary.#", "--sub", "e2e", "--ttl", "10m")
	ts := startTabs(t)

	ts.openWith(t, "granted", p, url.Values{"token": {tok}}, binding{ex.Name, "primary.#"})
	ts.wait(t, "granted ready", eventTimeout, func(ev tabEvent) bool { return ev.Tab == "granted" && ev.Type == "ready" })
	ex.publish(t, "primary.x", jsonMessage(t, map[string]any{"granted": true}))
	ts.wait(t, "granted gets primary.x", eventTimeout, func(ev tabEvent) bool {
		return ev.Tab == "granted" && ev.Type == "message" && strings.Contains(string(ev.Data), `"primary.x"`)
	})
	if reqs := ts.events(t, "granted", "request"); len(reqs) != 0 {
		t.Errorf("with a token the page used EventSource (%d requests), want fetch", len(reqs))
	}
}
