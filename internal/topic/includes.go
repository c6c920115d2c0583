package topic

// MaxIncludesStates bounds the work of one Includes call: the number of
// states of its search. No pattern pair of a few words comes near it; a pair
// that does gets "no", which is the safe answer for a permission check.
const MaxIncludesStates = 1 << 14

// Includes reports whether p matches every routing key that q matches. It is
// exact where Covers is only sound: "*.#" includes "#.*", and "*.#.a"
// includes "#.a.a" (both need at least two words, the last one a). It is
// what a permission check needs: a grant's pattern p allows a requested
// pattern q exactly when Includes says so. Word-by-word covering answers most
// pairs at once; the others are decided by searching for a routing key that
// q matches and p does not, over p's words read as a deterministic automaton
// (the set of p's positions a key's prefix can reach) beside q's position.
// Words that p does not name all behave alike for p, so the search tries each
// of p's literals, the empty word, and one other word. The search is bounded
// by MaxIncludesStates; past it Includes says no.
func (p *Pattern) Includes(q *Pattern) bool {
	if p.Covers(q) {
		return true
	}
	if len(p.words) >= 64*len(posSet{}) {
		return false
	}
	s := newIncludesSearch(p)
	return s.run(q)
}

// posSet is a set of positions in a pattern's words (0 to len(words)): the
// pattern words a key's prefix may have matched so far.
type posSet [3]uint64

func (s *posSet) add(i int)     { s[i/64] |= 1 << (i % 64) }
func (s posSet) has(i int) bool { return s[i/64]&(1<<(i%64)) != 0 }

// includesSearch holds p's words as the search reads them: each literal
// word's symbol, a symbol being an index into syms; the symbol len(syms)
// stands for every word that p does not name and that is not empty.
type includesSearch struct {
	p      *Pattern
	syms   []string
	wordOf []int // symbol of each literal word of p; -1 for * and #
	empty  int   // the symbol of the empty word
}

func newIncludesSearch(p *Pattern) *includesSearch {
	s := &includesSearch{p: p, wordOf: make([]int, len(p.words)), empty: -1}
	for i, w := range p.words {
		s.wordOf[i] = -1
		if w.kind == literal {
			s.wordOf[i] = s.symbol(w.text, true)
		}
	}
	s.empty = s.symbol("", true)
	return s
}

// symbol returns the symbol of the word w, adding it when add is set;
// without add, a word p does not name is the other word's symbol.
func (s *includesSearch) symbol(w string, add bool) int {
	for i, t := range s.syms {
		if t == w {
			return i
		}
	}
	if !add {
		return len(s.syms)
	}
	s.syms = append(s.syms, w)
	return len(s.syms) - 1
}

// closure adds to set the positions that p's # words reach by taking no word.
func (s *includesSearch) closure(set posSet) posSet {
	for j, w := range s.p.words {
		if w.kind == many && set.has(j) {
			set.add(j + 1)
		}
	}
	return set
}

// step returns the positions of p reached from set by one word of symbol sym.
func (s *includesSearch) step(set posSet, sym int) posSet {
	var next posSet
	for j, w := range s.p.words {
		if !set.has(j) {
			continue
		}
		switch {
		case w.kind == many:
			next.add(j)
		case w.kind == one || s.wordOf[j] == sym:
			next.add(j + 1)
		}
	}
	return s.closure(next)
}

// searchState is where a key's prefix can leave the two patterns: q at one
// position, p at a set of positions. length tells apart the prefixes of no
// word, of exactly one empty word (which is no routing key: "" has no words)
// and any other.
type searchState struct {
	q      int
	p      posSet
	length uint8
}

const (
	noWord uint8 = iota
	oneEmptyWord
	longer
)

// run searches for a routing key that q matches and p does not; it reports
// whether there is none.
func (s *includesSearch) run(q *Pattern) bool {
	pEnd, qEnd := len(s.p.words), len(q.words)
	var start posSet
	start.add(0)
	first := searchState{q: 0, p: s.closure(start), length: noWord}
	seen := map[searchState]bool{first: true}
	todo := []searchState{first}
	push := func(st searchState) bool {
		if seen[st] {
			return true
		}
		if len(seen) >= MaxIncludesStates {
			return false
		}
		seen[st] = true
		todo = append(todo, st)
		return true
	}
	nsyms := len(s.syms) + 1
	for len(todo) > 0 {
		st := todo[len(todo)-1]
		todo = todo[:len(todo)-1]
		if st.q == qEnd {
			if !st.p.has(pEnd) && st.length != oneEmptyWord {
				return false // a key q matches and p does not
			}
			continue
		}
		w := q.words[st.q]
		if w.kind == many && !push(searchState{q: st.q + 1, p: st.p, length: st.length}) {
			return false
		}
		next := st.q + 1
		if w.kind == many {
			next = st.q
		}
		lo, hi := 0, nsyms
		if w.kind == literal {
			lo = s.symbol(w.text, false)
			hi = lo + 1
		}
		for sym := lo; sym < hi; sym++ {
			length := longer
			if st.length == noWord && sym == s.empty {
				length = oneEmptyWord
			}
			if !push(searchState{q: next, p: s.step(st.p, sym), length: length}) {
				return false
			}
		}
	}
	return true
}
