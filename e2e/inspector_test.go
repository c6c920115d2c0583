//go:build integration

package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// What the inspector suggests when its address names no bindings: under
// `serve`, RabbitMQ's own topic exchange; under `dev`, a generated one.
var (
	exampleBinding    = binding{"amq.topic", "#"}
	exampleDevBinding = binding{"exchange/taskcluster-queue/v1/task-completed", "#"}
)

func TestInspector(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	in := openInspector(t, p.URL+"/")

	if got := in.bindings(t); !reflect.DeepEqual(got, []binding{exampleBinding}) {
		t.Errorf("a page opened without bindings shows %v, want the example %v", got, exampleBinding)
	}
	if st := in.state(t); st.State != "idle" {
		t.Errorf("before connecting the state is %+v, want idle", st)
	}
	if h := in.hint(t); strings.Contains(h.Text, "dev") || strings.Contains(h.Text, "taskcluster") ||
		!strings.Contains(h.Text, "any exchange") || !reflect.DeepEqual(h.Suggestions, []string{"amq.topic"}) {
		t.Errorf("serve's page says %+v, want any exchange and amq.topic suggested, nothing of dev", h)
	}
	// Two rows, then one: the page's Add and Remove buttons.
	in.setBindings(t, binding{ex.Name, "primary.#"}, binding{ex.Name, "other.*"})
	in.setBindings(t, binding{ex.Name, "primary.#"})
	in.click(t, "Connect")
	if st := in.waitState(t, "ready"); st.Text != "Ready" {
		t.Errorf("ready state reads %q, want %q", st.Text, "Ready")
	}
	checkPageURL(t, in.url(t), []string{ex.Name + "=primary.#"}, true)

	const key = "primary.fN1SXlmtRbqpIk3CmfvmhA.0"
	const markup = `<img src=x onerror="document.title='pwned'">`
	first := map[string]any{
		"status": map[string]any{
			"taskId": "fN1SXlmtRbqpIk3CmfvmhA",
			"state":  "completed",
			"runs": []any{map[string]any{
				"runId":  0,
				"worker": map[string]any{"group": "us-east-1", "id": "i-deepworker"},
			}},
		},
		"note": markup,
	}
	msg := jsonMessage(t, first, "route.index.project.inspector", "other.cc", "route.tc-treeherder.v2.inspector")
	msg.Headers["x-trace"] = "trace-4f2a"
	msg.Headers["attempt"] = int32(2)
	msg.MessageId, msg.AppId = "msg-77", "inspector-test"
	ex.publish(t, key, msg)
	m := in.waitMessages(t, 1).Messages[0]
	if m.Exchange != ex.Name || m.RoutingKey != key {
		t.Errorf("the message shows exchange %q and key %q, want %q and %q", m.Exchange, m.RoutingKey, ex.Name, key)
	}
	if want := []string{"index.project.inspector", "tc-treeherder.v2.inspector"}; !reflect.DeepEqual(m.Routes, want) {
		t.Errorf("the message shows routes %q, want %q", m.Routes, want)
	}
	if m.Expanded || m.Payload != "" || !strings.Contains(m.Preview, `"taskId":"fN1SXlmtRbqpIk3CmfvmhA"`) {
		t.Errorf("a new message should show a one-line preview of its payload and keep the payload closed: %+v", m)
	}
	// The page asks for properties: the row sums them up (CC, x-trace and
	// attempt are three headers).
	if want := "application/json · 3 headers"; m.Meta != want || m.Props != "" {
		t.Errorf("the row sums up properties and headers as %q (expanded: %q), want %q and nothing expanded", m.Meta, m.Props, want)
	}

	// The payload opens as a tree whose deeper levels start closed.
	list := in.toggle(t, 0)
	m = list.Messages[0]
	shownNote := `"note": "` + strings.ReplaceAll(markup, `"`, `\"`) + `"`
	for _, want := range []string{`"taskId": "fN1SXlmtRbqpIk3CmfvmhA"`, `"state": "completed",`, `"runs": [`, shownNote} {
		if !m.Expanded || !strings.Contains(m.Payload, want) {
			t.Errorf("the opened payload does not show %s; it shows:\n%s", want, m.Payload)
		}
	}
	if strings.Contains(m.Payload, "i-deepworker") {
		t.Errorf("the payload's fourth level shows before it is opened:\n%s", m.Payload)
	}
	// Under the payload: every property set, and the headers table (the
	// titles' case is the style sheet's).
	for _, want := range []string{"properties\ncontentType\napplication/json", "deliveryMode\n1", "messageId\nmsg-77",
		"appId\ninspector-test\nheaders", `"x-trace": "trace-4f2a"`, `"attempt": 2`, `"CC": [`} {
		if !strings.Contains(strings.ToLower(m.Props), strings.ToLower(want)) {
			t.Errorf("the opened message does not show %q under its payload; it shows:\n%s", want, m.Props)
		}
	}
	list = in.payloadButton(t, 0, "Expand all")
	if want := `"id": "i-deepworker"`; !strings.Contains(list.Messages[0].Payload, want) {
		t.Errorf("after Expand all the payload does not show %s:\n%s", want, list.Messages[0].Payload)
	}
	// Markup in a payload is text: it makes no element and runs nothing.
	if list.ForeignElements != 0 || list.Title != "eventsproxy inspector" {
		t.Errorf("a payload's markup became page content: %d foreign elements, title %q", list.ForeignElements, list.Title)
	}
	in.screenshot(t, "expanded")

	// The filter looks at the exchange, the routing key, the routes, the
	// payload, the properties and the headers, ignoring case; every word
	// must match.
	for _, tc := range []struct {
		filter string
		rows   int
	}{
		{"no-such-word", 0},
		{"DEEPWORKER", 1},
		{"trace-4f2a", 1},
		{"index.project inspector", 1},
		{"index.project no-such-word", 0},
		{ex.Name, 1},
		{"fN1SXlmtRbqpIk3CmfvmhA.0", 1},
		{"", 1},
	} {
		list := in.filter(t, tc.filter)
		if list.Rows != tc.rows {
			t.Errorf("filter %q shows %d messages, want %d", tc.filter, list.Rows, tc.rows)
		}
		if tc.rows == 0 && list.Empty != "No message matches the filter." {
			t.Errorf("filter %q: the empty list says %q", tc.filter, list.Empty)
		}
	}

	// Paused, the page counts what comes but shows it only on resume.
	in.click(t, "Pause")
	second := map[string]any{"status": map[string]any{"taskId": "second", "state": "failed"}}
	ex.publish(t, "primary.second.0", jsonMessage(t, second))
	in.waitCounts(t, map[string]string{"received": "2", "badge": "1 new"})
	if list := in.messages(t); list.Rows != 1 || list.Messages[0].RoutingKey != key {
		t.Errorf("while paused the page shows %d messages (%+v), want only the first", list.Rows, list.Messages)
	}
	in.screenshot(t, "paused")
	in.click(t, "Resume")
	list = in.waitMessages(t, 2)
	if got := []string{list.Messages[0].RoutingKey, list.Messages[1].RoutingKey}; !reflect.DeepEqual(got, []string{"primary.second.0", key}) {
		t.Errorf("after resuming the page shows keys %q, want the newest first", got)
	}
	if !list.Messages[1].Expanded {
		t.Errorf("the first message's payload closed when the second came")
	}
	if c := in.counts(t); c.Badge != "" || c.Received != "2" || c.Dropped != "0" {
		t.Errorf("after resuming the counts are %+v, want 2 messages, 0 dropped and no badge", c)
	}

	// Download saves what is shown, oldest first.
	file := in.download(t)
	if len(file) != 2 {
		t.Fatalf("the download holds %d messages, want 2", len(file))
	}
	for i, want := range []struct {
		key     string
		routes  []string
		payload any
	}{
		{key, []string{"index.project.inspector", "tc-treeherder.v2.inspector"}, first},
		{"primary.second.0", []string{}, second},
	} {
		got := file[i]
		if got.Exchange != ex.Name || got.RoutingKey != want.key || !reflect.DeepEqual(got.Routes, want.routes) ||
			!jsonEqual(t, got.Payload, mustJSON(t, want.payload)) || got.ReceivedAt == "" {
			t.Errorf("downloaded message %d is %+v, want key %q, routes %q, payload %s", i, got, want.key, want.routes, mustJSON(t, want.payload))
		}
		if got.Properties["contentType"] != "application/json" {
			t.Errorf("downloaded message %d has properties %v, want its content type among them", i, got.Properties)
		}
	}

	in.click(t, "Clear")
	if list := in.waitMessages(t, 0); list.Empty != "Waiting for messages…" {
		t.Errorf("a cleared list says %q", list.Empty)
	}
	if c := in.counts(t); c.Received != "0" {
		t.Errorf("after Clear the counts are %+v", c)
	}

	in.click(t, "Disconnect")
	in.waitState(t, "closed")
	checkPageURL(t, in.url(t), []string{ex.Name + "=primary.#"}, false)
}

