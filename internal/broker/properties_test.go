package broker

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"math"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

const testHead, testTail = "event: message\ndata: ", "\nid: -\n\n"

// withProperties is the message of d as the connection takes it while a
// subscription asks for properties.
func withProperties(d *amqp.Delivery) *Message {
	m := messageFromDelivery(d, time.Now())
	m.Props = propertiesFromDelivery(d)
	return m
}

// TestMessageDataWithProperties is the golden form of a message's data
// with its properties and headers: every property, and every type that a
// headers table holds.
func TestMessageDataWithProperties(t *testing.T) {
	t.Parallel()
	ts := time.Date(2026, 12, 2, 3, 14, 15, 0, time.UTC)
	d := &amqp.Delivery{
		Exchange: "e", RoutingKey: "k", Body: []byte(`{"a":1}`),
		ContentType: "application/json", ContentEncoding: "utf-8", DeliveryMode: 2, Priority: 5,
		CorrelationId: "c-1", ReplyTo: "r", Expiration: "60000", MessageId: "m-1",
		Timestamp: ts, Type: "task-completed", UserId: "guest", AppId: "queue",
		Headers: amqp.Table{
			"CC":       []any{"route.x", "other"},
			"str":      "a\"b\n\xff",
			"bool":     true,
			"int8":     int8(-8),
			"uint8":    uint8(200),
			"int16":    int16(-1600),
			"uint16":   uint16(65535),
			"int32":    int32(math.MinInt32),
			"uint32":   uint32(math.MaxUint32),
			"int64":    int64(math.MaxInt64),
			"float32":  float32(1.5),
			"float64":  1e300,
			"nan":      math.NaN(),
			"inf":      math.Inf(-1),
			"decimal":  amqp.Decimal{Scale: 2, Value: -1234},
			"decimal0": amqp.Decimal{Scale: 5, Value: 12},
			"time":     ts,
			"bytes":    []byte{0, 1, 0xff},
			"void":     nil,
			"nested":   amqp.Table{"b": []any{int32(1), amqp.Table{}}, "a": "x"},
		},
	}
	m := withProperties(d)
	want := `{"exchange":"e","routingKey":"k","redelivered":false,"routes":["x"],"payload":{"a":1},` +
		`"properties":{"contentType":"application/json","contentEncoding":"utf-8","deliveryMode":2,"priority":5,` +
		`"correlationId":"c-1","replyTo":"r","expiration":"60000","messageId":"m-1","timestamp":"2026-12-02T03:14:15Z",` +
		`"type":"task-completed","userId":"guest","appId":"queue"},` +
		`"headers":{"CC":["route.x","other"],"bool":true,"bytes":"AAH/","decimal":-12.34,"decimal0":0.00012,` +
		`"float32":1.5,"float64":1e+300,"inf":"-Infinity","int16":-1600,"int32":-2147483648,"int64":9223372036854775807,` +
		`"int8":-8,"nan":"NaN","nested":{"a":"x","b":[1,{}]},"str":"a\"b\n\ufffd","time":"2026-12-02T03:14:15Z",` +
		`"uint16":65535,"uint32":4294967295,"uint8":200,"void":null}}`
	got := m.FramedProperties(testHead, testTail)
	if string(got) != testHead+want+testTail {
		t.Fatalf("got  %s\nwant %s", got, testHead+want+testTail)
	}
	if !json.Valid([]byte(want)) {
		t.Fatal("the golden data is not valid JSON")
	}
	// Once per message; the data without properties is as before, and
	// shared too.
	if &m.FramedProperties(testHead, testTail)[0] != &got[0] {
		t.Fatal("the properties are encoded again on a later call")
	}
	plain := `{"exchange":"e","routingKey":"k","redelivered":false,"routes":["x"],"payload":{"a":1}}`
	if string(m.Data()) != plain || string(m.Framed(testHead, testTail)) != testHead+plain+testTail {
		t.Fatalf("data without properties changed: %s", m.Data())
	}
	framed := m.Framed(testHead, testTail)
	if &m.Framed(testHead, testTail)[0] != &framed[0] {
		t.Fatal("the data without properties is framed again on a later call")
	}
	if got, want := string(m.FramedProperties("[", "]")), "["+want+"]"; got != want {
		t.Fatalf("framed otherwise: got %q, want %q", got, want)
	}
}

