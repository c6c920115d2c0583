package broker

import (
	"bytes"
	"encoding/json"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	amqp "github.com/rabbitmq/amqp091-go"
)

// routePrefix marks the CC entries that Taskcluster uses as routes.
const routePrefix = "route."

// Message is one message taken from the broker. It is shared, read-only,
// by every subscription it is routed to; its fields must not be modified.
type Message struct {
	Exchange   string
	RoutingKey string
	// CC holds the routing keys of the message's CC header, in order.
	CC   []string
	Body []byte
	// Received is when the process took the message from the broker.
	Received time.Time
	// Props are the message's properties and headers. The connection
	// takes them only while a subscription asks for them: nil otherwise,
	// and such a message does not reach a subscription that asks (see
	// SubscribeOptions.Properties).
	Props *Properties

	// size is Size, worked out by the router before any subscription
	// sees the message (0: not yet).
	size int

	// encoded once: framed is the data with the caller's head and tail
	// around it (see Framed), data the JSON object inside it.
	framed, data []byte
	head, tail   string
	once         sync.Once

	Redelivered bool
	// drop is not zero for a message that the broker dropped from our
	// queue: it is counted, not delivered (see deadLetter).
	drop dropKind
}

// messageFromDelivery copies what eventsproxy needs out of d, but its
// properties (see propertiesFromDelivery).
func messageFromDelivery(d *amqp.Delivery, now time.Time) *Message {
	return &Message{
		Exchange:    d.Exchange,
		RoutingKey:  d.RoutingKey,
		Redelivered: d.Redelivered,
		CC:          ccKeys(d.Headers),
		Body:        d.Body,
		Received:    now,
	}
}

// dropKind says whether a Message stands for messages that the broker
// dropped from our queue.
type dropKind uint8

const (
	dropNone      dropKind = iota // a message to deliver
	dropCounted                   // one dropped message, routed as Exchange, RoutingKey and CC say
	dropUncounted                 // messages dropped whose number or routing nobody knows
)

// deadLetter returns what the dead-lettered copy d says of a message that
// the broker dropped from queue: the exchange and routing keys it came by,
// which RabbitMQ keeps in the x-death entry for queue (the routing key
// first, then the string entries of CC; the copy itself goes by the
// default exchange, without its CC header). Without that entry the drop
// cannot be routed, and counts as uncounted.
func deadLetter(d *amqp.Delivery, queue string, now time.Time) *Message {
	deaths, _ := d.Headers["x-death"].([]interface{})
	for _, e := range deaths {
		death, _ := e.(amqp.Table)
		if q, _ := death["queue"].(string); q != queue {
			continue
		}
		exchange, ok := death["exchange"].(string)
		keys, _ := death["routing-keys"].([]interface{})
		if !ok || len(keys) == 0 {
			break
		}
		m := &Message{Exchange: exchange, Received: now, drop: dropCounted}
		for i, k := range keys {
			s, ok := k.(string)
			switch {
			case !ok:
			case i == 0:
				m.RoutingKey = s
			default:
				m.CC = append(m.CC, s)
			}
		}
		return m
	}
	return &Message{Received: now, drop: dropUncounted}
}

// ccKeys returns the long-string entries of the CC header, the ones
// RabbitMQ routes by. Publishers send an AMQP array of strings; anything
// else in it (a byte array, which the client decodes as []byte, a number)
// RabbitMQ ignores for routing, and so does the process: it takes no part
// in matching and is no route.
func ccKeys(h amqp.Table) []string {
	cc, ok := h["CC"].([]interface{})
	if !ok {
		return nil
	}
	keys := make([]string, 0, len(cc))
	for _, e := range cc {
		if s, ok := e.(string); ok {
			keys = append(keys, s)
		}
	}
	return keys
}

// Size is about the memory m holds once a stream has sent it: its body,
// names and routes, and its encoded data, which is about as long again.
// Buffers are bounded by it.
func (m *Message) Size() int {
	if m.size > 0 {
		return m.size
	}
	return m.measure()
}

func (m *Message) measure() int {
	n := len(m.Exchange) + len(m.RoutingKey) + len(m.Body)
	for _, k := range m.CC {
		n += len(k) + 16
	}
	n = 2*n + 256
	if m.Props != nil {
		n += m.Props.cost()
	}
	return n
}

// Routes returns the CC entries that start with "route.", without that
// prefix, in order.
func (m *Message) Routes() []string {
	routes := []string{}
	for _, k := range m.CC {
		if r, ok := strings.CutPrefix(k, routePrefix); ok {
			routes = append(routes, r)
		}
	}
	return routes
}

