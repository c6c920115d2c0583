package topic

import (
	"math/bits"
	"strings"
	"testing"
)

func TestIncludes(t *testing.T) {
	t.Parallel()
	cases := []struct {
		p, q string
		want bool
	}{
		{"#", "", true},
		{"primary.#", "primary.abc.#", true},
		{"primary.abc.#", "primary.#", false},
		{"*.#", "#.*", true},
		{"#.*", "*.#", true},
		{"*.#.a", "#.a.a", true},
		{"#.a.a", "*.#.a", false},
		{"*.*.#", "#.*.*", true},
		{"*.*.#", "#.*", false},
		{"#.a.#", "#.a.*.#", true},
		{"a.*", "a.#", false},
		{"*", "", false},
		{"", "", true},
		{"", "#", false},
		{"*.*", "#..#", false},
		{"#..#", "*.*", false},
		{"#", "#", true},
		{"a", "a", true},
		{"a", "b", false},
		{"*", "a", true},
		{"a.#.b", "a.b", true},
		{"a.#.b", "a.*.#.*.b", true},
	}
	for _, tc := range cases {
		if got := compile(tc.p).Includes(compile(tc.q)); got != tc.want {
			t.Errorf("%q includes %q: got %v, want %v", tc.p, tc.q, got, tc.want)
		}
	}
}

// TestIncludesExhaustive compares Includes with matching over every key of
// up to seven words from the patterns' words and one other, for every pair
// of patterns of up to three words from a, b, the empty word, * and #.
// exhaustiveWords is 3 to keep the test short; 4 (keys of up to 7 words)
// passes too, in about 20 s.
const exhaustiveWords = 3

func TestIncludesExhaustive(t *testing.T) {
	t.Parallel()
	patterns := smallPatterns(exhaustiveWords)
	universe := allKeys([]string{"a", "b", "", "z"}, exhaustiveWords+3)
	sets := make([][]uint64, len(patterns))
	for i, p := range patterns {
		sets[i] = matchSet(compile(p), universe)
	}
	for i, p := range patterns {
		for j, q := range patterns {
			want := subset(sets[j], sets[i])
			if got := compile(p).Includes(compile(q)); got != want {
				t.Errorf("%q includes %q: got %v, brute force says %v", p, q, got, want)
			}
		}
	}
}

// FuzzIncludes checks Includes against brute-force matching: when it says
// yes, no key of a small universe that q matches escapes p; when it says
// no, some key of the universe does.
func FuzzIncludes(f *testing.F) {
	f.Add([]byte{0, 4}, []byte{4, 0})
	f.Add([]byte{3, 4, 0}, []byte{4, 0, 0})
	f.Add([]byte{4, 2, 4}, []byte{3, 3})
	universe := allKeys([]string{"a", "b", "", "z"}, 7)
	keys := make([]Key, len(universe))
	for i, k := range universe {
		keys[i] = SplitKey(k)
	}
	f.Fuzz(func(t *testing.T, pb, qb []byte) {
		if len(pb) > 4 || len(qb) > 4 {
			return
		}
		p, q := patternOf(pb), patternOf(qb)
		pp, qq := compile(p), compile(q)
		got := pp.Includes(qq)
		escaped := ""
		found := false
		for i, k := range keys {
			if qq.Match(k) && !pp.Match(k) {
				escaped, found = universe[i], true
				break
			}
		}
		if got && found {
			t.Fatalf("%q includes %q, but key %q matches only the latter", p, q, escaped)
		}
		if !got && !found {
			t.Fatalf("%q does not include %q, but no key of up to 7 words tells them apart", p, q)
		}
		if pp.Covers(qq) && !got {
			t.Fatalf("%q covers %q but does not include it", p, q)
		}
	})
}

var patternWords = []string{"a", "b", "", "*", "#"}

// patternOf makes a pattern of one word per byte.
func patternOf(b []byte) string {
	ws := make([]string, len(b))
	for i, c := range b {
		ws[i] = patternWords[int(c)%len(patternWords)]
	}
	return strings.Join(ws, ".")
}

// smallPatterns returns every distinct pattern of up to n words.
func smallPatterns(n int) []string {
	seen := map[string]bool{}
	var out []string
	level := [][]string{{}}
	for range n + 1 {
		var next [][]string
		for _, ws := range level {
			s := strings.Join(ws, ".")
			if !seen[s] {
				seen[s] = true
				out = append(out, s)
			}
			for _, w := range patternWords {
				next = append(next, append(append([]string{}, ws...), w))
			}
		}
		level = next
	}
	return out
}

func matchSet(p *Pattern, universe []string) []uint64 {
	set := make([]uint64, (len(universe)+63)/64)
	for i, k := range universe {
		if p.Match(SplitKey(k)) {
			set[i/64] |= 1 << (i % 64)
		}
	}
	return set
}

// subset reports whether a ⊆ b.
func subset(a, b []uint64) bool {
	for i := range a {
		if bits.OnesCount64(a[i]&^b[i]) != 0 {
			return false
		}
	}
	return true
}

// TestIncludesBounded: a pattern whose automaton has 2^20 states is refused
// once the search reaches its bound, rather than explored.
func TestIncludesBounded(t *testing.T) {
	t.Parallel()
	p := compile("#.a" + strings.Repeat(".*", 20))
	q := compile("#.a" + strings.Repeat(".*", 20) + ".#")
	if p.Includes(q) {
		t.Errorf("%q includes %q", p, q)
	}
	q = compile(strings.TrimSuffix(strings.Repeat("#.b.", 60), "."))
	if p.Includes(q) {
		t.Errorf("%q includes %q", p, q)
	}
}

func BenchmarkIncludes(b *testing.B) {
	p, q := compile("primary.*.#"), compile("#.primary.abc.#")
	for b.Loop() {
		p.Includes(q)
	}
}
