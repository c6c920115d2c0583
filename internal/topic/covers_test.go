package topic

import (
	"strings"
	"testing"
)

func TestCovers(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p, q string
		want bool
	}{
		{"#", "", true},
		{"#", "a.*.#", true},
		{"a.#", "a.b", true},
		{"a.#", "a", true},
		{"a.#", "a.#.b", true},
		{"a.*", "a.b", true},
		{"a.*", "a.*", true},
		{"a.*", "a.#", false},
		{"a.b", "a.*", false},
		{"*", "", false},
		{"primary.#", "primary.abc.#", true},
		{"primary.abc.#", "primary.#", false},
		{"#.b", "a.b", true},
		{"#.b", "a.#", false},
		{"*.#", "#.*", false}, // equal sets; word by word cannot tell: sound, not complete
		{"a..b", "a..b", true},
		{"", "", true},
		{"", "#", false},
	}
	for _, tc := range cases {
		if got := compile(tc.p).Covers(compile(tc.q)); got != tc.want {
			t.Errorf("%q covers %q: got %v, want %v", tc.p, tc.q, got, tc.want)
		}
	}
}

// FuzzCovers checks soundness: when p covers q, every key of a small
// universe that q matches, p matches too.
func FuzzCovers(f *testing.F) {
	f.Add("a.#", "a.*.b")
	f.Add("#.*", "*.#")
	f.Add("*.#.a", "b.#.a")
	keys := allKeys([]string{"a", "b", ""}, 4)
	f.Fuzz(func(t *testing.T, p, q string) {
		if len(p) > 16 || len(q) > 16 {
			return
		}
		pp, qq := compile(p), compile(q)
		if !pp.Covers(qq) {
			return
		}
		for _, k := range keys {
			key := SplitKey(k)
			if qq.Match(key) && !pp.Match(key) {
				t.Fatalf("%q covers %q, but key %q matches only the latter", p, q, k)
			}
		}
	})
}

// allKeys returns every routing key of up to n words from alphabet.
func allKeys(alphabet []string, n int) []string {
	keys := []string{""}
	level := [][]string{{}}
	for range n {
		var next [][]string
		for _, ws := range level {
			for _, a := range alphabet {
				w := append(append([]string{}, ws...), a)
				next = append(next, w)
				keys = append(keys, strings.Join(w, "."))
			}
		}
		level = next
	}
	return keys
}
