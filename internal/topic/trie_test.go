package topic

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// trieMatches returns the sorted patterns whose values t visits for key.
func trieMatches(t *Trie[string], key string) []string {
	var got []string
	t.Match(SplitKey(key), func(v string) { got = append(got, v) })
	slices.Sort(got)
	return got
}

// linearMatches returns the sorted patterns that match key one by one.
func linearMatches(patterns []string, key string) []string {
	var want []string
	k := SplitKey(key)
	for _, p := range patterns {
		if compile(p).Match(k) {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	return want
}

func TestTrieAgreesWithMatch(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(1, 2))
	words := []string{"a", "b", "", "*", "#"}
	randomWords := func(alphabet []string) string {
		ws := make([]string, r.IntN(5))
		for i := range ws {
			ws[i] = alphabet[r.IntN(len(alphabet))]
		}
		return strings.Join(ws, ".")
	}
	for round := range 200 {
		var tr Trie[string]
		var patterns []string
		for range 1 + r.IntN(30) {
			p := randomWords(words)
			if slices.Contains(patterns, p) {
				continue
			}
			patterns = append(patterns, p)
			tr.Insert(compile(p), p)
		}
		// Delete some, to exercise pruning.
		for i := 0; i < len(patterns); i++ {
			if r.IntN(4) == 0 {
				if !tr.Delete(compile(patterns[i])) {
					t.Fatalf("round %d: delete %q: not found", round, patterns[i])
				}
				patterns = slices.Delete(patterns, i, i+1)
				i--
			}
		}
		if tr.Len() != len(patterns) {
			t.Fatalf("round %d: Len %d, want %d", round, tr.Len(), len(patterns))
		}
		for range 20 {
			key := randomWords(words[:3])
			if got, want := trieMatches(&tr, key), linearMatches(patterns, key); !slices.Equal(got, want) {
				t.Fatalf("round %d: key %q with patterns %q:\n got %q\nwant %q", round, key, patterns, got, want)
			}
		}
	}
}

func TestTrieDeletePrunes(t *testing.T) {
	t.Parallel()
	var tr Trie[int]
	tr.Insert(compile("a.*.#"), 1)
	tr.Insert(compile("a.b"), 2)
	if tr.Delete(compile("a.*")) {
		t.Fatal("deleted a pattern that is not there")
	}
	tr.Delete(compile("a.*.#"))
	tr.Delete(compile("a.b"))
	if tr.Len() != 0 || len(tr.root.children) != 0 || tr.root.star != nil || tr.root.hash != nil {
		t.Fatalf("empty trie keeps nodes: %+v", tr.root)
	}
}

func TestTrieManyHashesStayCheap(t *testing.T) {
	t.Parallel()
	var tr Trie[int]
	p := strings.Repeat("#.a.", 60) + "#"
	tr.Insert(compile(p), 1)
	key := strings.Repeat("a.", 120) + "b"
	n := 0
	tr.Match(SplitKey(key), func(int) { n++ })
	if n != 1 {
		t.Fatalf("visits %d, want 1", n)
	}
}

func FuzzTrie(f *testing.F) {
	f.Add("a.#", "#.b", "a.*", "a.b")
	f.Add("#", "", "*", "")
	f.Fuzz(func(t *testing.T, p1, p2, p3, key string) {
		if strings.Count(p1+p2+p3, "#") > 8 || strings.Count(key, ".") > 20 {
			return
		}
		var tr Trie[string]
		patterns := []string{}
		for _, p := range []string{p1, p2, p3} {
			if !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
				tr.Insert(compile(p), p)
			}
		}
		if got, want := trieMatches(&tr, key), linearMatches(patterns, key); !slices.Equal(got, want) {
			t.Fatalf("key %q patterns %q: got %q want %q", key, patterns, got, want)
		}
	})
}

// trieCovering returns the sorted patterns whose values t visits as covers
// of q.
func trieCovering(t *Trie[string], q string) []string {
	var got []string
	t.Covering(compile(q), func(v string) bool {
		got = append(got, v)
		return true
	})
	slices.Sort(got)
	return got
}

// linearCovering returns the sorted patterns that cover q, by asking
// Pattern.Covers of each.
func linearCovering(patterns []string, q string) []string {
	var want []string
	qq := compile(q)
	for _, p := range patterns {
		if compile(p).Covers(qq) {
			want = append(want, p)
		}
	}
	slices.Sort(want)
	return want
}