func TestInspectorServerError(t *testing.T) {
	t.Parallel()
	p := startProxy(t)
	missing := "exchange/e2e-test/missing-" + strings.ToLower(rand.Text())
	in := openInspector(t, p.URL+"/")

	in.setBindings(t, binding{missing, "#"})
	// Enter in a binding's field connects.
	in.press(t, "Routing-key pattern of binding 1", "Enter")
	in.waitState(t, "closed")
	want := fmt.Sprintf("Exchange %q does not exist.", missing)
	if b := in.banner(t); !b.Visible || b.Text != want {
		t.Errorf("the banner shows %+v, want the server's text %q", b, want)
	}
	buttons := in.buttons(t)
	if !slices.Contains(buttons, "Connect") || slices.Contains(buttons, "Disconnect") {
		t.Errorf("after the server's error the page offers %q, want Connect and no Disconnect", buttons)
	}
	in.screenshot(t, "error")

	// Connecting again asks the server again, and gets the same answer.
	in.click(t, "Dismiss the message")
	if b := in.banner(t); b.Visible {
		t.Errorf("the banner stays after Dismiss: %+v", b)
	}
	in.click(t, "Connect")
	if b := in.waitBanner(t); b.Text != want {
		t.Errorf("the second attempt's banner shows %+v, want %q", b, want)
	}
	in.waitState(t, "closed")

	// The page closes its EventSource on the server's error instead of
	// letting it reconnect: one request for each Connect.
	t.Cleanup(func() {
		var requests int
		for _, ev := range in.c.all() {
			if ev.Type == "request" && strings.HasPrefix(ev.URL, p.URL+connectPath) {
				requests++
			}
		}
		if requests != 2 {
			t.Errorf("the page made %d connect requests, want 2 (one per Connect, no reconnection)", requests)
		}
	})
}

