package broker

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"sync"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// Properties are a message's AMQP basic properties and its headers table,
// as the client library decodes them. A Message carries them only while a
// subscription asks for them (SubscribeOptions.Properties): see
// Message.Props.
type Properties struct {
	ContentType, ContentEncoding string
	// DeliveryMode is 1 (transient) or 2 (persistent); 0: not set.
	DeliveryMode, Priority uint8
	CorrelationID, ReplyTo string
	Expiration, MessageID  string
	// Timestamp has a resolution of a second (zero: not set).
	Timestamp           time.Time
	Type, UserID, AppID string
	// Headers is the headers table, CC included (RabbitMQ strips BCC).
	Headers amqp.Table

	// encoded once: framed is the message's data with its properties,
	// between the caller's head and tail (see Message.FramedProperties).
	once       sync.Once
	framed     []byte
	head, tail string
}

// Clone returns a copy of p's properties and headers (the table itself
// shared), without its encoding: for a message of its own.
func (p *Properties) Clone() *Properties {
	return &Properties{
		ContentType: p.ContentType, ContentEncoding: p.ContentEncoding,
		DeliveryMode: p.DeliveryMode, Priority: p.Priority,
		CorrelationID: p.CorrelationID, ReplyTo: p.ReplyTo,
		Expiration: p.Expiration, MessageID: p.MessageID,
		Timestamp: p.Timestamp, Type: p.Type, UserID: p.UserID, AppID: p.AppID,
		Headers: p.Headers,
	}
}

// propertiesFromDelivery copies d's properties and headers.
func propertiesFromDelivery(d *amqp.Delivery) *Properties {
	return &Properties{
		ContentType:     d.ContentType,
		ContentEncoding: d.ContentEncoding,
		DeliveryMode:    d.DeliveryMode,
		Priority:        d.Priority,
		CorrelationID:   d.CorrelationId,
		ReplyTo:         d.ReplyTo,
		Expiration:      d.Expiration,
		MessageID:       d.MessageId,
		Timestamp:       d.Timestamp,
		Type:            d.Type,
		UserID:          d.UserId,
		AppID:           d.AppId,
		Headers:         d.Headers,
	}
}

// The bounds of a headers table's JSON. A publisher controls its headers;
// the broker bounds them by its frame size (a content header frame cannot
// be split: 128 KiB by default), and these bound what a stream gets of them.
const (
	// MaxHeadersJSON bounds the JSON of a message's headers: the entries
	// (in key order) that do not fit are left out, and the event says
	// "headersTruncated": true.
	MaxHeadersJSON = 64 << 10
	// MaxHeadersDepth bounds the nesting of tables and arrays in headers:
	// a value nested deeper is written as null, and the event says
	// "headersTruncated": true.
	MaxHeadersDepth = 16
)

// cost is about the memory that p holds, and bounds what its encoding
// adds to the message's data, for Message.Size.
func (p *Properties) cost() int {
	n := 256 + len(p.ContentType) + len(p.ContentEncoding) + len(p.CorrelationID) + len(p.ReplyTo) +
		len(p.Expiration) + len(p.MessageID) + len(p.Type) + len(p.UserID) + len(p.AppID)
	return n + min(tableCost(p.Headers), 2*MaxHeadersJSON) + MaxHeadersJSON/8
}

// tableCost is about the memory that a decoded table holds.
func tableCost(t amqp.Table) int {
	n := 48
	for k, v := range t {
		n += len(k) + valueCost(v)
	}
	return n
}

func valueCost(v any) int {
	switch v := v.(type) {
	case string:
		return 32 + len(v)
	case []byte:
		return 40 + len(v)
	case []any:
		n := 40
		for _, e := range v {
			n += valueCost(e)
		}
		return n
	case amqp.Table:
		return tableCost(v)
	}
	return 32
}

// appendPropertiesJSON appends to b the members that a `message` event
// with properties carries after "payload":
//
//	,"properties":{...},"headers":{...}
//
// and ,"headersTruncated":true when MaxHeadersJSON or MaxHeadersDepth left
// part of the headers out. properties holds only the properties that are
// set (not empty, not zero); the timestamp is RFC 3339 in UTC. Headers
// values map to JSON as follows: strings as strings (invalid UTF-8 as
// U+FFFD), booleans as booleans, integers and finite floats as numbers,
// NaN and the infinities as the strings "NaN", "Infinity" and "-Infinity",
// decimals as numbers in decimal notation (exact), timestamps as RFC 3339
// strings, byte arrays as base64 strings, arrays as arrays, tables as
// objects with their keys sorted, void as null. A nil p writes empty
// objects.
func appendPropertiesJSON(b *bytes.Buffer, p *Properties) {
	b.WriteString(`,"properties":{`)
	if p == nil {
		b.WriteString(`},"headers":{}`)
		return
	}
	first := true
	key := func(name string) {
		if !first {
			b.WriteByte(',')
		}
		first = false
		b.WriteByte('"')
		b.WriteString(name)
		b.WriteString(`":`)
	}
	str := func(name, v string) {
		if v != "" {
			key(name)
			writeJSONString(b, v)
		}
	}
	num := func(name string, v uint8) {
		if v != 0 {
			key(name)
			b.WriteString(strconv.Itoa(int(v)))
		}
	}
	str("contentType", p.ContentType)
	str("contentEncoding", p.ContentEncoding)
	num("deliveryMode", p.DeliveryMode)
	num("priority", p.Priority)
	str("correlationId", p.CorrelationID)
	str("replyTo", p.ReplyTo)
	str("expiration", p.Expiration)
	str("messageId", p.MessageID)
	if !p.Timestamp.IsZero() {
		str("timestamp", formatTime(p.Timestamp))
	}
	str("type", p.Type)
	str("userId", p.UserID)
	str("appId", p.AppID)
	b.WriteString(`},"headers":`)
	if truncated := appendHeaders(b, p.Headers); truncated {
		b.WriteString(`,"headersTruncated":true`)
	}
}

