package broker

import (
	"bytes"
	"encoding/json"
	"slices"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

func TestMessageData(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		m    *Message
		want string
	}{
		{"json body compacted", &Message{Exchange: "e", RoutingKey: "k", Body: []byte("{\n  \"a\": [1, 2],\n  \"s\": \"x\\ny\"\n}")},
			`{"exchange":"e","routingKey":"k","redelivered":false,"routes":[],"payload":{"a":[1,2],"s":"x\ny"}}`},
		{"routes from CC", &Message{Exchange: "e", RoutingKey: "k", CC: []string{"route.a.b", "other", "route."}, Redelivered: true, Body: []byte(`1`)},
			`{"exchange":"e","routingKey":"k","redelivered":true,"routes":["a.b",""],"payload":1}`},
		{"text body", &Message{Exchange: "e", RoutingKey: "k", Body: []byte("line 1\nevent: ready\n\"quoted\" \\ \t\x01")},
			`{"exchange":"e","routingKey":"k","redelivered":false,"routes":[],"payload":"line 1\nevent: ready\n\"quoted\" \\ \t\u0001"}`},
		{"invalid UTF-8", &Message{Exchange: "e\xff", RoutingKey: "k", Body: []byte("a\xffb")},
			`{"exchange":"e\ufffd","routingKey":"k","redelivered":false,"routes":[],"payload":"a\ufffdb"}`},
		{"JSON with invalid UTF-8 in a string", &Message{Exchange: "e", RoutingKey: "k", Body: []byte("\"a\xff\"")},
			`{"exchange":"e","routingKey":"k","redelivered":false,"routes":[],"payload":"\"a\ufffd\""}`},
		{"empty body", &Message{Exchange: "e", RoutingKey: "", Body: nil},
			`{"exchange":"e","routingKey":"","redelivered":false,"routes":[],"payload":""}`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := string(tc.m.Data()); got != tc.want {
				t.Fatalf("got  %s\nwant %s", got, tc.want)
			}
		})
	}
}

// FuzzMessageData checks that the data of any message is one line of
// valid JSON whose strings say what the message said.
func FuzzMessageData(f *testing.F) {
	f.Add("exchange/x", "a.b", "route.x", []byte(`{"a":1}`))
	f.Add("e", "", "", []byte("text\n\x00\xff"))
	f.Add("\u2028", "\x7f", "route.\"", []byte(` [ 1 , "\u2028" ] `))
	f.Fuzz(func(t *testing.T, exchange, key, cc string, body []byte) {
		m := &Message{Exchange: exchange, RoutingKey: key, CC: []string{cc}, Body: body}
		data := m.Data()
		if bytes.ContainsAny(data, "\r\n") || !utf8.Valid(data) {
			t.Fatalf("data %q is not one line of UTF-8", data)
		}
		if want := "<" + string(data) + ">"; string(m.Framed("<", ">")) != want {
			t.Fatalf("framed %q, want %q", m.Framed("<", ">"), want)
		}
		var got struct {
			Exchange, RoutingKey string
			Routes               []string
			Payload              json.RawMessage
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("data %q: %v", data, err)
		}
		if utf8.ValidString(exchange) && got.Exchange != exchange || utf8.ValidString(key) && got.RoutingKey != key {
			t.Fatalf("exchange/key %q %q came back as %q %q", exchange, key, got.Exchange, got.RoutingKey)
		}
		if json.Valid(body) && utf8.Valid(body) {
			var want bytes.Buffer
			_ = json.Compact(&want, body)
			if !bytes.Equal(got.Payload, want.Bytes()) {
				t.Fatalf("JSON payload %q came back as %q", body, got.Payload)
			}
		} else if utf8.Valid(body) {
			var s string
			if err := json.Unmarshal(got.Payload, &s); err != nil || s != string(body) {
				t.Fatalf("text payload %q came back as %q (%v)", body, got.Payload, err)
			}
		}
	})
}

func TestMessageFramed(t *testing.T) {
	t.Parallel()
	m := &Message{Exchange: "e", RoutingKey: "k", Body: []byte("a\nb")}
	const head, tail = "event: message\ndata: ", "\nid: -\n\n"
	framed := m.Framed(head, tail)
	if want := head + string(m.Data()) + tail; string(framed) != want {
		t.Fatalf("got %q, want %q", framed, want)
	}
	if &m.Framed(head, tail)[0] != &framed[0] || &m.Data()[0] != &framed[len(head)] {
		t.Fatal("the message is encoded or framed again on a later call")
	}
	if got, want := string(m.Framed("[", "]")), "["+string(m.Data())+"]"; got != want {
		t.Fatalf("framed otherwise: got %q, want %q", got, want)
	}
	// Data first, then Framed: the frame is right, if not shared.
	m = &Message{Exchange: "e", RoutingKey: "k"}
	data := string(m.Data())
	if got, want := string(m.Framed(head, tail)), head+data+tail; got != want {
		t.Fatalf("framed after Data: got %q, want %q", got, want)
	}
}

// TestCCKeys: only the long strings of CC are routing keys, as for RabbitMQ.
func TestCCKeys(t *testing.T) {
	got := ccKeys(amqp.Table{"CC": []interface{}{"route.a", []byte("route.b"), int32(1), "c"}})
	if len(got) != 2 || got[0] != "route.a" || got[1] != "c" {
		t.Fatalf("ccKeys = %q, want [route.a c]", got)
	}
	if got := ccKeys(amqp.Table{"CC": "route.a"}); len(got) != 0 {
		t.Fatalf("ccKeys of a string header = %q, want none", got)
	}
}

// TestDeadLetter checks what a dead-lettered copy says of the message the
// broker dropped from our queue, in the shape RabbitMQ 3.10 gives it: the
// entry for our queue names the original exchange and routing keys (the
// routing key, then CC's strings); without that entry the drop is
// uncounted.
func TestDeadLetter(t *testing.T) {
	now := time.Now()
	death := func(queue string, keys ...interface{}) amqp.Table {
		return amqp.Table{"count": int64(1), "exchange": "ex", "queue": queue, "reason": "maxlen", "routing-keys": keys}
	}
	d := &amqp.Delivery{Exchange: "", RoutingKey: "q/dropped", Body: []byte("x"), Headers: amqp.Table{
		"x-death": []interface{}{death("elsewhere", "other"), death("q", "primary.a", "cc.one", "cc.two")},
	}}
	m := deadLetter(d, "q", now)
	if m.drop != dropCounted || m.Exchange != "ex" || m.RoutingKey != "primary.a" || !slices.Equal(m.CC, []string{"cc.one", "cc.two"}) || m.Body != nil {
		t.Errorf("got %+v", m)
	}
	for name, h := range map[string]amqp.Table{
		"no header":    nil,
		"other queue":  {"x-death": []interface{}{death("elsewhere", "k")}},
		"no keys":      {"x-death": []interface{}{death("q")}},
		"not an array": {"x-death": "q"},
		"not a table":  {"x-death": []interface{}{"q"}},
		"no exchange":  {"x-death": []interface{}{amqp.Table{"queue": "q", "routing-keys": []interface{}{"k"}}}},
	} {
		if m := deadLetter(&amqp.Delivery{Headers: h}, "q", now); m.drop != dropUncounted {
			t.Errorf("%s: got %+v, want an uncounted drop", name, m)
		}
	}
}