// TestMessageDataNoProperties: what is not set is left out; a message
// without Props (a test's) gets empty objects.
func TestMessageDataNoProperties(t *testing.T) {
	t.Parallel()
	m := withProperties(&amqp.Delivery{Exchange: "e", RoutingKey: "k"})
	const want = `{"exchange":"e","routingKey":"k","redelivered":false,"routes":[],"payload":"","properties":{},"headers":{}}`
	if got := string(m.FramedProperties("", "")); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	m = &Message{Exchange: "e", RoutingKey: "k"}
	if got := string(m.FramedProperties("", "")); got != want {
		t.Fatalf("without Props: got  %s\nwant %s", got, want)
	}
}

// TestHeadersBounds: a table whose JSON is over MaxHeadersJSON keeps the
// entries that fit, and one nested deeper than MaxHeadersDepth has null
// there; both say headersTruncated, and the data stays valid JSON.
func TestHeadersBounds(t *testing.T) {
	t.Parallel()
	big := amqp.Table{}
	for i := range 100 {
		// Control characters: 6 bytes of JSON each.
		big[string(rune('a'+i%26))+strings.Repeat("k", i)] = strings.Repeat("\x01", 1000)
	}
	var deep any = "bottom"
	for range 40 {
		deep = []any{deep}
	}
	for name, tc := range map[string]struct {
		h    amqp.Table
		cost int
	}{
		"large": {big, MaxHeadersJSON},
		"deep":  {amqp.Table{"d": deep, "e": amqp.Table{"x": amqp.Table{}}}, 200},
	} {
		m := withProperties(&amqp.Delivery{Exchange: "e", Headers: tc.h})
		data := m.FramedProperties("", "")
		var got struct {
			Headers          map[string]any
			HeadersTruncated bool
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !got.HeadersTruncated || len(got.Headers) == 0 {
			t.Fatalf("%s: truncated %v, %d headers", name, got.HeadersTruncated, len(got.Headers))
		}
		i := bytes.Index(data, []byte(`"headers":`)) + len(`"headers":`)
		j := bytes.LastIndex(data, []byte(`,"headersTruncated"`))
		if n := j - i; n > MaxHeadersJSON {
			t.Fatalf("%s: headers JSON of %d bytes, over %d", name, n, MaxHeadersJSON)
		}
		if m.Size() < len(data) {
			t.Fatalf("%s: Size %d is below the data's %d bytes", name, m.Size(), len(data))
		}
	}
}

// FuzzHeadersJSON checks that any headers table, as the fuzzer builds it
// from bytes, makes one line of valid JSON within the bounds, whose
// top-level string headers say what the table said.
func FuzzHeadersJSON(f *testing.F) {
	f.Add([]byte("SaAtSbFSc"), "k\xff\"", "v\n\u2028")
	f.Add([]byte("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAS"), "", "")
	f.Add([]byte("d\x7f\xf0\x00\x00\x00\x00\x00\x00D\xff\x80\x00\x00\x00T\x80\x00\x00\x00\x00\x00\x00\x00"), "x", "y")
	f.Fuzz(func(t *testing.T, program []byte, key, str string) {
		g := &tableGen{program: program, key: key, str: str}
		h := g.table(0)
		m := withProperties(&amqp.Delivery{Exchange: "e", RoutingKey: "k", Headers: h,
			ContentType: str, Timestamp: time.Unix(int64(g.u64()), 0)})
		data := m.FramedProperties("", "")
		if bytes.ContainsAny(data, "\r\n") || !utf8.Valid(data) {
			t.Fatalf("data %q is not one line of UTF-8", data)
		}
		if !json.Valid(data) {
			t.Fatalf("data %q is not valid JSON", data)
		}
		var got struct {
			Headers          map[string]json.RawMessage
			HeadersTruncated bool
		}
		if err := json.Unmarshal(data, &got); err != nil {
			t.Fatalf("data %q: %v", data, err)
		}
		if got.HeadersTruncated {
			return
		}
		for k, v := range h {
			s, ok := v.(string)
			if !ok || !utf8.ValidString(k) || !utf8.ValidString(s) {
				continue
			}
			var back string
			if err := json.Unmarshal(got.Headers[k], &back); err != nil || back != s {
				t.Fatalf("header %q = %q came back as %s (%v)", k, s, got.Headers[k], err)
			}
		}
	})
}

// tableGen builds a headers table from a fuzzer's bytes: each byte names
// the type of the next value (as AMQP's field types do), and the bytes
// after it give its value.
type tableGen struct {
	program  []byte
	key, str string
	n        int
}

func (g *tableGen) next() (byte, bool) {
	if len(g.program) == 0 {
		return 0, false
	}
	c := g.program[0]
	g.program = g.program[1:]
	return c, true
}

func (g *tableGen) u64() uint64 {
	var b [8]byte
	n := copy(b[:], g.program)
	g.program = g.program[n:]
	return binary.BigEndian.Uint64(b[:])
}

func (g *tableGen) table(depth int) amqp.Table {
	t := amqp.Table{}
	for len(g.program) > 0 && len(t) < 64 {
		g.n++
		k := g.key
		if g.n%2 == 0 {
			k += string(rune('a' + g.n%26))
		}
		c, _ := g.next()
		if c == 'E' { // end of this table
			break
		}
		t[k] = g.value(c, depth)
	}
	return t
}

func (g *tableGen) value(c byte, depth int) any {
	v := g.u64()
	switch c {
	case 't':
		return v&1 == 1
	case 'b':
		return int8(v)
	case 'B':
		return uint8(v)
	case 's':
		return int16(v)
	case 'u':
		return uint16(v)
	case 'I':
		return int32(v)
	case 'i':
		return uint32(v)
	case 'l':
		return int64(v)
	case 'f':
		return math.Float32frombits(uint32(v))
	case 'd':
		return math.Float64frombits(v)
	case 'D':
		return amqp.Decimal{Scale: uint8(v >> 32), Value: int32(v)}
	case 'T':
		return time.Unix(int64(v), 0)
	case 'x':
		return []byte(g.str)
	case 'V':
		return nil
	case 'A':
		var a []any
		for len(g.program) > 0 && len(a) < 64 {
			c, _ := g.next()
			if c == 'E' {
				break
			}
			a = append(a, g.value(c, depth+1))
		}
		return a
	case 'F':
		return g.table(depth + 1)
	}
	return g.str + strings.Repeat(g.str, int(v%4))
}

// TestSubscriptionProperties: a subscription that asks for properties is
// counted from before it is in the router until Close, so the connection
// takes them while it lives; it gets no message taken without them, which
// a subscription that does not ask gets.
func TestSubscriptionProperties(t *testing.T) {
	s := testSession(t, newOpConn())
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	plain := subscribeTest(t, s, "a.#")
	withProps, err := s.subscribeWith(ctx, bindings("a.#"), SubscribeOptions{Properties: true})
	if err != nil {
		t.Fatal(err)
	}
	if n := s.props.Load(); n != 1 {
		t.Fatalf("%d subscriptions counted as asking, want 1", n)
	}
	// The opConn never delivers: the test is the router's goroutine.
	without := &Message{Exchange: testExchange, RoutingKey: "a.1"}
	with := &Message{Exchange: testExchange, RoutingKey: "a.2", Props: &Properties{ContentType: "x"}}
	s.router.route(without)
	s.router.route(with)
	if got, _ := plain.Take(nil); !slices.Equal(got, []*Message{without, with}) {
		t.Errorf("the plain subscription got %v", got)
	}
	if got, _ := withProps.Take(nil); !slices.Equal(got, []*Message{with}) {
		t.Errorf("the subscription with properties got %v, want only the message with them", got)
	}
	withProps.Close()
	withProps.Close()
	if n := s.props.Load(); n != 0 {
		t.Fatalf("%d subscriptions counted as asking after Close, want 0", n)
	}
}

// TestFramedPropertiesConcurrent: streams of both forms that send one
// message at once share one buffer per form.
func TestFramedPropertiesConcurrent(t *testing.T) {
	t.Parallel()
	m := withProperties(&amqp.Delivery{Exchange: "e", RoutingKey: "k", Body: []byte(`{}`), ContentType: "x",
		Headers: amqp.Table{"a": "b"}})
	const n = 8
	plain, props := make([][]byte, n), make([][]byte, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if i%2 == 0 {
				props[i] = m.FramedProperties(testHead, testTail)
				plain[i] = m.Framed(testHead, testTail)
			} else {
				plain[i] = m.Framed(testHead, testTail)
				props[i] = m.FramedProperties(testHead, testTail)
			}
		})
	}
	wg.Wait()
	for i := range n {
		if &plain[i][0] != &plain[0][0] || &props[i][0] != &props[0][0] {
			t.Fatalf("stream %d got a buffer of its own", i)
		}
	}
	if want := testHead + string(m.Data()[:len(m.Data())-1]) + `,"properties":{"contentType":"x"},"headers":{"a":"b"}}` + testTail; string(props[0]) != want {
		t.Fatalf("got %q, want %q", props[0], want)
	}
}
