package listen

import (
	"bytes"
	"encoding/json"
	"io"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// ANSI SGR sequences of the terminal summary.
const (
	sgrReset   = "\x1b[0m"
	sgrDim     = "\x1b[2m"
	sgrYellow  = "\x1b[33m"
	sgrCyan    = "\x1b[36m"
	sgrGreen   = "\x1b[32m"
	sgrMagenta = "\x1b[35m"
)

// Lengths, in characters, of the parts of a summary that can be long.
const (
	maxPreview    = 80
	maxRoutingKey = 120
	maxExchange   = 80
)

// writer writes messages to stdout in the form Options ask for, one Write
// per message so that each line arrives whole.
type writer struct {
	out     io.Writer
	summary bool // a summary per message rather than a JSON line
	color   bool
	now     func() time.Time
	buf     []byte
}

func newWriter(opts *Options, out io.Writer) *writer {
	w := &writer{
		out:     out,
		summary: opts.Terminal && !opts.JSON,
		color:   opts.Terminal && !opts.JSON && !opts.NoColor,
		now:     opts.now,
	}
	if w.now == nil {
		w.now = time.Now
	}
	return w
}

// message writes the data of one `message` event.
func (w *writer) message(data []byte) error {
	if w.summary {
		w.buf = appendSummary(w.buf[:0], data, w.now(), w.color)
	} else {
		w.buf = appendJSONLine(w.buf[:0], data)
	}
	_, err := w.out.Write(w.buf)
	return err
}

// appendJSONLine appends data, the server's one line of JSON, and a
// newline. Data is kept byte for byte; only a server that split it over
// several data lines (which eventsproxy never does) gets it compacted back
// onto one, or its line breaks replaced by spaces if it is not JSON.
func appendJSONLine(dst, data []byte) []byte {
	if bytes.IndexByte(data, '\n') >= 0 {
		var b bytes.Buffer
		if json.Compact(&b, data) == nil {
			data = b.Bytes()
		} else {
			data = bytes.ReplaceAll(data, []byte("\n"), []byte(" "))
		}
	}
	dst = append(dst, data...)
	return append(dst, '\n')
}

// messageData is the data of a `message` event.
type messageData struct {
	Exchange    string          `json:"exchange"`
	RoutingKey  string          `json:"routingKey"`
	Redelivered bool            `json:"redelivered"`
	Routes      []string        `json:"routes"`
	Payload     json.RawMessage `json:"payload"`
	// With --properties (properties=1).
	Properties *struct {
		ContentType string `json:"contentType"`
	} `json:"properties"`
	Headers map[string]json.RawMessage `json:"headers"`
}

// appendSummary appends a one-line summary of a `message` event's data
// for a person at a terminal:
//
//	15:04:05.000  queue/task-completed  primary.abc.0.x  2 routes  {"status":{"taskId":…
//
// Every part that comes from the message is stripped of control
// characters, so that no message can move the cursor or recolour the
// terminal.
func appendSummary(dst, data []byte, at time.Time, color bool) []byte {
	paint := func(dst []byte, sgr, text string) []byte {
		if !color {
			return append(dst, text...)
		}
		dst = append(dst, sgr...)
		dst = append(dst, text...)
		return append(dst, sgrReset...)
	}
	dst = paint(dst, sgrDim, at.Format("15:04:05.000"))
	dst = append(dst, "  "...)
	var m messageData
	if err := json.Unmarshal(data, &m); err != nil {
		dst = paint(dst, sgrYellow, "(not a message object)")
		dst = append(dst, "  "...)
		dst = append(dst, clean(string(data), maxPreview)...)
		return append(dst, '\n')
	}
	dst = paint(dst, sgrCyan, clean(shortExchange(m.Exchange), maxExchange))
	dst = append(dst, "  "...)
	dst = paint(dst, sgrGreen, clean(m.RoutingKey, maxRoutingKey))
	if n := len(m.Routes); n > 0 {
		dst = append(dst, "  "...)
		dst = paint(dst, sgrMagenta, strconv.Itoa(n)+" "+plural(n, "route", "routes"))
	}
	if m.Redelivered {
		dst = append(dst, "  "...)
		dst = paint(dst, sgrYellow, "redelivered")
	}
	if m.Properties != nil {
		var parts []string
		if m.Properties.ContentType != "" {
			parts = append(parts, clean(m.Properties.ContentType, maxExchange))
		}
		if n := len(m.Headers); n > 0 {
			parts = append(parts, strconv.Itoa(n)+" "+plural(n, "header", "headers"))
		}
		if len(parts) > 0 {
			dst = append(dst, "  "...)
			dst = paint(dst, sgrDim, strings.Join(parts, ", "))
		}
	}
	dst = append(dst, "  "...)
	dst = append(dst, preview(m.Payload)...)
	return append(dst, '\n')
}

// preview returns the start of a payload as compact JSON.
func preview(payload json.RawMessage) string {
	var b bytes.Buffer
	if json.Compact(&b, payload) != nil {
		return clean(string(payload), maxPreview)
	}
	return clean(b.String(), maxPreview)
}

// shortExchange returns the name of a Taskcluster exchange without what
// every such name repeats, for the summary:
// exchange/taskcluster-queue/v1/task-completed becomes
// queue/task-completed. Other names are returned as they are.
func shortExchange(name string) string {
	rest, ok := strings.CutPrefix(name, "exchange/")
	if !ok {
		return name
	}
	parts := strings.Split(rest, "/")
	if len(parts) >= 3 && isVersion(parts[1]) {
		parts = append(parts[:1], parts[2:]...)
	}
	if service := strings.TrimPrefix(parts[0], "taskcluster-"); service != "" {
		parts[0] = service
	}
	if short := strings.Join(parts, "/"); short != "" {
		return short
	}
	return name
}

// isVersion reports whether s is a version segment such as "v1".
func isVersion(s string) bool {
	if len(s) < 2 || s[0] != 'v' {
		return false
	}
	for _, c := range s[1:] {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// clean returns s with control characters and invalid UTF-8 replaced by
// U+FFFD, cut to at most max characters with an ellipsis, for showing on
// a terminal.
func clean(s string, max int) string {
	var b strings.Builder
	n := 0
	for _, r := range s {
		if n == max {
			b.WriteRune('…')
			break
		}
		n++
		if r == utf8.RuneError || unicode.IsControl(r) || r == '\u2028' || r == '\u2029' {
			r = utf8.RuneError
		}
		b.WriteRune(r)
	}
	return b.String()
}