func TestTrieCovering(t *testing.T) {
	t.Parallel()
	stored := []string{
		"", ".", "*", "#", "#.#", "*.*", "*.#", "#.*",
		"a", "a.#", "a.#.#", "a.*", "a.b", "a..b", "a.*.b", "a.#.b", "#.b", "#.b.#",
		"primary.#", "primary.*.#", "primary.x.#",
	}
	var tr Trie[string]
	for _, p := range stored {
		tr.Insert(compile(p), p)
	}
	cases := []struct {
		name, q string
		want    []string
	}{
		{"literals", "a.b", []string{"#", "#.#", "#.*", "#.b", "#.b.#", "*.#", "*.*", "a.#", "a.#.#", "a.#.b", "a.*", "a.b"}},
		{"trailing hash", "a.#", []string{"#", "#.#", "*.#", "a.#", "a.#.#"}},
		{"a run of hashes is one hash", "a.#.#", []string{"#", "#.#", "*.#", "a.#", "a.#.#"}},
		{"hash star only by a leading hash", "#.*", []string{"#", "#.#", "#.*"}},
		{"star hash", "*.#", []string{"#", "#.#", "*.#"}},
		{"hash only by hash", "#", []string{"#", "#.#"}},
		{"star", "*", []string{"#", "#.#", "#.*", "*", "*.#"}},
		{"empty pattern", "", []string{"", "#", "#.#"}},
		{"two empty words", ".", []string{"#", "#.#", "#.*", "*.#", "*.*", "."}},
		{"an empty word inside", "a..b", []string{"#", "#.#", "#.*", "#.b", "#.b.#", "*.#", "a.#", "a.#.#", "a.#.b", "a.*.b", "a..b"}},
		{"a literal by a hash run", "b", []string{"#", "#.#", "#.*", "#.b", "#.b.#", "*", "*.#"}},
		{"hashes on both sides", "x.#.b.#", []string{"#", "#.#", "#.b.#", "*.#"}},
		{"a task's key", "primary.x.y", []string{"#", "#.#", "#.*", "*.#", "primary.#", "primary.*.#", "primary.x.#"}},
		{"a wide key", "primary.#", []string{"#", "#.#", "*.#", "primary.#"}},
		{"nothing but hashes", "c.*.#", []string{"#", "#.#", "*.#"}},
	}
	// The cases share tr, which Covering marks: they run one at a time.
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			want := slices.Sorted(slices.Values(tc.want))
			if ref := linearCovering(stored, tc.q); !slices.Equal(ref, want) {
				t.Fatalf("the table disagrees with Covers for %q: Covers says %q", tc.q, ref)
			}
			if got := trieCovering(&tr, tc.q); !slices.Equal(got, want) {
				t.Fatalf("covers of %q: got %q, want %q", tc.q, got, want)
			}
		})
	}
}

func TestTrieCoveringStops(t *testing.T) {
	t.Parallel()
	var tr Trie[string]
	for _, p := range []string{"#", "a.#", "*.*", "a.*", "a.b"} {
		tr.Insert(compile(p), p)
	}
	calls := 0
	tr.Covering(compile("a.b"), func(string) bool {
		calls++
		return false
	})
	if calls != 1 {
		t.Fatalf("visit called %d times after returning false, want once", calls)
	}
}

func TestTrieCoveringAgreesWithCovers(t *testing.T) {
	t.Parallel()
	r := rand.New(rand.NewPCG(3, 4))
	words := []string{"a", "b", "", "*", "#", "#"}
	randomWords := func() string {
		ws := make([]string, r.IntN(6))
		for i := range ws {
			ws[i] = words[r.IntN(len(words))]
		}
		return strings.Join(ws, ".")
	}
	for round := range 200 {
		var tr Trie[string]
		var patterns []string
		for range 1 + r.IntN(40) {
			p := randomWords()
			if slices.Contains(patterns, p) {
				continue
			}
			patterns = append(patterns, p)
			tr.Insert(compile(p), p)
		}
		for i := 0; i < len(patterns); i++ {
			if r.IntN(4) == 0 {
				tr.Delete(compile(patterns[i]))
				patterns = slices.Delete(patterns, i, i+1)
				i--
			}
		}
		for range 20 {
			q := randomWords()
			if got, want := trieCovering(&tr, q), linearCovering(patterns, q); !slices.Equal(got, want) {
				t.Fatalf("round %d: covers of %q among %q:\n got %q\nwant %q", round, q, patterns, got, want)
			}
		}
	}
}

func TestTrieCoveringManyHashesStayCheap(t *testing.T) {
	t.Parallel()
	var tr Trie[int]
	tr.Insert(compile(strings.Repeat("#.a.", 60)+"#"), 1)
	tr.Insert(compile(strings.Repeat("#.*.", 60)+"#"), 2)
	q := compile(strings.Repeat("a.", 120) + "#")
	n := 0
	tr.Covering(q, func(int) bool {
		n++
		return true
	})
	if n != 2 {
		t.Fatalf("visits %d, want 2", n)
	}
}

// TestTrieCoveringDoesNotAllocate is not parallel: AllocsPerRun counts the
// allocations of every goroutine.
func TestTrieCoveringDoesNotAllocate(t *testing.T) {
	var tr Trie[int]
	for i := range 1000 {
		tr.Insert(compile("primary.task"+strconv.Itoa(i)+".#"), i)
	}
	tr.Insert(compile("primary.#"), -1)
	tr.Insert(compile("#.gecko-level-3.#"), -2)
	q := compile("primary.task7.x.gecko-level-3")
	found := 0
	allocs := testing.AllocsPerRun(100, func() {
		found = 0
		tr.Covering(q, func(int) bool {
			found++
			return true
		})
	})
	if found != 3 {
		t.Fatalf("found %d covers, want 3", found)
	}
	if allocs != 0 {
		t.Fatalf("Covering allocates %v times per call", allocs)
	}
}

func FuzzTrieCovering(f *testing.F) {
	f.Add("a.#", "#.b", "a.*", "*.#", "a.b")
	f.Add("#", "", "#.*", "*.#", "")
	f.Add("#.#.a", "a.#.#", "#.a.#", "*.*", "a.#")
	f.Add("a..b", ".", "a.*.b", "#.*.#", "a..b")
	f.Fuzz(func(t *testing.T, p1, p2, p3, p4, q string) {
		if len(p1+p2+p3+p4) > 64 || len(q) > 32 {
			return
		}
		var tr Trie[string]
		patterns := []string{}
		for _, p := range []string{p1, p2, p3, p4} {
			if !slices.Contains(patterns, p) {
				patterns = append(patterns, p)
				tr.Insert(compile(p), p)
			}
		}
		if got, want := trieCovering(&tr, q), linearCovering(patterns, q); !slices.Equal(got, want) {
			t.Fatalf("covers of %q among %q: got %q want %q", q, patterns, got, want)
		}
	})
}
