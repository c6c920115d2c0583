package topic

import (
	"fmt"
	"strings"
	"unicode/utf8"
)

// MaxLength is the longest binding or routing key AMQP allows, in bytes (255).
const MaxLength = 255

// Validate returns nil when pattern is a binding pattern eventsproxy accepts,
// else an error whose text is a client-safe English sentence naming the
// problem. A pattern is accepted when it is at most MaxLength bytes of valid
// UTF-8 without control characters, and uses the wildcards * and # only as
// whole words: RabbitMQ would take "a*" as a literal word, which is never what
// a user means. The empty pattern is valid; it matches only the empty routing
// key. Validate may be called concurrently.
func Validate(pattern string) error {
	if len(pattern) > MaxLength {
		return invalid(pattern, fmt.Sprintf("it is %d bytes long, more than the %d allowed", len(pattern), MaxLength))
	}
	if !utf8.ValidString(pattern) {
		return invalid(pattern, "it is not valid UTF-8")
	}
	start := 0 // first byte of the current word
	for i := 0; i <= len(pattern); i++ {
		if i == len(pattern) || pattern[i] == '.' {
			if w := pattern[start:i]; len(w) > 1 && strings.ContainsAny(w, "*#") {
				return invalid(pattern, "* and # must stand alone as a whole word")
			}
			start = i + 1
			continue
		}
		// Multi-byte UTF-8 sequences contain no byte below 0x80, so a byte
		// test finds every ASCII control character.
		if c := pattern[i]; c < 0x20 || c == 0x7f {
			return invalid(pattern, "it contains a control character")
		}
	}
	return nil
}

// invalid returns the error Validate reports for pattern, for reason.
func invalid(pattern, reason string) error {
	return fmt.Errorf("routingKeyPattern %s is not a valid topic pattern: %s", Quote(pattern), reason)
}

// quoteMax is how many bytes of a value an error text shows.
const quoteMax = 64

// Quote returns s quoted with %q, cut to 64 bytes (on a rune boundary) and
// followed by "..." when longer, so that an error text about a client's
// pattern or name stays short and on one line whatever the client sent.
func Quote(s string) string {
	if len(s) <= quoteMax {
		return fmt.Sprintf("%q", s)
	}
	n := quoteMax
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return fmt.Sprintf("%q...", s[:n])
}

// kind says what a pattern word matches.
type kind uint8

const (
	literal kind = iota // the word itself
	one                 // *: exactly one word
	many                // #: zero or more words
)

// word is one word of a compiled pattern.
type word struct {
	kind kind
	text string // for literal words
}

// Pattern is a compiled binding pattern. It is immutable, so any number of
// goroutines may use it at once.
type Pattern struct {
	src     string
	words   []word
	hasMany bool // whether any word is #
}

// Compile validates pattern, as Validate does, and compiles it.
func Compile(pattern string) (*Pattern, error) {
	if err := Validate(pattern); err != nil {
		return nil, err
	}
	return compile(pattern), nil
}

// compile compiles pattern without validating it: a word such as "a*" is
// then a literal word, as RabbitMQ would take it.
func compile(pattern string) *Pattern {
	p := &Pattern{src: pattern}
	if pattern == "" {
		return p
	}
	p.words = make([]word, 0, strings.Count(pattern, ".")+1)
	for w := range strings.SplitSeq(pattern, ".") {
		switch w {
		case "#":
			p.hasMany = true
			// "#.#" matches exactly what "#" matches; one is cheaper.
			if n := len(p.words); n > 0 && p.words[n-1].kind == many {
				continue
			}
			p.words = append(p.words, word{kind: many})
		case "*":
			p.words = append(p.words, word{kind: one})
		default:
			p.words = append(p.words, word{kind: literal, text: w})
		}
	}
	return p
}

// String returns the pattern as it was given to Compile.
func (p *Pattern) String() string {
	return p.src
}

// Match reports whether p matches the routing key k, with RabbitMQ's topic
// semantics. It does not allocate, and takes at most
// O(len(pattern words) × len(key words)) steps.
func (p *Pattern) Match(k Key) bool {
	key := k.words
	if !p.hasMany {
		if len(p.words) != len(key) {
			return false
		}
		for i, w := range p.words {
			if w.kind == literal && w.text != key[i] {
				return false
			}
		}
		return true
	}
	// The classic glob algorithm, with # as the star: on a mismatch, go back
	// to the latest # and let it swallow one more key word. Retrying only the
	// latest # is enough, since an earlier # could only take words that the
	// latest one can take too; this keeps patterns like "#.#.#.a" polynomial.
	pi, ki := 0, 0
	back, mark := -1, 0 // index of the latest # in p.words, and the key index it was tried at
	for ki < len(key) {
		if pi < len(p.words) {
			w := p.words[pi]
			switch {
			case w.kind == many:
				if pi == len(p.words)-1 {
					return true // a trailing # takes every remaining word
				}
				back, mark = pi, ki
				pi++
				continue
			case w.kind == one || w.text == key[ki]:
				pi++
				ki++
				continue
			}
		}
		if back < 0 {
			return false
		}
		mark++
		pi, ki = back+1, mark
	}
	for pi < len(p.words) && p.words[pi].kind == many {
		pi++
	}
	return pi == len(p.words)
}

// Key is a routing key split into words once, so that one message can be
// matched against many patterns cheaply. The zero Key is the empty routing
// key. A Key is immutable, so any number of goroutines may use it at once.
type Key struct {
	words []string
}

// SplitKey splits routingKey into its words. The empty routing key has no
// words, while "." has two empty ones.
func SplitKey(routingKey string) Key {
	if routingKey == "" {
		return Key{}
	}
	return Key{words: strings.Split(routingKey, ".")}
}

// Match reports whether pattern matches routingKey, as Compile and SplitKey
// followed by Pattern.Match would. The pattern need not be valid: it is taken
// literally, as RabbitMQ would take it, so "a*" matches only the key "a*".
// Match may be called concurrently.
func Match(pattern, routingKey string) bool {
	return compile(pattern).Match(SplitKey(routingKey))
}
