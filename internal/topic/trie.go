package topic

import "slices"

// Trie holds patterns, each with a value, and finds the values whose
// patterns match a routing key, or cover a pattern, without trying every
// pattern: the work grows with the key's or pattern's words and the patterns
// that share its prefixes, not with the number of patterns. Matching is
// RabbitMQ's own way of routing.
//
// No method may run at the same time as another: Match and Covering write
// too (they mark nodes as visited), so a Trie shared between goroutines
// needs a lock that excludes them from each other, such as a sync.Mutex,
// not the read lock of a sync.RWMutex.
type Trie[V any] struct {
	root  trieNode[V]
	size  int
	epoch uint64
}

type trieEntry[V any] struct {
	pattern string
	value   V
}

type trieNode[V any] struct {
	children map[string]*trieNode[V] // literal words
	star     *trieNode[V]            // *
	hash     *trieNode[V]            // #

	// The patterns that end here. Patterns that differ only in repeated
	// # ("a.#.#" and "a.#") share a node, so there may be several.
	entries []trieEntry[V]

	// seen[i] == epoch when this node was already tried at key word i in
	// the current Match: each (node, position) is tried once, which keeps
	// patterns with many # linear instead of exponential.
	seen []uint64

	// coverSeen == epoch when the current Covering has tried this # node
	// already, at its lowest word and every later one: all that any later
	// arrival at it would try.
	coverSeen uint64
}

// Len returns the number of patterns in t.
func (t *Trie[V]) Len() int { return t.size }

// Insert sets the value of p, replacing the value of the same pattern.
func (t *Trie[V]) Insert(p *Pattern, v V) {
	n := &t.root
	for _, w := range p.words {
		n = n.child(w, true)
	}
	for i := range n.entries {
		if n.entries[i].pattern == p.src {
			n.entries[i].value = v
			return
		}
	}
	n.entries = append(n.entries, trieEntry[V]{p.src, v})
	t.size++
}

// Delete removes p; it reports whether p was there. Nodes that lead to no
// pattern any more are freed.
func (t *Trie[V]) Delete(p *Pattern) bool {
	path := make([]*trieNode[V], 0, len(p.words)+1)
	n := &t.root
	path = append(path, n)
	for _, w := range p.words {
		if n = n.child(w, false); n == nil {
			return false
		}
		path = append(path, n)
	}
	i := slices.IndexFunc(n.entries, func(e trieEntry[V]) bool { return e.pattern == p.src })
	if i < 0 {
		return false
	}
	n.entries = slices.Delete(n.entries, i, i+1)
	t.size--
	for i := len(p.words) - 1; i >= 0; i-- {
		child := path[i+1]
		if len(child.entries) > 0 || len(child.children) > 0 || child.star != nil || child.hash != nil {
			break
		}
		path[i].unlink(p.words[i])
	}
	return true
}

// Match calls visit with the value of every pattern that matches k, once
// per pattern, in no particular order.
func (t *Trie[V]) Match(k Key, visit func(V)) {
	t.epoch++
	t.root.match(k.words, 0, t.epoch, visit)
}

// Covering calls visit with the value of every pattern in t that covers p,
// as Pattern.Covers decides, once per pattern and in no particular order,
// until visit returns false. A pattern covers itself, so p's own value is
// visited when p is in t, as are those of patterns that differ from p only in
// repeated # ("a.#.#" for "a.#"). The work grows with p's words times the *
// and # edges met along them, not with the number of patterns, and Covering
// does not allocate. Like Match, it must not run at the same time as another
// Match or Covering.
func (t *Trie[V]) Covering(p *Pattern, visit func(V) bool) {
	// Covers never says yes for a pattern longer than MaxLength allows.
	if len(p.words) > MaxLength/2+1 {
		return
	}
	t.epoch++
	t.root.cover(p.words, 0, t.epoch, visit)
}

func (n *trieNode[V]) child(w word, create bool) *trieNode[V] {
	switch w.kind {
	case one:
		if n.star == nil && create {
			n.star = &trieNode[V]{}
		}
		return n.star
	case many:
		if n.hash == nil && create {
			n.hash = &trieNode[V]{}
		}
		return n.hash
	}
	c := n.children[w.text]
	if c == nil && create {
		if n.children == nil {
			n.children = make(map[string]*trieNode[V])
		}
		c = &trieNode[V]{}
		n.children[w.text] = c
	}
	return c
}

func (n *trieNode[V]) unlink(w word) {
	switch w.kind {
	case one:
		n.star = nil
	case many:
		n.hash = nil
	default:
		delete(n.children, w.text)
	}
}

// match tries n at key word i: the pattern words up to n have matched
// words[:i].
func (n *trieNode[V]) match(words []string, i int, epoch uint64, visit func(V)) {
	if len(n.seen) <= i {
		n.seen = append(n.seen, make([]uint64, i+1-len(n.seen))...)
	}
	if n.seen[i] == epoch {
		return
	}
	n.seen[i] = epoch
	if n.hash != nil {
		// # takes zero or more of the remaining words.
		for j := i; j <= len(words); j++ {
			n.hash.match(words, j, epoch, visit)
		}
	}
	if i == len(words) {
		for _, e := range n.entries {
			visit(e.value)
		}
		return
	}
	if c := n.children[words[i]]; c != nil {
		c.match(words, i+1, epoch, visit)
	}
	if n.star != nil {
		n.star.match(words, i+1, epoch, visit)
	}
}

// cover tries n at word i of q: the pattern words up to n cover q[:i]. It
// returns false once visit has asked to stop.
func (n *trieNode[V]) cover(q []word, i int, epoch uint64, visit func(V) bool) bool {
	if n.hash != nil && !n.hash.coverHash(q, i, epoch, visit) {
		return false
	}
	if i == len(q) {
		for _, e := range n.entries {
			if !visit(e.value) {
				return false
			}
		}
		return true
	}
	// A literal is covered by itself or *, * by * only; # by nothing but
	// a #, which coverHash took care of.
	switch w := q[i]; w.kind {
	case literal:
		if c := n.children[w.text]; c != nil && !c.cover(q, i+1, epoch, visit) {
			return false
		}
		fallthrough
	case one:
		if n.star != nil && !n.star.cover(q, i+1, epoch, visit) {
			return false
		}
	}
	return true
}

// coverHash tries the # node h reached at word i of q: its # takes any run
// of q's words from i on, # and * among them, so h is tried at i and at every
// later word. A call reaches h first at its lowest word, since the # nodes
// above h try their words in increasing order too, so a later arrival finds
// its words tried already. Each (node, word) is thus tried at most once per
// call, which keeps the work polynomial however many # the patterns have and
// visits each pattern once.
func (h *trieNode[V]) coverHash(q []word, i int, epoch uint64, visit func(V) bool) bool {
	if h.coverSeen == epoch {
		return true
	}
	h.coverSeen = epoch
	for j := i; j <= len(q); j++ {
		if !h.cover(q, j, epoch, visit) {
			return false
		}
	}
	return true
}
