package topic

import (
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		pattern, want string
		hashes        int
	}{
		{"", "", 0},
		{"#", "#", 1},
		{"*", "*", 0},
		{"a.b", "a.b", 0},
		{"#.#", "#", 1},
		{"#.#.#", "#", 1},
		{"#.*", "*.#", 1},
		{"*.#", "*.#", 1},
		{"#.*.#.*", "*.*.#", 1},
		{"a.#.#.b", "a.#.b", 1},
		{"#.foo.#", "#.foo.#", 2},
		{"#.*.foo.#.#", "*.#.foo.#", 2},
		{"*.*.#", "*.*.#", 1},
		{"#..#", "#..#", 2}, // the empty word is a literal
		{".#.#.", ".#.", 1},
		{"a*.#.#", "a*.#", 1}, // not valid, but taken literally as RabbitMQ does
		{strings.Repeat("#.*.", 63) + "b", strings.Repeat("*.", 63) + "#.b", 1},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			t.Parallel()
			if got := Normalize(tc.pattern); got != tc.want {
				t.Errorf("Normalize(%q) = %q, want %q", tc.pattern, got, tc.want)
			}
			if got := Hashes(tc.pattern); got != tc.hashes {
				t.Errorf("Hashes(%q) = %d, want %d", tc.pattern, got, tc.hashes)
			}
		})
	}
}

func TestNormalizeDoesNotAllocateWhenNormal(t *testing.T) {
	for _, p := range []string{"primary.#", "#.foo.#", "*.*.#", "route.index.gecko.v2.#"} {
		if n := testing.AllocsPerRun(100, func() { _ = Normalize(p) }); n != 0 {
			t.Errorf("Normalize(%q) allocates %v times", p, n)
		}
	}
}

// FuzzNormalize checks that the normal form matches exactly the keys the
// pattern matches, against the matcher (itself fuzzed against the naive
// reference) and, where it is fast enough, against the reference too.
func FuzzNormalize(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.pattern, tc.key)
	}
	f.Add("#.*.#.*", "a.b")
	f.Add("#.*.#.*", "a")
	f.Add("a.#.*.*.#.b", "a.x.y.b")
	f.Add("#..#.*", "..")
	f.Add(strings.Repeat("#.*.", 20)+"b", strings.Repeat("a.", 25)+"b")
	f.Fuzz(func(t *testing.T, pattern, key string) {
		n := Normalize(pattern)
		if len(n) > len(pattern) {
			t.Fatalf("Normalize(%q) = %q is longer", pattern, n)
		}
		if again := Normalize(n); again != n {
			t.Errorf("Normalize(%q) = %q, but Normalize of that is %q", pattern, n, again)
		}
		hashes := 0
		for _, w := range strings.Split(n, ".") {
			if w == "#" {
				hashes++
			}
		}
		if got, want := hashes, Hashes(pattern); got != want {
			t.Errorf("Normalize(%q) = %q has %d # words, Hashes says %d", pattern, n, got, want)
		}
		if Validate(pattern) == nil {
			if err := Validate(n); err != nil {
				t.Errorf("Normalize(%q) = %q is not valid: %v", pattern, n, err)
			}
		}
		want := Match(pattern, key)
		if got := Match(n, key); got != want {
			t.Errorf("Match(%q, %q) = %v but Match(%q, %q) = %v", n, key, got, pattern, key, want)
		}
		if strings.Count(pattern, "#") <= 4 && strings.Count(key, ".") <= 16 {
			if ref := naiveMatch(n, key); ref != want {
				t.Errorf("reference: %q on %q is %v, Match of %q says %v", n, key, ref, pattern, want)
			}
		}
	})
}
