package binding

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"eventsproxy/internal/topic"
)

func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``,
		`{}`,
		`[]`,
		`null`,
		`{"bindings": []}`,
		`{"bindings": null}`,
		`{"Bindings": []}`,
		`{"bindings": [{}]}`,
		`{"bindings": [null]}`,
		`{"bindings": [{"exchange": 1, "routingKeyPattern": "#"}]}`,
		`{"bindings": [{"exchange": "e", "routingKeyPattern": "a*"}]}`,
		`{"bindings": [{"exchange": "", "routingKeyPattern": "#"}]}`,
		`{"bindings": [{"exchange": "exchange/x", "routingKeyPattern": "primary.*.#", "extra": [1, {"a": null}]}]}`,
		`{"bindings": [{"exchange": "exchange/x", "routingKeyPattern": "#"}, {"exchange": "exchange/x", "routingKeyPattern": "#"}]}`,
		`{"bindings": [{"exchange": "exchange/x\u0000", "routingKeyPattern": "#"}]}`,
		"{\"bindings\": [{\"exchange\": \"\xff\", \"routingKeyPattern\": \"#\"}]}",
		`{"bindings": [{"exchange": "exchange/\ud800", "routingKeyPattern": "\n"}]}`,
		`{"bindings":[{"exchange":"amq.topic","routingKeyPattern":"a.`,
		`{"bindings": [{"exchange": "amq.topic", "routingKeyPattern": "#"}, {"exchange": "exchange/y", "routingKeyPattern": ""}, {"exchange": "exchange/z", "routingKeyPattern": "*.*"}]}`,
	} {
		f.Add(s, 0, "exchange/")
		f.Add(s, 2, "")
	}
	f.Fuzz(func(t *testing.T, s string, maxBindings int, prefix string) {
		lim := Limits{MaxBindings: maxBindings % 100}
		if prefix != "" {
			lim.AllowedExchanges = []string{prefix}
		}
		got, err := Parse(s, lim)
		if err != nil {
			e := checkError(t, err)
			if !utf8.ValidString(e.Error()) {
				t.Errorf("error text %q is not valid UTF-8", e)
			}
			if got != nil {
				t.Errorf("Parse returned %q with error %v", got, err)
			}
			return
		}
		maxN := lim.MaxBindings
		if maxN <= 0 {
			maxN = DefaultMaxBindings
		}
		if len(got) == 0 || len(got) > maxN {
			t.Errorf("Parse returned %d bindings, limit %d", len(got), maxN)
		}
		seen := make(map[Binding]bool)
		for _, b := range got {
			if seen[b] {
				t.Errorf("duplicate %q", b)
			}
			seen[b] = true
			ex := b.Exchange
			if ex == "" || len(ex) > topic.MaxLength || !utf8.ValidString(ex) || strings.ContainsFunc(ex, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
				t.Errorf("accepted exchange %q", ex)
			}
			if !strings.HasPrefix(ex, prefix) {
				t.Errorf("accepted exchange %q without prefix %q", ex, prefix)
			}
			if err := topic.Validate(b.RoutingKeyPattern); err != nil {
				t.Errorf("accepted pattern: %v", err)
			}
		}
	})
}

// FuzzScanPlain checks that the requests scanPlain reads give what
// encoding/json makes of them: the same bindings, or the same error.
func FuzzScanPlain(f *testing.F) {
	for _, s := range []string{
		`{"bindings":[{"exchange":"exchange/x","routingKeyPattern":"primary.a.#"}]}`,
		` { "bindings" : [ { "routingKeyPattern" : "#" , "exchange" : "e" } , {"exchange":"e","routingKeyPattern":"#"} ] } `,
		`{"bindings":[{"exchange":"","routingKeyPattern":"#"}]}`,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"a.#.b.#.c.#"}]}`,
		`{"bindings":[{"exchange":"amq.rabbitmq.trace","routingKeyPattern":"#"}]}`,
		`{"bindings":[{"exchange":"e","exchange":"f","routingKeyPattern":"#"}]}`,
		`{"bindings":[{"exchange":"e\u0041","routingKeyPattern":"#"}]}`,
		`{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}x`,
		`{"bindings":[]}`,
	} {
		f.Add(s, 0, "")
		f.Add(s, 1, "exchange/")
	}
	f.Fuzz(func(t *testing.T, s string, maxBindings int, prefix string) {
		lim := Limits{MaxBindings: maxBindings % 100}
		if prefix != "" {
			lim.AllowedExchanges = []string{prefix}
		}
		bs, ok := scanPlain(s, lim)
		if !ok {
			return
		}
		got, gotErr := checkAll(bs, lim)
		want, wantErr := parseJSON(s, lim)
		if fmt.Sprint(gotErr) != fmt.Sprint(wantErr) || !slices.Equal(got, want) {
			t.Errorf("%q: scanned %q, %v; encoding/json %q, %v", s, got, gotErr, want, wantErr)
		}
		if e, ok := gotErr.(*Error); gotErr != nil && (!ok || e.Index != wantErr.(*Error).Index) {
			t.Errorf("%q: error %#v, want %#v", s, gotErr, wantErr)
		}
	})
}
