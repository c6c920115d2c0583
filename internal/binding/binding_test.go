package binding

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"reflect"
	"strings"
	"testing"
)

const (
	completed = "exchange/taskcluster-queue/v1/task-completed"
	failed    = "exchange/taskcluster-queue/v1/task-failed"
)

// request returns the JSON of a request for bindings, each an exchange and a
// pattern.
func request(tb testing.TB, pairs ...string) string {
	tb.Helper()
	if len(pairs)%2 != 0 {
		tb.Fatalf("request: odd number of arguments %q", pairs)
	}
	elems := make([]string, 0, len(pairs)/2)
	for i := 0; i < len(pairs); i += 2 {
		elem, err := json.Marshal(Binding{Exchange: pairs[i], RoutingKeyPattern: pairs[i+1]})
		if err != nil {
			tb.Fatal(err)
		}
		elems = append(elems, string(elem))
	}
	return `{"bindings": [` + strings.Join(elems, ", ") + `]}`
}

// many returns a request with n different bindings.
func many(tb testing.TB, n int) string {
	tb.Helper()
	pairs := make([]string, 0, 2*n)
	for i := range n {
		pairs = append(pairs, completed, fmt.Sprintf("primary.%d.#", i))
	}
	return request(tb, pairs...)
}

func TestParse(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
		lim  Limits
		want []Binding
	}{
		{
			name: "one",
			in:   request(t, completed, "primary.*.#"),
			want: []Binding{{completed, "primary.*.#"}},
		},
		{
			name: "order kept",
			in:   request(t, failed, "#", completed, "primary.#"),
			want: []Binding{{failed, "#"}, {completed, "primary.#"}},
		},
		{
			name: "exact duplicates removed",
			in:   request(t, completed, "#", failed, "#", completed, "#", completed, "a.#", failed, "#"),
			want: []Binding{{completed, "#"}, {failed, "#"}, {completed, "a.#"}},
		},
		{
			name: "extra element keys ignored",
			in:   `{"bindings": [{"exchange": "` + completed + `", "routingKeyPattern": "#", "queue": "x", "Exchange": 3}]}`,
			want: []Binding{{completed, "#"}},
		},
		{
			name: "field order does not matter",
			in:   `{"bindings": [{"routingKeyPattern": "#", "exchange": "` + completed + `"}]}`,
			want: []Binding{{completed, "#"}},
		},
		{
			name: "duplicate key last wins as in JavaScript",
			in:   `{"bindings": [{"exchange": 1, "exchange": "` + completed + `", "routingKeyPattern": "#"}]}`,
			want: []Binding{{completed, "#"}},
		},
		{
			name: "empty pattern",
			in:   request(t, completed, ""),
			want: []Binding{{completed, ""}},
		},
		{
			name: "whitespace and escapes",
			in:   " {\n\"bindings\" : [ {\"exchange\":\"exchange\\/taskcluster-queue\\/v1\\/task-completed\", \"routingKeyPattern\":\"\\u0023\"} ] } ",
			want: []Binding{{completed, "#"}},
		},
		{
			name: "unicode",
			in:   request(t, "exchange/ünïcode", "route.ö.#"),
			want: []Binding{{"exchange/ünïcode", "route.ö.#"}},
		},
		{
			name: "default limit",
			in:   many(t, DefaultMaxBindings),
			want: parsed(DefaultMaxBindings),
		},
		{
			name: "own limit",
			in:   many(t, 3),
			lim:  Limits{MaxBindings: 3},
			want: parsed(3),
		},
		{
			name: "duplicates count against the limit only once each after dedup",
			in:   request(t, completed, "#", completed, "#"),
			lim:  Limits{MaxBindings: 2},
			want: []Binding{{completed, "#"}},
		},
		{
			name: "allowed prefix",
			in:   request(t, completed, "#", "exchange/other/x", "#"),
			lim:  Limits{AllowedExchanges: []string{"exchange/nope/", "exchange/taskcluster-", "exchange/other/"}},
			want: []Binding{{completed, "#"}, {"exchange/other/x", "#"}},
		},
		{
			name: "two # words by default, and runs count once",
			in:   request(t, completed, "#.foo.#", completed, strings.Repeat("#.*.", 63)+"b"),
			want: []Binding{{completed, "#.foo.#"}, {completed, strings.Repeat("#.*.", 63) + "b"}},
		},
		{
			name: "own # limit",
			in:   request(t, completed, "#.a.#.b.#"),
			lim:  Limits{MaxPatternHashes: 3},
			want: []Binding{{completed, "#.a.#.b.#"}},
		},
		{
			name: "internal exchange when named",
			in:   request(t, "amq.rabbitmq.trace", "#", "amq.topic", "#"),
			lim:  Limits{AllowedExchanges: []string{"amq.rabbitmq.trace", "amq.topic"}},
			want: []Binding{{"amq.rabbitmq.trace", "#"}, {"amq.topic", "#"}},
		},
		{
			name: "other amq exchanges by default",
			in:   request(t, "amq.topic", "#", "amq.rabbitmqx", "#"),
			want: []Binding{{"amq.topic", "#"}, {"amq.rabbitmqx", "#"}},
		},
		{
			name: "surrogate pair and U+FFFD sent as such",
			in:   `{"bindings": [{"exchange": "e\ud83d\ude00\uFFFD�", "routingKeyPattern": "\\ufffd"}]}`,
			want: []Binding{{"e😀��", `\ufffd`}},
		},
		{
			name: "max length exchange",
			in:   request(t, strings.Repeat("e", 255), "#"),
			want: []Binding{{strings.Repeat("e", 255), "#"}},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in, tc.lim)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			if !reflect.DeepEqual(got, tc.want) {
				t.Errorf("Parse = %q, want %q", got, tc.want)
			}
		})
	}
}