func TestInspectorRefused(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t, "--max-connections", "1")
	// This stream takes the one place, so the page's is refused (503).
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, connectURL(t, p.URL, binding{ex.Name, "#"}), nil)
	if err != nil {
		t.Fatal(err)
	}
	if res := do(t, req); res.StatusCode != http.StatusOK {
		t.Fatalf("the first stream got %s, want 200", res.Status)
	}

	query := url.Values{"bind": {ex.Name + "=#"}, "connect": {"1"}}
	in := openInspector(t, p.URL+"/?"+query.Encode())
	// Chromium logs the refusal.
	in.allowConsole("the server responded with a status of 503")
	if st := in.waitState(t, "reconnecting"); st.Text != "Reconnecting…" {
		t.Errorf("the refused page's state reads %q, want Reconnecting…", st.Text)
	}
	if b := in.banner(t); b.Title != "Could not connect" || !strings.Contains(b.Text, "Trying again in") {
		t.Errorf("the refused page's banner is %+v, want Could not connect, trying again", b)
	}
	if buttons := in.buttons(t); !slices.Contains(buttons, "Disconnect") {
		t.Errorf("the refused page offers %q, want Disconnect (to stop trying)", buttons)
	}
	in.screenshot(t, "refused")

	// Once the place is free, the page gets in by itself.
	cancel()
	in.waitState(t, "ready")
	if gaps := in.waitGaps(t, 0); len(gaps) != 0 {
		t.Errorf("a page that was never ready marks gaps %q", gaps)
	}
}

