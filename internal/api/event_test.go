package api

import (
	"bytes"
	"testing"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/sse"
)

// FuzzMessageEvent checks that the shared, once-framed `message` event of
// any message is what sse.AppendEvent makes of its data, and that it is
// framed once.
func FuzzMessageEvent(f *testing.F) {
	f.Add("exchange/x", "a.b", "route.x", []byte(`{"a":1}`), false)
	f.Add("e", "", "", []byte("text\n\r\x00\xff"), true)
	f.Add("\u2028", "\x7f", "route.\r\n", []byte(" [ 1 , \"\u2028\" ]\r\n"), false)
	f.Fuzz(func(t *testing.T, exchange, key, cc string, body []byte, redelivered bool) {
		m := &broker.Message{Exchange: exchange, RoutingKey: key, CC: []string{cc}, Body: body, Redelivered: redelivered}
		ev := messageEvent(m)
		if want := sse.AppendEvent(nil, kindMessage, m.Data()); !bytes.Equal(ev, want) {
			t.Fatalf("event %q, want %q", ev, want)
		}
		if &messageEvent(m)[0] != &ev[0] {
			t.Fatal("the event is framed again on a later call")
		}
	})
}