// parsed returns what Parse returns for many(n).
func parsed(n int) []Binding {
	out := make([]Binding, n)
	for i := range out {
		out[i] = Binding{completed, fmt.Sprintf("primary.%d.#", i)}
	}
	return out
}

func TestParseErrors(t *testing.T) {
	t.Parallel()
	const (
		oneKey   = "The json query should have only one key i.e. `bindings`."
		notArray = "Bindings must be an array of {exchange, routingKeyPattern}"
		fields   = "Binding must include `exchange` and `routingKeyPattern` fields"
	)
	long := strings.Repeat("x", 256)
	tests := []struct {
		name      string
		in        string
		lim       Limits
		wantExact string // the whole text, for the original service's texts
		want      string // else a substring
		wantIndex int
	}{
		// Kept word for word from the original.
		{name: "extra top-level key", in: `{"bindings": [], "other": 1}`, wantExact: oneKey, wantIndex: -1},
		{name: "no key", in: `{}`, wantExact: oneKey, wantIndex: -1},
		{name: "other key", in: `{"binding": []}`, wantExact: oneKey, wantIndex: -1},
		{name: "differently cased key", in: `{"Bindings": [{"exchange": "e", "routingKeyPattern": "#"}]}`, wantExact: oneKey, wantIndex: -1},
		{name: "two casings of the key", in: `{"bindings": [], "Bindings": []}`, wantExact: oneKey, wantIndex: -1},
		{name: "bindings null", in: `{"bindings": null}`, wantExact: notArray, wantIndex: -1},
		{name: "bindings object", in: `{"bindings": {"exchange": "e", "routingKeyPattern": "#"}}`, wantExact: notArray, wantIndex: -1},
		{name: "bindings string", in: `{"bindings": "[]"}`, wantExact: notArray, wantIndex: -1},
		{name: "bindings number", in: `{"bindings": 1}`, wantExact: notArray, wantIndex: -1},
		{name: "no exchange", in: `{"bindings": [{"routingKeyPattern": "#"}]}`, wantExact: fields, wantIndex: 0},
		{name: "no pattern", in: `{"bindings": [{"exchange": "e"}]}`, wantExact: fields, wantIndex: 0},
		{name: "empty element", in: `{"bindings": [{"exchange": "e", "routingKeyPattern": "#"}, {}]}`, wantExact: fields, wantIndex: 1},
		{name: "differently cased fields", in: `{"bindings": [{"Exchange": "e", "RoutingKeyPattern": "#"}]}`, wantExact: fields, wantIndex: 0},
		{name: "missing field wins over a later value problem", in: `{"bindings": [{"exchange": 1, "routingKeyPattern": "#"}, {"exchange": "e"}]}`, wantExact: fields, wantIndex: 1},

		// Ours.
		{name: "empty", in: ``, want: "The query parameter `bindings` is empty", wantIndex: -1},
		{name: "blank", in: " \n", want: "The query parameter `bindings` is empty", wantIndex: -1},
		{name: "not json", in: `bindings`, want: "is not valid JSON: syntax error at byte 1.", wantIndex: -1},
		{name: "truncated json", in: `{"bindings": [`, want: "is not valid JSON: it ends too early.", wantIndex: -1},
		// A # sent unencoded starts the URL's fragment, so the server gets
		// the JSON cut just before it: inside a string.
		{name: "hash unencoded after a dot", in: `{"bindings":[{"exchange":"amq.topic","routingKeyPattern":"a.`, wantExact: "The query parameter `bindings` is not valid JSON: it ends inside a string, as it does when a `#` in it was not URL-encoded: `#` must be sent as `%23`; encode the parameter.", wantIndex: -1},
		{name: "hash unencoded alone", in: `{"bindings":[{"exchange":"amq.topic","routingKeyPattern":"`, want: "`#` must be sent as `%23`; encode the parameter.", wantIndex: -1},
		{name: "hash unencoded after an escape", in: `{"bindings":[{"exchange":"a\"b","routingKeyPattern":"x\\y.`, want: "`#` must be sent as `%23`", wantIndex: -1},
		{name: "hash unencoded in an exchange", in: `{"bindings":[{"exchange":"weird`, want: "`#` must be sent as `%23`", wantIndex: -1},
		{name: "truncated after a string", in: `{"bindings":[{"exchange":"amq.topic"`, wantExact: "The query parameter `bindings` is not valid JSON: it ends too early.", wantIndex: -1},
		{name: "truncated after an escaped quote", in: `{"bindings":[{"exchange":"a\\"`, wantExact: "The query parameter `bindings` is not valid JSON: it ends too early.", wantIndex: -1},
		{name: "trailing data", in: `{"bindings": []} x`, want: "is not valid JSON: there is more after the value that ends at byte 16.", wantIndex: -1},
		{name: "two values", in: `{"bindings": []}{}`, want: "is not valid JSON: there is more after the value", wantIndex: -1},
		{name: "bad character inside", in: `{"bindings" []}`, want: "is not valid JSON: syntax error at byte 13.", wantIndex: -1},
		{name: "top-level array", in: `[{"exchange": "e", "routingKeyPattern": "#"}]`, want: "must be a JSON object like {\"bindings\": [{\"exchange\": \"...\", \"routingKeyPattern\": \"#\"}]}, not an array.", wantIndex: -1},
		{name: "top-level string", in: `"bindings"`, want: "must be a JSON object like", wantIndex: -1},
		{name: "top-level null", in: `null`, want: "not null.", wantIndex: -1},
		{name: "empty array", in: `{"bindings": []}`, want: "The `bindings` array is empty", wantIndex: -1},
		{name: "too many default", in: many(t, DefaultMaxBindings+1), want: "There are 65 bindings, more than the 64 allowed.", wantIndex: -1},
		{name: "too many own limit", in: many(t, 3), lim: Limits{MaxBindings: 2}, want: "There are 3 bindings, more than the 2 allowed.", wantIndex: -1},
		{name: "element null", in: `{"bindings": [null]}`, want: "bindings[0]: a binding must be an object", wantIndex: 0},
		{name: "element string", in: `{"bindings": [{"exchange": "e", "routingKeyPattern": "#"}, "e"]}`, want: "bindings[1]: a binding must be an object like {\"exchange\": \"...\", \"routingKeyPattern\": \"#\"}, not a string.", wantIndex: 1},
		{name: "element array", in: `{"bindings": [["e", "#"]]}`, want: "not an array.", wantIndex: 0},
		{name: "exchange null", in: `{"bindings": [{"exchange": null, "routingKeyPattern": "#"}]}`, want: "bindings[0]: exchange must be a string, not null.", wantIndex: 0},
		{name: "exchange number", in: `{"bindings": [{"exchange": 12, "routingKeyPattern": "#"}]}`, want: "exchange must be a string, not a number.", wantIndex: 0},
		{name: "exchange boolean", in: `{"bindings": [{"exchange": true, "routingKeyPattern": "#"}]}`, want: "exchange must be a string, not a boolean.", wantIndex: 0},
		{name: "exchange object", in: `{"bindings": [{"exchange": {}, "routingKeyPattern": "#"}]}`, want: "exchange must be a string, not an object.", wantIndex: 0},
		{name: "pattern null", in: `{"bindings": [{"exchange": "e", "routingKeyPattern": null}]}`, want: "bindings[0]: routingKeyPattern must be a string, not null.", wantIndex: 0},
		{name: "pattern array", in: `{"bindings": [{"exchange": "e", "routingKeyPattern": ["#"]}]}`, want: "routingKeyPattern must be a string, not an array.", wantIndex: 0},
		{name: "empty exchange", in: request(t, completed, "#", "", "#"), want: "bindings[1]: exchange must not be empty.", wantIndex: 1},
		{name: "long exchange", in: request(t, long, "#"), want: `bindings[0]: exchange "` + long[:64] + `"... is 256 bytes long, more than the 255 allowed.`, wantIndex: 0},
		{name: "exchange invalid utf-8", in: "{\"bindings\": [{\"exchange\": \"e\xff\", \"routingKeyPattern\": \"#\"}]}", want: "bindings[0]: exchange is not valid UTF-8.", wantIndex: 0},
		{name: "pattern invalid utf-8", in: "{\"bindings\": [{\"exchange\": \"e\", \"routingKeyPattern\": \"a.\xc3\"}]}", want: "bindings[0]: routingKeyPattern is not valid UTF-8.", wantIndex: 0},
		{name: "exchange newline", in: request(t, "e\nf", "#"), want: `bindings[0]: exchange "e\nf" contains a control character.`, wantIndex: 0},
		{name: "exchange nul", in: request(t, "e\x00", "#"), want: `exchange "e\x00" contains a control character.`, wantIndex: 0},
		{name: "exchange del", in: request(t, "e\x7f", "#"), want: `contains a control character.`, wantIndex: 0},
		{name: "pattern wildcard in word", in: request(t, completed, "#", completed, "primary.a*"), want: `bindings[1]: routingKeyPattern "primary.a*" is not a valid topic pattern: * and # must stand alone as a whole word.`, wantIndex: 1},
		{name: "pattern too long", in: request(t, completed, long), want: "routingKeyPattern \"" + long[:64] + "\"... is not a valid topic pattern: it is 256 bytes long, more than the 255 allowed.", wantIndex: 0},
		{name: "pattern control", in: request(t, completed, "a.\t"), want: `routingKeyPattern "a.\t" is not a valid topic pattern: it contains a control character.`, wantIndex: 0},
		{name: "exchange not allowed", in: request(t, completed, "#", "amq.topic", "#"), lim: Limits{AllowedExchanges: []string{"exchange/"}}, want: `bindings[1]: exchange "amq.topic" is not allowed; it must start with "exchange/".`, wantIndex: 1},
		{name: "exchange not allowed among many", in: request(t, "amq.topic", "#"), lim: Limits{AllowedExchanges: []string{"a/", "b/", "c/"}}, want: `it must start with one of "a/", "b/" or "c/".`, wantIndex: 0},
		{name: "too many # words", in: request(t, completed, "#", completed, "#.a.#.b.#"), want: `bindings[1]: routingKeyPattern "#.a.#.b.#" has 3 # words apart from each other, more than the 2 allowed (wildcards next to each other, as in "#.*.#", count as one).`, wantIndex: 1},
		{name: "too many # words own limit", in: request(t, completed, "#.a.#"), lim: Limits{MaxPatternHashes: 1}, want: `more than the 1 allowed`, wantIndex: 0},
		{name: "firehose by default", in: request(t, completed, "#", "amq.rabbitmq.trace", "#"), want: `bindings[1]: exchange "amq.rabbitmq.trace" is internal to RabbitMQ and not allowed.`, wantIndex: 1},
		{name: "internal exchange by default", in: request(t, "amq.rabbitmq.event", "#"), want: `exchange "amq.rabbitmq.event" is internal to RabbitMQ`, wantIndex: 0},
		{name: "internal exchange under a wider prefix", in: request(t, "amq.rabbitmq.trace", "#"), lim: Limits{AllowedExchanges: []string{"amq."}}, want: `is internal to RabbitMQ and not allowed.`, wantIndex: 0},
		{name: "internal exchange not the one named", in: request(t, "amq.rabbitmq.trace", "#"), lim: Limits{AllowedExchanges: []string{"amq.rabbitmq.event"}}, want: `is internal to RabbitMQ and not allowed.`, wantIndex: 0},
		{name: "lone surrogate escape", in: `{"bindings": [{"exchange": "e\ud800", "routingKeyPattern": "#"}]}`, want: `bindings[0]: exchange holds a \u escape of a lone UTF-16 surrogate.`, wantIndex: 0},
		{name: "lone low surrogate in pattern", in: `{"bindings": [{"exchange": "e", "routingKeyPattern": "a.\uDC00"}]}`, want: `routingKeyPattern holds a \u escape`, wantIndex: 0},
		{name: "first problem reported", in: request(t, completed, "a*", "", "#"), want: "bindings[0]: routingKeyPattern", wantIndex: 0},
		{name: "exchange checked before pattern", in: request(t, "", "a*"), want: "bindings[0]: exchange must not be empty.", wantIndex: 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := Parse(tc.in, tc.lim)
			if err == nil {
				t.Fatalf("Parse(%q) = %q, want an error", tc.in, got)
			}
			e := checkError(t, err)
			if tc.wantExact != "" && e.Error() != tc.wantExact {
				t.Errorf("error text %q, want exactly %q", e, tc.wantExact)
			}
			if tc.want != "" && !strings.Contains(e.Error(), tc.want) {
				t.Errorf("error text %q, want it to contain %q", e, tc.want)
			}
			if e.Index != tc.wantIndex {
				t.Errorf("Index = %d, want %d", e.Index, tc.wantIndex)
			}
		})
	}
}