// TestInspectorReconnects stops the server under an open page and starts
// another on the same address: the page reconnects by itself and marks the
// gap in the list.
func TestInspectorReconnects(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	query := url.Values{"bind": {ex.Name + "=#"}, "connect": {"1"}}
	// The same page in light and in dark, for the screenshots.
	pages := []*inspector{
		openInspector(t, p.URL+"/?"+query.Encode()),
		openInspector(t, p.URL+"/?"+query.Encode(), "--color-scheme", "dark"),
	}
	for _, in := range pages {
		in.allowConsole("net::ERR_CONNECTION_REFUSED")
		in.waitState(t, "ready")
	}
	ex.publish(t, "before", jsonMessage(t, map[string]any{"n": 1}))
	for _, in := range pages {
		in.waitMessages(t, 1)
	}

	p.stop(t)
	for i, in := range pages {
		in.waitState(t, "reconnecting")
		if b := in.waitBanner(t); b.Title != "Connection lost" || !strings.Contains(b.Text, "Reconnecting in") {
			t.Errorf("after the server went the banner is %+v, want Connection lost, reconnecting", b)
		}
		in.screenshot(t, []string{"reconnecting", "reconnecting-dark"}[i])
	}

	addr := strings.TrimPrefix(p.URL, "http://")
	startBinary(t, "serve", "--listen", addr, "--amqp-url", amqpURL)
	for _, in := range pages {
		in.waitState(t, "ready")
		gaps := in.waitGaps(t, 1)
		if !strings.Contains(gaps[0], "missing") {
			t.Errorf("the gap marker says %q, want that messages are missing", gaps[0])
		}
		if b := in.banner(t); b.Visible {
			t.Errorf("once ready again the banner stays: %+v", b)
		}
	}
	ex.publish(t, "after", jsonMessage(t, map[string]any{"n": 2}))
	for i, in := range pages {
		if keys := in.waitMessages(t, 2).Messages; keys[0].RoutingKey != "after" || keys[1].RoutingKey != "before" {
			t.Errorf("after the reconnection the list shows %+v, want after, before", keys)
		}
		in.screenshot(t, []string{"gap", "gap-dark"}[i])
	}
}

func TestInspectorOpensFromURL(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t, "--ping-interval", "1s")
	bindings := []binding{{ex.Name, "primary.#"}, {ex.Name, "*.urgent"}}
	query := url.Values{"bind": {ex.Name + "=primary.#", ex.Name + "=*.urgent"}, "connect": {"1"}}
	in := openInspector(t, p.URL+"/?"+query.Encode(), "--color-scheme", "dark")

	in.waitState(t, "ready")
	if got := in.bindings(t); !reflect.DeepEqual(got, bindings) {
		t.Errorf("the page opened with bindings %v in its address shows %v", bindings, got)
	}
	ex.publish(t, "task.urgent", jsonMessage(t, map[string]any{"from": "the address"}, "route.index.url"))
	if m := in.waitMessages(t, 1).Messages[0]; m.RoutingKey != "task.urgent" || !reflect.DeepEqual(m.Routes, []string{"index.url"}) {
		t.Errorf("got message %+v, want key task.urgent with route index.url", m)
	}
	if ping := in.waitPing(t); !strings.HasPrefix(ping.Text, "last ping ") {
		t.Errorf("the ping indicator says %q", ping.Text)
	}
	// Keys: p pauses and resumes, / goes to the filter.
	in.press(t, "", "p")
	if b := in.buttons(t); !slices.Contains(b, "Resume") {
		t.Errorf("after the p key the page offers %q, want Resume", b)
	}
	in.press(t, "", "p")
	if b := in.buttons(t); !slices.Contains(b, "Pause") {
		t.Errorf("after the p key twice the page offers %q, want Pause", b)
	}
	if focused := in.press(t, "", "/"); focused != "Filter messages" {
		t.Errorf("the / key moved the focus to %q, want the filter", focused)
	}
	in.toggle(t, 0)
	in.screenshot(t, "dark")

	// The JSON form of the parameter, which an exchange with "=" needs,
	// fills the rows too; without connect=1 the page waits to be told.
	odd := binding{"exchange/with=sign", "a.#"}
	in.open(t, p.URL+"/?bindings="+url.QueryEscape(string(mustJSON(t, map[string][]binding{"bindings": {odd}}))))
	if got := in.bindings(t); !reflect.DeepEqual(got, []binding{odd}) {
		t.Errorf("bindings parameter: the page shows %v, want %v", got, odd)
	}
	if st := in.state(t); st.State != "idle" {
		t.Errorf("a page opened without connect=1 is %+v, want idle", st)
	}
	in.setBindings(t, odd, binding{ex.Name, "#"})
	u, err := url.Parse(in.url(t))
	if err != nil {
		t.Fatal(err)
	}
	var got map[string][]binding
	if err := json.Unmarshal([]byte(u.Query().Get("bindings")), &got); err != nil || !reflect.DeepEqual(got["bindings"], []binding{odd, {ex.Name, "#"}}) {
		t.Errorf("with an exchange holding \"=\" the address is %s, want the bindings as JSON (%v)", u, err)
	}
}

