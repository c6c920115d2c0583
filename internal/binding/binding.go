package binding

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"slices"
	"strings"
	"unicode/utf8"

	"eventsproxy/internal/topic"
)

// Binding is one (exchange, routing-key pattern) pair a client asked for.
type Binding struct {
	// Exchange is the name of a topic exchange: not empty, at most 255
	// bytes of UTF-8 without control characters.
	Exchange string `json:"exchange"`
	// RoutingKeyPattern is a binding pattern that topic.Validate accepts.
	RoutingKeyPattern string `json:"routingKeyPattern"`
}

// DefaultMaxBindings is how many bindings one request may hold when
// Limits.MaxBindings is zero.
const DefaultMaxBindings = 64

// DefaultMaxPatternHashes is how many # words a pattern's normal form may
// hold when Limits.MaxPatternHashes is zero: enough for "#.foo.#", the most
// that Taskcluster's own tools use. RabbitMQ's matching backtracks on each #,
// so its cost per message grows with the key's length raised to their number.
const DefaultMaxPatternHashes = 2

// Limits bound what a request may ask for.
type Limits struct {
	// MaxBindings is the most bindings one request may hold, counting
	// duplicates. Zero (or less) means DefaultMaxBindings.
	MaxBindings int
	// MaxPatternHashes is the most # words a pattern may hold once runs of
	// wildcards are collapsed (topic.Hashes): "#.*.#" counts one, "#.a.#"
	// two. Zero (or less) means DefaultMaxPatternHashes.
	MaxPatternHashes int
	// AllowedExchanges lists exchange-name prefixes: when it is not empty, an
	// exchange must start with one of them. Empty allows every exchange but
	// RabbitMQ's internal ones (InternalPrefix), which only a prefix that
	// itself starts with InternalPrefix allows.
	AllowedExchanges []string
}

// InternalPrefix starts the names of RabbitMQ's internal exchanges:
// amq.rabbitmq.trace (the firehose: with tracing on, a copy of every message
// published in the vhost), amq.rabbitmq.event and amq.rabbitmq.log (the
// broker's own events and log lines). They are never offered unless named.
// The other amq.* exchanges (amq.topic, amq.direct, ...) carry only what
// clients publish to them, like any other exchange.
const InternalPrefix = "amq.rabbitmq."

// Texts kept word for word from the original service, because clients match
// them.
const (
	textOneKey   = "The json query should have only one key i.e. `bindings`."
	textNotArray = "Bindings must be an array of {exchange, routingKeyPattern}"
	textFields   = "Binding must include `exchange` and `routingKeyPattern` fields"
)

// Error is a bad-input error. Its text is client-safe: it holds nothing but
// what the client sent and our own words, on one line, and is meant to be
// sent to the client verbatim.
type Error struct {
	// Index is the position in the request's array of the binding at fault,
	// or -1 when the problem is with the request as a whole.
	Index int
	msg   string
}

// Error returns the client-safe text.
func (e *Error) Error() string {
	return e.msg
}

// requestError returns an *Error about the request as a whole.
func requestError(msg string) *Error {
	return &Error{Index: -1, msg: msg}
}

// bindingError returns an *Error about the binding at index i.
func bindingError(i int, format string, args ...any) *Error {
	return &Error{Index: i, msg: fmt.Sprintf("bindings[%d]: ", i) + fmt.Sprintf(format, args...)}
}

// FromQuery reads the `bindings` query parameter from q and parses it as Parse
// does. A missing parameter, or one given more than once, is an *Error.
// FromQuery may be called concurrently.
func FromQuery(q url.Values, lim Limits) ([]Binding, error) {
	switch v := q["bindings"]; len(v) {
	case 0:
		return nil, requestError("The query parameter `bindings` is missing; it must be JSON like " + exampleRequest + ".")
	case 1:
		return Parse(v[0], lim)
	default:
		return nil, requestError(fmt.Sprintf("The query parameter `bindings` must be given once, not %d times.", len(v)))
	}
}

// exampleRequest shows a client what a request looks like.
const exampleRequest = `{"bindings": [{"exchange": "...", "routingKeyPattern": "#"}]}`

// Parse parses the JSON text of the bindings parameter (already URL-decoded).
// It returns the bindings with exact duplicates removed (the first occurrence
// kept, order kept), or an *Error about the first problem found: the shape of
// the whole request is checked first, then each binding in order. Parse may
// be called concurrently.
func Parse(s string, lim Limits) ([]Binding, error) {
	if bs, ok := scanPlain(s, lim); ok {
		return checkAll(bs, lim)
	}
	return parseJSON(s, lim)
}