func TestFromQuery(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		query   string
		want    []Binding
		wantErr string
	}{
		{name: "ok", query: "bindings=" + url.QueryEscape(request(t, completed, "primary.*.#")), want: []Binding{{completed, "primary.*.#"}}},
		{name: "other parameters ignored", query: "x=1&bindings=" + url.QueryEscape(request(t, completed, "#")), want: []Binding{{completed, "#"}}},
		{name: "missing", query: "binding=x", wantErr: "The query parameter `bindings` is missing; it must be JSON like"},
		{name: "no query", query: "", wantErr: "is missing"},
		{name: "twice", query: "bindings=a&bindings=b", wantErr: "The query parameter `bindings` must be given once, not 2 times."},
		{name: "empty value", query: "bindings=", wantErr: "The query parameter `bindings` is empty"},
		{name: "bad value", query: "bindings=" + url.QueryEscape(`{"bindings": 3}`), wantErr: "Bindings must be an array of {exchange, routingKeyPattern}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			q, err := url.ParseQuery(tc.query)
			if err != nil {
				t.Fatal(err)
			}
			got, err := FromQuery(q, Limits{})
			if tc.wantErr == "" {
				if err != nil {
					t.Fatalf("FromQuery: %v", err)
				}
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("FromQuery = %q, want %q", got, tc.want)
				}
				return
			}
			if err == nil {
				t.Fatalf("FromQuery = %q, want an error", got)
			}
			if e := checkError(t, err); !strings.Contains(e.Error(), tc.wantErr) {
				t.Errorf("error text %q, want it to contain %q", e, tc.wantErr)
			}
		})
	}
}