// TestInspectorDev watches `eventsproxy dev`'s generated messages.
func TestInspectorDev(t *testing.T) {
	t.Parallel()
	p := startDev(t, "--rate", "20")
	in := openInspector(t, p.URL+"/")

	if got := in.bindings(t); !reflect.DeepEqual(got, []binding{exampleDevBinding}) {
		t.Errorf("a page of dev opened without bindings shows %v, want the example %v", got, exampleDevBinding)
	}
	h := in.hint(t)
	if !strings.Contains(h.Text, "eventsproxy dev") || !strings.Contains(h.Text, "exchange/taskcluster-queue/v1/task-group-resolved") ||
		!slices.Contains(h.Suggestions, exampleDevBinding.Exchange) || !slices.Contains(h.Suggestions, "amq.topic") {
		t.Errorf("dev's page says %+v, want dev's generated exchanges", h)
	}
	bound := []binding{exampleDevBinding, {"exchange/taskcluster-queue/v1/task-defined", "primary.#"}}
	in.setBindings(t, bound...)
	in.click(t, "Connect")
	in.waitState(t, "ready")
	const enough = 6
	in.waitMessages(t, enough, true)
	// Held still, for the checks and the screenshot.
	in.click(t, "Pause")
	list := in.toggle(t, 0)
	for _, m := range list.Messages {
		if m.Exchange != bound[0].Exchange && m.Exchange != bound[1].Exchange {
			t.Errorf("got a message from %s, which the page did not bind", m.Exchange)
		}
		// primary.<taskId>.<runId>.<workerGroup>.<workerId>.<provisionerId>.<workerType>.<schedulerId>.<taskGroupId>._
		if words := strings.Split(m.RoutingKey, "."); len(words) != 10 || words[0] != "primary" {
			t.Errorf("got routing key %q, want a task's ten words starting with primary", m.RoutingKey)
		}
	}
	if p := list.Messages[0].Payload; !strings.Contains(p, `"taskId": "`) || !strings.Contains(p, `"status": {`) {
		t.Errorf("a generated message's payload shows as:\n%s\nwant a task status", p)
	}
	// Folded, the bindings leave the room to the messages.
	in.click(t, "Bindings")
	if buttons := in.buttons(t); slices.Contains(buttons, "Add binding") || !slices.Contains(buttons, "Disconnect") {
		t.Errorf("with the bindings folded the page offers %q, want Disconnect and no Add binding", buttons)
	}
	in.screenshot(t, "generated")
}