// appendHeaders writes t as a JSON object, within MaxHeadersJSON and
// MaxHeadersDepth, and says whether it left anything out.
func appendHeaders(b *bytes.Buffer, t amqp.Table) (truncated bool) {
	start := b.Len()
	b.WriteByte('{')
	for i, k := range sortedKeys(t) {
		mark := b.Len()
		if i > 0 {
			b.WriteByte(',')
		}
		writeJSONString(b, k)
		b.WriteByte(':')
		truncated = appendValue(b, t[k], 1) || truncated
		// The closing brace must fit too.
		if b.Len()-start+1 > MaxHeadersJSON {
			b.Truncate(mark)
			truncated = true
			break
		}
	}
	b.WriteByte('}')
	return truncated
}

func sortedKeys(t amqp.Table) []string {
	keys := make([]string, 0, len(t))
	for k := range t {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

// appendValue writes v, at nesting depth (the headers table is depth 0),
// and says whether it left anything out. A value of a type the table
// cannot hold is written as null.
func appendValue(b *bytes.Buffer, v any, depth int) (truncated bool) {
	switch v := v.(type) {
	case nil:
		b.WriteString("null")
	case string:
		writeJSONString(b, v)
	case bool:
		b.WriteString(strconv.FormatBool(v))
	case int8:
		b.WriteString(strconv.FormatInt(int64(v), 10))
	case int16:
		b.WriteString(strconv.FormatInt(int64(v), 10))
	case int32:
		b.WriteString(strconv.FormatInt(int64(v), 10))
	case int64:
		b.WriteString(strconv.FormatInt(v, 10))
	case int:
		b.WriteString(strconv.FormatInt(int64(v), 10))
	case uint8:
		b.WriteString(strconv.FormatUint(uint64(v), 10))
	case uint16:
		b.WriteString(strconv.FormatUint(uint64(v), 10))
	case uint32:
		b.WriteString(strconv.FormatUint(uint64(v), 10))
	case float32:
		writeFloat(b, float64(v), 32)
	case float64:
		writeFloat(b, v, 64)
	case amqp.Decimal:
		writeDecimal(b, v)
	case time.Time:
		writeJSONString(b, formatTime(v))
	case []byte:
		b.WriteByte('"')
		enc := base64.NewEncoder(base64.StdEncoding, b)
		_, _ = enc.Write(v)
		_ = enc.Close()
		b.WriteByte('"')
	case []any:
		if depth >= MaxHeadersDepth {
			b.WriteString("null")
			return true
		}
		b.WriteByte('[')
		for i, e := range v {
			if i > 0 {
				b.WriteByte(',')
			}
			truncated = appendValue(b, e, depth+1) || truncated
		}
		b.WriteByte(']')
	case amqp.Table:
		if depth >= MaxHeadersDepth {
			b.WriteString("null")
			return true
		}
		b.WriteByte('{')
		for i, k := range sortedKeys(v) {
			if i > 0 {
				b.WriteByte(',')
			}
			writeJSONString(b, k)
			b.WriteByte(':')
			truncated = appendValue(b, v[k], depth+1) || truncated
		}
		b.WriteByte('}')
	default:
		b.WriteString("null")
	}
	return truncated
}

// writeFloat writes f as a JSON number, or as a string for NaN and the
// infinities, which JSON has no numbers for.
func writeFloat(b *bytes.Buffer, f float64, bits int) {
	switch {
	case math.IsNaN(f):
		b.WriteString(`"NaN"`)
	case math.IsInf(f, 1):
		b.WriteString(`"Infinity"`)
	case math.IsInf(f, -1):
		b.WriteString(`"-Infinity"`)
	default:
		// 'g' may write an exponent such as 1e+21, which JSON allows.
		b.WriteString(strconv.FormatFloat(f, 'g', -1, bits))
	}
}

// writeDecimal writes d (d.Value × 10^-d.Scale) as an exact JSON number
// in decimal notation: 1234 with scale 2 is 12.34.
func writeDecimal(b *bytes.Buffer, d amqp.Decimal) {
	v := int64(d.Value)
	if v < 0 {
		b.WriteByte('-')
		v = -v
	}
	digits := strconv.FormatInt(v, 10)
	scale := int(d.Scale)
	if scale == 0 {
		b.WriteString(digits)
		return
	}
	if len(digits) <= scale {
		b.WriteString("0.")
		for range scale - len(digits) {
			b.WriteByte('0')
		}
		b.WriteString(digits)
		return
	}
	b.WriteString(digits[:len(digits)-scale])
	b.WriteByte('.')
	b.WriteString(digits[len(digits)-scale:])
}

// formatTime writes t in UTC, RFC 3339 with the fraction it has. Years
// outside 0000-9999, which RFC 3339 cannot write, are clamped to them.
func formatTime(t time.Time) string {
	t = t.UTC()
	if y := t.Year(); y < 0 {
		t = time.Date(0, 1, 1, 0, 0, 0, 0, time.UTC)
	} else if y > 9999 {
		t = time.Date(9999, 12, 31, 23, 59, 59, 0, time.UTC)
	}
	return t.Format(time.RFC3339Nano)
}
