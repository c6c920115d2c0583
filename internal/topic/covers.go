package topic

// Covers reports whether p matches every routing key that q matches, so
// that a queue bound with p receives every message that a binding with q
// would bring. It compares the patterns word by word: a literal covers
// itself, * covers a literal or *, and # covers any run of words, a # among
// them. That is sound: when Covers says yes, it is so. It may say no for
// some pairs that cover each other only by counting words ("*.#" and
// "#.*"); those are just bound separately.
func (p *Pattern) Covers(q *Pattern) bool {
	pw, qw := p.words, q.words
	// ok[j] after row i: pw[:i] covers qw[:j]. A pattern of at most
	// MaxLength bytes has at most MaxLength/2+1 words, so two rows on the
	// stack always do: no allocation.
	if len(qw) > MaxLength/2+1 {
		return false
	}
	var rowA, rowB [MaxLength/2 + 2]bool
	ok, next := rowA[:len(qw)+1], rowB[:len(qw)+1]
	ok[0] = true
	for i := range pw {
		w := pw[i]
		for j := 0; j <= len(qw); j++ {
			switch w.kind {
			case many:
				// # takes nothing, or one more word of q after what it
				// took already.
				next[j] = ok[j] || (j > 0 && next[j-1])
			case one:
				next[j] = j > 0 && ok[j-1] && qw[j-1].kind != many
			default:
				next[j] = j > 0 && ok[j-1] && qw[j-1].kind == literal && qw[j-1].text == w.text
			}
		}
		ok, next = next, ok
	}
	return ok[len(qw)]
}
