package topic

import (
	"math/rand/v2"
	"slices"
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
