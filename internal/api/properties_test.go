package api_test

import (
	"bufio"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/broker"
)

// rawStream opens a connect request for `#` on exchange with the extra
// query and returns the body's reader once the `ready` event has been read.
func rawStream(t *testing.T, base, exchange, extra string) *bufio.Reader {
	t.Helper()
	q := url.QueryEscape(`{"bindings":[{"exchange":` + strconv.Quote(exchange) + `,"routingKeyPattern":"#"}]}`)
	resp, err := http.Get(base + "/api/events/v1/connect/?bindings=" + q + extra)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	rd := bufio.NewReader(resp.Body)
	if got := readRawEvent(t, rd); !strings.Contains(got, "event: ready\n") {
		t.Fatalf("first event %q, want ready", got)
	}
	return rd
}

// readRawEvent returns the bytes of the next event, up to and with its
// blank line.
func readRawEvent(t *testing.T, rd *bufio.Reader) string {
	t.Helper()
	var ev strings.Builder
	for {
		line, err := rd.ReadString('\n')
		if err != nil {
			t.Fatalf("after %q: %v", ev.String(), err)
		}
		ev.WriteString(line)
		if line == "\n" {
			return ev.String()
		}
	}
}

// TestMessageProperties: with properties=1 a stream's `message` events
// carry the message's properties and headers; a stream without it gets
// the bytes it always got, from the same message.
func TestMessageProperties(t *testing.T) {
	p := startMemProxy(t)
	plain := rawStream(t, p.srv.URL, "ex", "")
	withProps := rawStream(t, p.srv.URL, "ex", "&properties=1")
	other := rawStream(t, p.srv.URL, "ex", "&properties=0")
	props := &broker.Properties{
		ContentType: "application/json", DeliveryMode: 2, MessageID: "m-1",
		Timestamp: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), AppID: "tests",
		Headers: amqp.Table{"x-trace": "abc", "n": int32(3), "nested": amqp.Table{"b": []byte("hi")}},
	}
	if err := p.mb.PublishWith("ex", "a.b", []string{"route.r.s", "other"}, []byte(`{"n": 1}`), props); err != nil {
		t.Fatal(err)
	}
	const head = `event: message` + "\n" + `data: {"exchange":"ex","routingKey":"a.b","redelivered":false,"routes":["r.s"],"payload":{"n":1}`
	const tail = "\nid: -\n\n"
	if got, want := readRawEvent(t, plain), head+"}"+tail; got != want {
		t.Errorf("without properties=1:\ngot  %q\nwant %q", got, want)
	}
	if got, want := readRawEvent(t, other), head+"}"+tail; got != want {
		t.Errorf("with properties=0:\ngot  %q\nwant %q", got, want)
	}
	want := head + `,"properties":{"contentType":"application/json","deliveryMode":2,"messageId":"m-1",` +
		`"timestamp":"2026-12-02T03:00:00Z","appId":"tests"},` +
		`"headers":{"CC":["route.r.s","other"],"n":3,"nested":{"b":"aGk="},"x-trace":"abc"}}` + tail
	if got := readRawEvent(t, withProps); got != want {
		t.Errorf("with properties=1:\ngot  %q\nwant %q", got, want)
	}
}