// Data returns the JSON object that a `message` event carries:
// {"exchange","routingKey","redelivered","routes","payload"}, on one line
// (it never holds CR or LF). The payload is the body itself when it is
// valid JSON (compacted), else the body as a JSON string. Data is computed
// once, however many streams send it, and is safe to call concurrently; the
// result must not be modified.
func (m *Message) Data() []byte {
	m.once.Do(func() { m.encode("", "") })
	return m.data
}

// Framed returns Data with head before it and tail after it, in one buffer
// made once per message, however many streams send it: a consumer frames
// the data for its wire (api: as an SSE event) without a copy per stream.
// Every caller must pass the same head and tail, as the first one's are
// kept; a call with others gets a buffer of its own. Framed is safe to call
// concurrently; the result must not be modified.
func (m *Message) Framed(head, tail string) []byte {
	m.once.Do(func() { m.encode(head, tail) })
	if head != m.head || tail != m.tail {
		b := make([]byte, 0, len(head)+len(m.data)+len(tail))
		return append(append(append(b, head...), m.data...), tail...)
	}
	return m.framed
}

// FramedProperties is Framed for the data with the message's properties
// and headers (see appendPropertiesJSON): the same object, with
// "properties" and "headers" after "payload". It is encoded once per
// message, the first time a stream asks, from Data; a message without
// Props gets empty ones. The same rules as Framed's hold for head and
// tail.
func (m *Message) FramedProperties(head, tail string) []byte {
	p := m.Props
	if p == nil {
		// Not shared: only tests' messages lack Props on this path.
		p = &Properties{}
	}
	p.once.Do(func() {
		// The data framed as Framed keeps it, so that the streams without
		// properties still share one buffer.
		f := m.Framed(head, tail)
		data := f[len(head) : len(f)-len(tail)]
		var b bytes.Buffer
		b.Grow(len(head) + len(data) + 256 + len(tail))
		b.WriteString(head)
		b.Write(data[:len(data)-1])
		appendPropertiesJSON(&b, m.Props)
		b.WriteByte('}')
		b.WriteString(tail)
		p.framed, p.head, p.tail = b.Bytes(), head, tail
	})
	if head != p.head || tail != p.tail {
		inner := p.framed[len(p.head) : len(p.framed)-len(p.tail)]
		b := make([]byte, 0, len(head)+len(inner)+len(tail))
		return append(append(append(b, head...), inner...), tail...)
	}
	return p.framed
}

// encode writes the data, between head and tail, in one buffer.
func (m *Message) encode(head, tail string) {
	var b bytes.Buffer
	b.Grow(len(head) + len(m.Body) + len(m.Exchange) + len(m.RoutingKey) + 96 + len(tail))
	b.WriteString(head)
	b.WriteString(`{"exchange":`)
	writeJSONString(&b, m.Exchange)
	b.WriteString(`,"routingKey":`)
	writeJSONString(&b, m.RoutingKey)
	b.WriteString(`,"redelivered":`)
	b.WriteString(strconv.FormatBool(m.Redelivered))
	b.WriteString(`,"routes":[`)
	for i, r := range m.Routes() {
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(&b, r)
	}
	b.WriteString(`],"payload":`)
	writePayload(&b, m.Body)
	b.WriteByte('}')
	b.WriteString(tail)
	m.head, m.tail = head, tail
	m.framed = b.Bytes()
	m.data = m.framed[len(head) : len(m.framed)-len(tail)]
}

// writePayload writes body as compact JSON when it is JSON, else as a JSON
// string. Invalid UTF-8 makes it a string (with replacement characters), so
// the stream stays valid UTF-8.
func writePayload(b *bytes.Buffer, body []byte) {
	if utf8.Valid(body) {
		n := b.Len()
		// Compact validates as it goes: one pass over the body.
		if err := json.Compact(b, body); err == nil {
			return
		}
		b.Truncate(n)
	}
	writeJSONString(b, string(body))
}

// writeJSONString writes s as a JSON string. Control characters are
// escaped, so the result never holds a raw newline; invalid UTF-8 becomes
// U+FFFD, as encoding/json does.
func writeJSONString(b *bytes.Buffer, s string) {
	const hex = "0123456789abcdef"
	b.WriteByte('"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c >= 0x20 && c != '"' && c != '\\' && c < utf8.RuneSelf {
			i++
			continue
		}
		if c < utf8.RuneSelf {
			b.WriteString(s[start:i])
			switch c {
			case '"', '\\':
				b.WriteByte('\\')
				b.WriteByte(c)
			case '\n':
				b.WriteString(`\n`)
			case '\r':
				b.WriteString(`\r`)
			case '\t':
				b.WriteString(`\t`)
			default:
				b.WriteString(`\u00`)
				b.WriteByte(hex[c>>4])
				b.WriteByte(hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b.WriteString(s[start:i])
			b.WriteString(`\ufffd`)
			i++
			start = i
			continue
		}
		i += size
	}
	b.WriteString(s[start:])
	b.WriteByte('"')
}
