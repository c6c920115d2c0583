package topic

import "strings"

// Normalize returns the normal form of pattern: the pattern that matches
// exactly the routing keys pattern matches, with each run of wildcard words
// rewritten as its * words followed by at most one #. A run of n * words and
// at least one # matches n or more words whatever their order, so "#.#" is
// "#", "#.*" is "*.#" and "#.*.#.*" is "*.*.#"; a run without # is kept.
// Literal words, the empty one among them, are kept as they are, so
// Normalize never lengthens a pattern and a valid pattern stays valid.
//
// RabbitMQ's topic matching backtracks on every # word, so a broker binding
// costs it work that grows with the number of # words raised to the key's
// length: binding the normal form keeps that to one # per run. Normalize may
// be called concurrently.
func Normalize(pattern string) string {
	if !strings.Contains(pattern, "#") || !needsNormalizing(pattern) {
		return pattern
	}
	var b strings.Builder
	b.Grow(len(pattern))
	stars, hash := 0, false // the run of wildcard words being read
	first := true
	put := func(w string) {
		if !first {
			b.WriteByte('.')
		}
		first = false
		b.WriteString(w)
	}
	flush := func() {
		for ; stars > 0; stars-- {
			put("*")
		}
		if hash {
			put("#")
		}
		hash = false
	}
	for w := range strings.SplitSeq(pattern, ".") {
		switch w {
		case "*":
			stars++
		case "#":
			hash = true
		default:
			flush()
			put(w)
		}
	}
	flush()
	return b.String()
}

// needsNormalizing reports whether pattern has a # followed, within its run
// of wildcard words, by another wildcard word: the only patterns Normalize
// changes.
func needsNormalizing(pattern string) bool {
	hash := false // a # in the current run
	for w := range strings.SplitSeq(pattern, ".") {
		switch w {
		case "#", "*":
			if hash {
				return true
			}
			hash = w == "#"
		default:
			hash = false
		}
	}
	return false
}

// Hashes returns the number of # words of pattern's normal form: one per
// run of wildcard words that holds a #. It is what decides how much work a
// broker binding of the normal form costs RabbitMQ per message. Hashes may
// be called concurrently.
func Hashes(pattern string) int {
	n, hash := 0, false
	for w := range strings.SplitSeq(pattern, ".") {
		switch w {
		case "#":
			if !hash {
				n++
			}
			hash = true
		case "*":
		default:
			hash = false
		}
	}
	return n
}

// Normal returns the compiled normal form of p (see Normalize): p itself
// when p is in normal form.
func (p *Pattern) Normal() *Pattern {
	n := Normalize(p.src)
	if n == p.src {
		return p
	}
	return compile(n)
}