// TestFromQueryUnencodedHash pastes the JSON into a URL as is: the '#' of
// "a.#" starts the URL's fragment, and the text says so.
func TestFromQueryUnencodedHash(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(`http://127.0.0.1:8080/api/events/v1/connect/?bindings={"bindings":[{"exchange":"amq.topic","routingKeyPattern":"a.#"}]}`)
	if err != nil {
		t.Fatal(err)
	}
	if u.Fragment == "" {
		t.Fatalf("no fragment in %#v: the test no longer shows what a browser does", u)
	}
	_, err = FromQuery(u.Query(), Limits{})
	if err == nil {
		t.Fatal("FromQuery accepted a cut request")
	}
	if e := checkError(t, err); !strings.Contains(e.Error(), "`#` must be sent as `%23`; encode the parameter.") {
		t.Errorf("error text %q does not say to encode the #", e)
	}
}

// checkError fails tb unless err is an *Error with a text fit for a client,
// and returns it.
func checkError(tb testing.TB, err error) *Error {
	tb.Helper()
	e, ok := errors.AsType[*Error](err)
	if !ok {
		tb.Fatalf("error %v is a %T, want *Error", err, err)
	}
	if msg := e.Error(); msg == "" || strings.ContainsAny(msg, "\r\n") {
		tb.Errorf("error text %q is empty or not a single line", msg)
	}
	return e
}