// parseJSON is Parse through encoding/json, for any text.
func parseJSON(s string, lim Limits) ([]Binding, error) {
	raw, err := parseRequest(s, lim)
	if err != nil {
		return nil, err
	}
	out := make([]Binding, 0, len(raw))
	seen := make(map[Binding]bool, len(raw))
	for i, fields := range raw {
		b, err := parseBinding(i, fields, lim)
		if err != nil {
			return nil, err
		}
		if !seen[b] {
			seen[b] = true
			out = append(out, b)
		}
	}
	return out, nil
}

// parseRequest checks the shape of the whole request, including that each
// binding is an object with both fields as the original service did, and
// returns each binding's fields.
func parseRequest(s string, lim Limits) ([]map[string]json.RawMessage, error) {
	if strings.Trim(s, " \t\r\n") == "" {
		return nil, requestError("The query parameter `bindings` is empty; it must be JSON like " + exampleRequest + ".")
	}
	top, err := decode(s)
	if err != nil {
		return nil, err
	}
	if jsonType(top) != "an object" {
		return nil, requestError("The query parameter `bindings` must be a JSON object like " + exampleRequest + ", not " + jsonType(top) + ".")
	}
	var req map[string]json.RawMessage
	if err := json.Unmarshal(top, &req); err != nil {
		return nil, requestError("The query parameter `bindings` is not valid JSON.")
	}
	list, ok := req["bindings"]
	if !ok || len(req) != 1 {
		return nil, requestError(textOneKey)
	}
	if jsonType(list) != "an array" {
		return nil, requestError(textNotArray)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(list, &elems); err != nil {
		return nil, requestError(textNotArray)
	}
	maxBindings := lim.MaxBindings
	if maxBindings <= 0 {
		maxBindings = DefaultMaxBindings
	}
	switch {
	case len(elems) == 0:
		return nil, requestError("The `bindings` array is empty; give at least one {exchange, routingKeyPattern}.")
	case len(elems) > maxBindings:
		return nil, requestError(fmt.Sprintf("There are %d bindings, more than the %d allowed.", len(elems), maxBindings))
	}
	fields := make([]map[string]json.RawMessage, len(elems))
	for i, e := range elems {
		if t := jsonType(e); t != "an object" {
			return nil, bindingError(i, "a binding must be an object like {\"exchange\": \"...\", \"routingKeyPattern\": \"#\"}, not %s.", t)
		}
		if err := json.Unmarshal(e, &fields[i]); err != nil {
			return nil, bindingError(i, "a binding must be an object like {\"exchange\": \"...\", \"routingKeyPattern\": \"#\"}.")
		}
		_, hasExchange := fields[i]["exchange"]
		_, hasPattern := fields[i]["routingKeyPattern"]
		if !hasExchange || !hasPattern {
			return nil, &Error{Index: i, msg: textFields}
		}
	}
	return fields, nil
}

// checkAll checks bs, which scanPlain read, binding by binding as
// parseJSON does, and drops exact duplicates.
func checkAll(bs []Binding, lim Limits) ([]Binding, error) {
	out := bs[:0]
	for i, b := range bs {
		if err := check(i, b, lim); err != nil {
			return nil, err
		}
		if !slices.Contains(out, b) {
			out = append(out, b)
		}
	}
	return out, nil
}

// scanPlain reads the request's common form without encoding/json, which
// costs more than the rest of a stream's admission: an object whose one
// key is "bindings", an array of 1 to the limit of objects whose two keys
// are "exchange" and "routingKeyPattern" (in either order), every string
// printable ASCII without escapes, JSON white space anywhere between.
// Such a text holds the same bindings for encoding/json, and passes every
// check of parseRequest. Anything else, valid or not, is not ok, and is
// left to parseJSON.
func scanPlain(s string, lim Limits) (bs []Binding, ok bool) {
	maxBindings := lim.MaxBindings
	if maxBindings <= 0 {
		maxBindings = DefaultMaxBindings
	}
	p := plainScanner{s: s}
	if !p.byte('{') || p.str() != "bindings" || !p.byte(':') || !p.byte('[') {
		return nil, false
	}
	for {
		if len(bs) == maxBindings || !p.byte('{') {
			return nil, false
		}
		var b Binding
		var haveExchange, havePattern bool
		for k := range 2 {
			if k == 1 && !p.byte(',') {
				return nil, false
			}
			key, ok := p.strOK()
			if !ok || !p.byte(':') {
				return nil, false
			}
			v, ok := p.strOK()
			switch {
			case !ok:
				return nil, false
			case key == "exchange" && !haveExchange:
				b.Exchange, haveExchange = v, true
			case key == "routingKeyPattern" && !havePattern:
				b.RoutingKeyPattern, havePattern = v, true
			default:
				return nil, false
			}
		}
		if !p.byte('}') {
			return nil, false
		}
		if bs == nil {
			bs = make([]Binding, 0, 1)
		}
		bs = append(bs, b)
		if p.byte(']') {
			break
		}
		if !p.byte(',') {
			return nil, false
		}
	}
	if !p.byte('}') {
		return nil, false
	}
	p.space()
	return bs, p.i == len(s)
}

// plainScanner reads the tokens of scanPlain's form from s[i:].
type plainScanner struct {
	s string
	i int
}

func (p *plainScanner) space() {
	for p.i < len(p.s) {
		switch p.s[p.i] {
		case ' ', '\t', '\r', '\n':
			p.i++
		default:
			return
		}
	}
}

// byte reads c, after white space.
func (p *plainScanner) byte(c byte) bool {
	p.space()
	if p.i < len(p.s) && p.s[p.i] == c {
		p.i++
		return true
	}
	return false
}

// strOK reads a string of printable ASCII without escapes, after white
// space.
func (p *plainScanner) strOK() (string, bool) {
	if !p.byte('"') {
		return "", false
	}
	start := p.i
	for ; p.i < len(p.s); p.i++ {
		switch c := p.s[p.i]; {
		case c == '"':
			p.i++
			return p.s[start : p.i-1], true
		case c < 0x20 || c >= 0x7f || c == '\\':
			return "", false
		}
	}
	return "", false
}

// str is strOK's string, "" when there is none.
func (p *plainScanner) str() string {
	v, _ := p.strOK()
	return v
}

// parseBinding checks the fields of the binding at index i.
func parseBinding(i int, fields map[string]json.RawMessage, lim Limits) (Binding, error) {
	var b Binding
	for _, f := range []struct {
		name string
		dst  *string
	}{
		{"exchange", &b.Exchange},
		{"routingKeyPattern", &b.RoutingKeyPattern},
	} {
		raw := fields[f.name]
		if t := jsonType(raw); t != "a string" {
			return Binding{}, bindingError(i, "%s must be a string, not %s.", f.name, t)
		}
		// encoding/json quietly turns invalid UTF-8 into U+FFFD, which
		// would bind to a name the client never sent; what it decodes is
		// valid UTF-8.
		if !utf8.Valid(raw) {
			return Binding{}, bindingError(i, "%s is not valid UTF-8.", f.name)
		}
		if err := json.Unmarshal(raw, f.dst); err != nil {
			return Binding{}, bindingError(i, "%s must be a string.", f.name)
		}
		// So does a \u escape of half a UTF-16 surrogate pair.
		if strings.Count(*f.dst, "\uFFFD") > replacementsSent(raw) {
			return Binding{}, bindingError(i, "%s holds a \\u escape of a lone UTF-16 surrogate.", f.name)
		}
	}
	if err := check(i, b, lim); err != nil {
		return Binding{}, err
	}
	return b, nil
}

// check checks the exchange and the pattern of the binding at index i.
func check(i int, b Binding, lim Limits) error {
	switch ex := b.Exchange; {
	case ex == "":
		return bindingError(i, "exchange must not be empty.")
	case len(ex) > topic.MaxLength:
		return bindingError(i, "exchange %s is %d bytes long, more than the %d allowed.", topic.Quote(ex), len(ex), topic.MaxLength)
	case hasControl(ex):
		return bindingError(i, "exchange %s contains a control character.", topic.Quote(ex))
	case strings.HasPrefix(ex, InternalPrefix) && !internalAllowed(ex, lim.AllowedExchanges):
		return bindingError(i, "exchange %s is internal to RabbitMQ and not allowed.", topic.Quote(ex))
	case !allowed(ex, lim.AllowedExchanges):
		return bindingError(i, "exchange %s is not allowed; it must start with %s.", topic.Quote(ex), prefixList(lim.AllowedExchanges))
	}
	if err := topic.Validate(b.RoutingKeyPattern); err != nil {
		// topic's texts are client-safe too.
		return bindingError(i, "%s.", err)
	}
	maxHashes := lim.MaxPatternHashes
	if maxHashes <= 0 {
		maxHashes = DefaultMaxPatternHashes
	}
	if n := topic.Hashes(b.RoutingKeyPattern); n > maxHashes {
		return bindingError(i, "routingKeyPattern %s has %d # words apart from each other, more than the %d allowed (wildcards next to each other, as in \"#.*.#\", count as one).",
			topic.Quote(b.RoutingKeyPattern), n, maxHashes)
	}
	return nil
}

// replacementsSent counts the U+FFFD characters that the JSON string raw
// holds as such: the character itself, or its \u escape.
func replacementsSent(raw json.RawMessage) int {
	n := strings.Count(string(raw), "\uFFFD")
	for i := 0; i+6 <= len(raw); i++ {
		if raw[i] != '\\' {
			continue
		}
		if raw[i+1] == 'u' && strings.EqualFold(string(raw[i+2:i+6]), "fffd") {
			n++
		}
		i++ // an escaped character, perhaps a backslash, is not an escape
	}
	return n
}

// decode returns the one JSON value s holds, or an *Error saying where s
// stops being JSON. The Go error text stays out of it.
func decode(s string) (json.RawMessage, error) {
	const prefix = "The query parameter `bindings` is not valid JSON"
	dec := json.NewDecoder(strings.NewReader(s))
	var v json.RawMessage
	if err := dec.Decode(&v); err != nil {
		if se, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, requestError(fmt.Sprintf("%s: syntax error at byte %d.", prefix, se.Offset))
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			if endsInString(s) {
				return nil, requestError(prefix + textUnencodedHash)
			}
			return nil, requestError(prefix + ": it ends too early.")
		}
		return nil, requestError(prefix + ".")
	}
	end := int(dec.InputOffset())
	if rest := strings.TrimLeft(s[end:], " \t\r\n"); rest != "" {
		return nil, requestError(fmt.Sprintf("%s: there is more after the value that ends at byte %d.", prefix, end))
	}
	return v, nil
}

