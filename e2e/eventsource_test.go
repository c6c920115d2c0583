//go:build integration

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"reflect"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"
)

// eventsourceClient is the script that watches the proxy through the npm
// package eventsource.
const eventsourceClient = "eventsource-client.mjs"

// injection is a payload string that would end the current event and start
// a forged `ready` if the proxy wrote it into the stream unescaped.
const injection = "\n\nevent: ready\ndata: {}\n\n"

// messageData is the data of a `message` event (SPEC §1).
type messageData struct {
	Exchange    string          `json:"exchange"`
	RoutingKey  string          `json:"routingKey"`
	Redelivered *bool           `json:"redelivered"`
	Routes      []string        `json:"routes"`
	Payload     json.RawMessage `json:"payload"`
}

func TestEventSourceClientReceivesMessages(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	c := startClient(t, eventsourceClient, connectURL(t, p.URL, binding{ex.Name, "primary.#"}))

	checkReady(t, c.expect(t, "ready", eventTimeout))

	const key = "primary.task-1.0"
	first := map[string]any{"status": map[string]any{"taskId": "task-1", "state": "completed"}, "runId": 0}
	ex.publish(t, key, jsonMessage(t, first, "route.index.foo", "other.x"))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, key, []string{"index.foo"}, mustJSON(t, first))

	injected := map[string]any{"text": injection, "n": 2}
	ex.publish(t, key, jsonMessage(t, injected))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, key, []string{}, mustJSON(t, injected))

	plain := "plain text, not JSON\nevent: ready\n\ndata: {}\n"
	ex.publish(t, key, amqp.Publishing{ContentType: "text/plain", Body: []byte(plain)})
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, key, []string{}, mustJSON(t, plain))

	// Messages keep their order, so a last one arriving next shows that the
	// ones before it came once each and forged nothing after them.
	last := map[string]any{"last": true}
	ex.publish(t, key, jsonMessage(t, last))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, key, []string{}, mustJSON(t, last))

	checkCounts(t, c, map[string]int{"ready": 1, "message": 4, "error": 0, "connection-error": 0})
}

func TestEventSourceClientInvalidBindingsNoReconnect(t *testing.T) {
	t.Parallel()
	ex := newExchange(t)
	p := startProxy(t)
	c := startClient(t, eventsourceClient, connectURLRaw(p.URL, `{"bindings": "x"}`))

	ev := c.expect(t, "error", eventTimeout)
	checkEventID(t, ev)
	var text string
	decodeData(t, ev, &text)
	if want := "Bindings must be an array of {exchange, routingKeyPattern}"; text != want {
		t.Errorf("error event's text is %q, want %q", text, want)
	}

	// The proxy ends the stream; EventSource reconnects (after its default
	// delay) carrying Last-Event-ID: -, and the proxy's 204 closes it.
	ev = c.expect(t, "connection-error", eventTimeout)
	if ev.ReadyState == nil || *ev.ReadyState != 0 {
		t.Errorf("after the stream ended: got %s, want readyState 0 (CONNECTING)", ev.Line)
	}
	ev = c.expect(t, "connection-error", eventTimeout)
	if ev.ReadyState == nil || *ev.ReadyState != 2 {
		t.Errorf("after the reconnection: got %s, want readyState 2 (CLOSED)", ev.Line)
	}
	ev = c.expect(t, "exit", eventTimeout)
	if ev.Reason != "closed" || ev.ReadyState == nil || *ev.ReadyState != 2 {
		t.Errorf("got %s, want the client to end CLOSED", ev.Line)
	}
	c.waitExit(t, eventTimeout)

	var attempts []clientEvent
	statuses := map[int]int{}
	for _, ev := range c.all() {
		switch ev.Type {
		case "request":
			attempts = append(attempts, ev)
		case "response":
			statuses[ev.Attempt] = ev.Status
		}
	}
	if len(attempts) != 2 {
		t.Fatalf("EventSource made %d requests, want 2 (the first and one reconnection)", len(attempts))
	}
	if id := attempts[1].LastEventID; id == nil || *id != "-" {
		t.Errorf("the reconnection carried Last-Event-ID %v, want %q", id, "-")
	}
	if statuses[1] != http.StatusOK || statuses[2] != http.StatusNoContent {
		t.Errorf("answers to the two requests: %d and %d, want 200 and 204", statuses[1], statuses[2])
	}

	t.Run("direct request with Last-Event-ID", func(t *testing.T) {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, connectURL(t, p.URL, binding{ex.Name, "#"}), nil)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Last-Event-ID", "-")
		req.Header.Set("Origin", "http://page.example")
		res := do(t, req)
		body, err := io.ReadAll(res.Body)
		if err != nil {
			t.Fatalf("read body: %v", err)
		}
		if res.StatusCode != http.StatusNoContent || len(body) != 0 {
			t.Errorf("GET with Last-Event-ID: -: got %s with %d bytes of body %q, want 204 No Content and no body", res.Status, len(body), body)
		}
		// A browser's EventSource on another origin sees the 204 only
		// through CORS; without it, it gets a network error instead.
		if got := res.Header.Get("Access-Control-Allow-Origin"); got != "*" {
			t.Errorf("GET with Last-Event-ID: - and Origin: the 204 carried Access-Control-Allow-Origin %q, want %q", got, "*")
		}
	})
}

// checkReady fails the test unless ev is the proxy's `ready` event.
func checkReady(t testing.TB, ev clientEvent) {
	t.Helper()
	checkEventID(t, ev)
	var data map[string]any
	decodeData(t, ev, &data)
	if len(data) != 0 {
		t.Errorf("ready event's data is %s, want {}", ev.Data)
	}
}

// checkMessage fails the test unless ev is a `message` event carrying a
// message published to exchange with routing key key, routes and payload.
func checkMessage(t testing.TB, ev clientEvent, exchange, key string, routes []string, payload []byte) {
	t.Helper()
	checkEventID(t, ev)
	var got messageData
	decodeData(t, ev, &got)
	if got.Exchange != exchange || got.RoutingKey != key {
		t.Errorf("message from exchange %q with key %q, want %q and %q", got.Exchange, got.RoutingKey, exchange, key)
	}
	if got.Redelivered == nil || *got.Redelivered {
		t.Errorf("message's redelivered is not false: %s", ev.Data)
	}
	if !reflect.DeepEqual(got.Routes, routes) {
		t.Errorf("message's routes are %#v, want %#v", got.Routes, routes)
	}
	if got.Payload == nil || !jsonEqual(t, got.Payload, payload) {
		t.Errorf("message's payload is %s, want %s", got.Payload, payload)
	}
}

// checkCounts fails the test unless the client printed each type of event
// the given number of times.
func checkCounts(t testing.TB, c *client, want map[string]int) {
	t.Helper()
	got := make(map[string]int)
	for _, ev := range c.all() {
		got[ev.Type]++
	}
	for typ, n := range want {
		if got[typ] != n {
			t.Errorf("%s printed %d %q events, want %d", c.script, got[typ], typ, n)
		}
	}
}

// mustJSON returns v as JSON.
func mustJSON(t testing.TB, v any) []byte {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// do sends req with a client of the test's own that keeps no connection
// open after the test.
func do(t testing.TB, req *http.Request) *http.Response {
	t.Helper()
	transport := &http.Transport{DisableKeepAlives: true}
	t.Cleanup(transport.CloseIdleConnections)
	res, err := (&http.Client{Transport: transport}).Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	t.Cleanup(func() { res.Body.Close() })
	return res
}