// BenchmarkParse is a task page's request: seven bindings of its own task.
func BenchmarkParse(b *testing.B) {
	s := `{"bindings":[`
	for i, ex := range []string{"defined", "pending", "running", "artifact-created", "completed", "failed", "exception"} {
		if i > 0 {
			s += ","
		}
		s += `{"exchange":"exchange/taskcluster-queue/v1/task-` + ex + `","routingKeyPattern":"primary.YTpD5kiRQt2iJbUbA8sUvw.#"}`
	}
	s += `]}`
	for _, mode := range []string{"plain", "json"} {
		b.Run(mode, func(b *testing.B) {
			parse := Parse
			if mode == "json" {
				parse = parseJSON
			}
			b.ReportAllocs()
			for b.Loop() {
				if _, err := parse(s, Limits{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// TestScanPlain checks which requests take the path without
// encoding/json: the common form only.
func TestScanPlain(t *testing.T) {
	for s, want := range map[string]bool{
		`{"bindings":[{"exchange":"e","routingKeyPattern":"a.#"}]}`:                                                                          true,
		" {\t\"bindings\" :\n[ {\"routingKeyPattern\": \"#\", \"exchange\": \"e\"} , {\"exchange\":\"e\",\"routingKeyPattern\":\"b\"}]}\r\n": true,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"a.#"}`:                                                                            false,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"a.#"}]} x`:                                                                        false,
		`{"bindings":[{"exchange":"e\u00e9","routingKeyPattern":"#"}]}`:                                                                      false,
		`{"bindings":[{"exchange":"é","routingKeyPattern":"#"}]}`:                                                                            false,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"#","x":1}]}`:                                                                      false,
		`{"bindings":[{"exchange":"e","exchange":"#"}]}`:                                                                                     false,
		`{"bindings":[{"exchange":1,"routingKeyPattern":"#"}]}`:                                                                              false,
		`{"bindings":[]}`: false,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"#"}],"bindings":[]}`: false,
	} {
		if _, ok := scanPlain(s, Limits{}); ok != want {
			t.Errorf("scanPlain(%q) ok = %v, want %v", s, ok, want)
		}
	}
	two := `{"bindings":[{"exchange":"e","routingKeyPattern":"a"},{"exchange":"e","routingKeyPattern":"b"}]}`
	if _, ok := scanPlain(two, Limits{MaxBindings: 1}); ok {
		t.Errorf("scanPlain read 2 bindings with a limit of 1")
	}
}