// textUnencodedHash follows "not valid JSON" when the text ends inside a
// string. A client that puts the JSON into a URL without encoding it sends
// the first '#' (as in "a.#") as the start of the URL's fragment, which
// never reaches the server, so the JSON is cut right there.
const textUnencodedHash = ": it ends inside a string, as it does when a `#` in it was not URL-encoded: `#` must be sent as `%23`; encode the parameter."

// endsInString reports whether s, a prefix of a JSON text, ends inside a
// string.
func endsInString(s string) bool {
	in := false
	for i := 0; i < len(s); i++ {
		switch c := s[i]; {
		case c == '"':
			in = !in
		case c == '\\' && in:
			i++
		}
	}
	return in
}

// jsonType names the kind of JSON value raw holds, for an error text.
func jsonType(raw json.RawMessage) string {
	raw = []byte(strings.TrimLeft(string(raw), " \t\r\n"))
	if len(raw) == 0 {
		return "nothing"
	}
	switch raw[0] {
	case '{':
		return "an object"
	case '[':
		return "an array"
	case '"':
		return "a string"
	case 'n':
		return "null"
	case 't', 'f':
		return "a boolean"
	default:
		return "a number"
	}
}

// hasControl reports whether s holds an ASCII control character.
func hasControl(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c == 0x7f {
			return true
		}
	}
	return false
}

// allowed reports whether exchange starts with one of prefixes, or prefixes
// is empty.
func allowed(exchange string, prefixes []string) bool {
	if len(prefixes) == 0 {
		return true
	}
	for _, p := range prefixes {
		if strings.HasPrefix(exchange, p) {
			return true
		}
	}
	return false
}

// internalAllowed reports whether one of prefixes allows exchange, an
// internal one, by naming it: a prefix that starts with InternalPrefix. A
// wider prefix, such as "amq.", does not.
func internalAllowed(exchange string, prefixes []string) bool {
	for _, p := range prefixes {
		if strings.HasPrefix(p, InternalPrefix) && strings.HasPrefix(exchange, p) {
			return true
		}
	}
	return false
}

// prefixList lists prefixes for an error text: `"a"`, `"a" or "b"`, or
// `one of "a", "b" or "c"`.
func prefixList(prefixes []string) string {
	q := make([]string, len(prefixes))
	for i, p := range prefixes {
		q[i] = topic.Quote(p)
	}
	if len(q) == 1 {
		return q[0]
	}
	return "one of " + strings.Join(q[:len(q)-1], ", ") + " or " + q[len(q)-1]
}