// TestInspectorKeepsNewest checks that the page keeps the newest messages
// only, and counts them all.
func TestInspectorKeepsNewest(t *testing.T) {
	t.Parallel()
	const kept, sent = 1000, 1200
	ex := newExchange(t)
	// A buffer that holds every message: the test counts them all.
	p := startProxy(t, "--client-buffer", strconv.Itoa(sent))
	query := url.Values{"bind": {ex.Name + "=#"}, "connect": {"1"}}
	in := openInspector(t, p.URL+"/?"+query.Encode(), "--viewport-screenshot")
	in.waitState(t, "ready")

	for i := range sent {
		ex.publish(t, "n."+strconv.Itoa(i), jsonMessage(t, map[string]any{"i": i}))
	}
	c := in.waitCounts(t, map[string]string{"received": "1,200"})
	if c.Dropped != "0" || c.Shown != "newest 1,000 kept" {
		t.Errorf("after %d messages the counts are %+v, want 0 dropped and the newest 1,000 kept", sent, c)
	}
	keys := in.waitMessageKeys(t, kept)
	if first, last := keys[0], keys[kept-1]; first != "n.1199" || last != "n.200" {
		t.Errorf("the page shows keys %s to %s, want n.1199 (newest, on top) to n.200", first, last)
	}
}

func TestInspectorServedSafely(t *testing.T) {
	t.Parallel()
	p := startProxy(t)
	for path, contentType := range map[string]string{
		"/":                        "text/html; charset=utf-8",
		"/inspector/inspector.js":  "text/javascript; charset=utf-8",
		"/inspector/jsonview.js":   "text/javascript; charset=utf-8",
		"/inspector/shareurl.js":   "text/javascript; charset=utf-8",
		"/inspector/inspector.css": "text/css; charset=utf-8",
		"/inspector/favicon.svg":   "image/svg+xml",
	} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, p.URL+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		res := do(t, req)
		if res.StatusCode != http.StatusOK || res.Header.Get("Content-Type") != contentType {
			t.Errorf("GET %s: %s, Content-Type %q, want 200 and %q", path, res.Status, res.Header.Get("Content-Type"), contentType)
		}
		// The page may load its own files and talk to its own origin only.
		csp := res.Header.Get("Content-Security-Policy")
		if !strings.Contains(csp, "default-src 'self'") || strings.Contains(csp, "unsafe-") {
			t.Errorf("GET %s: Content-Security-Policy %q, want default-src 'self' and nothing unsafe", path, csp)
		}
		if got := res.Header.Get("X-Content-Type-Options"); got != "nosniff" {
			t.Errorf("GET %s: X-Content-Type-Options %q, want nosniff", path, got)
		}
	}
}

// checkPageURL fails the test unless the page's address holds the bindings
// as bind parameters (exchange=pattern) and connect=1 exactly when connected.
func checkPageURL(t testing.TB, page string, bind []string, connected bool) {
	t.Helper()
	u, err := url.Parse(page)
	if err != nil {
		t.Fatalf("the page's address %q: %v", page, err)
	}
	q := u.Query()
	if got := q["bind"]; !reflect.DeepEqual(got, bind) {
		t.Errorf("the page's address %s holds bind=%q, want %q", page, got, bind)
	}
	if got := q.Get("connect") == "1"; got != connected {
		t.Errorf("the page's address %s: connect=1 is there: %v, want %v", page, got, connected)
	}
}

// TestInspectorAllowedExchanges checks that under --allowed-exchanges the
// page suggests and names the allowed prefixes.
func TestInspectorAllowedExchanges(t *testing.T) {
	t.Parallel()
	p := startProxy(t, "--allowed-exchanges", "exchange/e2e-test/,exchange/other/")
	in := openInspector(t, p.URL+"/")
	want := []string{"exchange/e2e-test/", "exchange/other/"}
	if h := in.hint(t); !strings.Contains(h.Text, "start with exchange/e2e-test/ and exchange/other/") || !reflect.DeepEqual(h.Suggestions, want) {
		t.Errorf("the page says %+v, want the prefixes %q", h, want)
	}
	if got := in.bindings(t); !reflect.DeepEqual(got, []binding{{want[0], "#"}}) {
		t.Errorf("a page opened without bindings shows %v, want the first prefix", got)
	}
	in.screenshot(t, "allowed")
}

// TestInspectorToken: on a server that requires tokens the page shows a
// token field, says so when a stream is refused for want of a (valid)
// token, and sends the token in an Authorization header: never in a URL,
// the page's address, a copied command or the server's log.
func TestInspectorToken(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t, "--token-secrets", accessSecret)
	tok := mintToken(t, "--grant", ex.Name+"=primary.#", "--sub", "inspector", "--ttl", "10m")
	in := openInspector(t, p.URL+"/?"+url.Values{"bind": {ex.Name + "=primary.#"}}.Encode())
	// Chromium logs the refusals.
	in.allowConsole("the server responded with a status of 401")

	in.click(t, "Connect")
	in.waitState(t, "closed")
	if b := in.banner(t); b.Title != "This server needs a token" || !strings.Contains(b.Text, "This service needs a token") {
		t.Errorf("without a token the banner is %+v, want that the server needs a token, with its text", b)
	}
	in.fill(t, "Token", "not.a.token")
	in.click(t, "Connect")
	in.waitState(t, "closed")
	if b := in.banner(t); b.Title != "The token was refused" || !strings.Contains(b.Text, "The token is not valid.") {
		t.Errorf("with a bad token the banner is %+v, want the token refused, with the server's text", b)
	}
	in.screenshot(t, "refused")

	in.fill(t, "Token", tok)
	in.click(t, "Connect")
	in.waitState(t, "ready")
	payload := map[string]any{"token": true}
	ex.publish(t, "primary.token", jsonMessage(t, payload))
	if m := in.waitMessages(t, 1).Messages[0]; m.RoutingKey != "primary.token" {
		t.Errorf("the page shows %+v, want the message on primary.token", m)
	}
	in.screenshot(t, "ready")
	if u := in.url(t); strings.Contains(u, tok) || strings.Contains(u, "token") {
		t.Errorf("the page's address %q holds the token", u)
	}
	in.click(t, "Copy as curl")
	if c := in.density(t).Copied; strings.Contains(c, tok) || !strings.Contains(c, `-H "Authorization: Bearer $EVENTSPROXY_TOKEN"`) {
		t.Errorf("the copied curl command is %q, want the token from $EVENTSPROXY_TOKEN", c)
	}
	in.click(t, "Copy as listen command")
	if c := in.density(t).Copied; strings.Contains(c, tok) || !strings.Contains(c, `--token "$EVENTSPROXY_TOKEN"`) {
		t.Errorf("the copied listen command is %q, want the token from $EVENTSPROXY_TOKEN", c)
	}

	// A token in the page's address moves to the field and out of the
	// address.
	in.open(t, p.URL+"/?"+url.Values{"access_token": {tok}, "bind": {ex.Name + "=primary.#"}, "connect": {"1"}}.Encode())
	in.waitState(t, "ready")
	if u := in.url(t); strings.Contains(u, tok) || strings.Contains(u, "token") {
		t.Errorf("the page's address %q still holds the token", u)
	}

	var requests []clientEvent
	for _, ev := range in.c.all() {
		if ev.Type == "request" && strings.HasPrefix(ev.URL, p.URL+connectPath) {
			requests = append(requests, ev)
		}
	}
	if len(requests) != 4 {
		t.Errorf("the page made %d connect requests, want 4 (one per Connect)", len(requests))
	}
	for i, ev := range requests {
		if strings.Contains(ev.URL, tok) || strings.Contains(ev.URL, "token") {
			t.Errorf("connect request %d has the token in its URL: %s", i, ev.URL)
		}
		if want := map[bool]string{false: "", true: "Bearer"}[i > 0]; !strings.Contains(ev.Line, `"authorization":"`+want+`"`) {
			t.Errorf("connect request %d: %s, want an Authorization header %q", i, ev.Line, want)
		}
	}
	if strings.Contains(p.log.String(), tok) {
		t.Error("the service's log holds the token")
	}
}
