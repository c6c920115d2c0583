package topic

import (
	"strings"
	"testing"
)

// matchCases holds every row of the table in NOTES-AMQP.md, checked on a real
// RabbitMQ, and a few more.
var matchCases = []struct {
	name, pattern, key string
	want               bool
}{
	// NOTES-AMQP.md, row by row.
	{"hash matches empty key", "#", "", true},
	{"hash matches two empty words", "#", ".", true},
	{"star does not match empty key", "*", "", false},
	{"star does not match two empty words", "*", ".", false},
	{"two stars match two empty words", "*.*", ".", true},
	{"star hash does not match empty key", "*.#", "", false},
	{"hash star matches one word", "#.*", "a", true},
	{"two hashes match empty key", "#.#", "", true},
	{"trailing hash matches zero words", "a.#", "a", true},
	{"trailing hash matches an empty word", "a.#", "a.", true},
	{"leading hash matches zero words", "#.a", "a", true},
	{"hashes around a word", "#.b.#", "b", true},
	{"inner hash matches zero words", "a.#.b", "a.b", true},
	{"two inner hashes match zero words", "a.#.#.b", "a.b", true},
	{"inner star needs a word", "a.*.b", "a.b", false},
	{"inner star matches an empty word", "a.*.b", "a..b", true},
	{"literal empty word", "a..b", "a..b", true},
	{"trailing empty word is a word", "a.b", "a.b.", false},
	{"empty pattern matches empty key", "", "", true},
	{"empty pattern does not match a word", "", "a", false},
	{"star inside a word is literal", "a*", "ab", false},
	{"hash inside a word is literal", "a#", "ab", false},

	// More.
	{"literal", "a.b.c", "a.b.c", true},
	{"literal differs", "a.b.c", "a.b.d", false},
	{"literal shorter key", "a.b.c", "a.b", false},
	{"literal longer key", "a.b", "a.b.c", false},
	{"empty pattern does not match two empty words", "", ".", false},
	{"empty word does not match empty key", ".", "", false},
	{"star matches one word", "*", "a", true},
	{"star matches a single empty word", "*.a", ".a", true},
	{"star does not match two words", "*", "a.b", false},
	{"hash matches many words", "#", "a.b.c.d", true},
	{"star hash matches one word", "*.#", "a", true},
	{"star hash matches many words", "*.#", "a.b.c", true},
	{"hash star does not match empty key", "#.*", "", false},
	{"hash star matches two empty words", "#.*", ".", true},
	{"hash in the middle takes many words", "a.#.b", "a.x.y.z.b", true},
	{"hash in the middle wrong end", "a.#.b", "a.x.y.z.c", false},
	{"hash backtracks", "#.a.b", "a.a.b", true},
	{"hash backtracks twice", "#.a.#.a.b", "a.x.a.a.b", true},
	{"hash then star then word", "#.*.c", "a.b.c", true},
	{"hash then stars need words", "#.*.*.c", "c", false},
	{"star after hash", "a.#.*", "a", false},
	{"star after hash takes last", "a.#.*", "a.b", true},
	{"repeated hashes", "#.#.#.#.#.#.a", "b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.b", false},
	{"repeated hashes match", "#.#.#.#.#.#.a", "b.b.b.b.b.b.b.b.b.b.b.b.b.b.b.a", true},
	{"literal wildcard chars", "a*.#", "a*.b", true},
	{"pulse prefix", "primary.#", pulseKey, true},
	{"pulse middle", "#.gecko-level-3.#", pulseKey, true},
	{"pulse stars", "primary.*.*.*.*.*.gecko-t-linux-large.#", pulseKey, true},
	{"pulse stars miss", "primary.*.*.*.*.gecko-t-linux-large.#", pulseKey, false},
	{"pulse last word", "#._", pulseKey, true},
}

const pulseKey = "primary.YTpD5kiRQt2iJbUbA8sUvw.0.us-east-1.i-0abc.aws-provisioner-v1.gecko-t-linux-large.gecko-level-3.VrvpkJeBQ9mfez0-ezFBPw._"

func TestMatch(t *testing.T) {
	t.Parallel()
	for _, tc := range matchCases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := Match(tc.pattern, tc.key); got != tc.want {
				t.Errorf("Match(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
			}
			if got := naiveMatch(tc.pattern, tc.key); got != tc.want {
				t.Errorf("naiveMatch(%q, %q) = %v, want %v", tc.pattern, tc.key, got, tc.want)
			}
			p, err := Compile(tc.pattern)
			if err != nil {
				return // a literal like "a*" is for Match only
			}
			if got := p.Match(SplitKey(tc.key)); got != tc.want {
				t.Errorf("Compile(%q).Match(SplitKey(%q)) = %v, want %v", tc.pattern, tc.key, got, tc.want)
			}
			if p.String() != tc.pattern {
				t.Errorf("String() = %q, want %q", p.String(), tc.pattern)
			}
		})
	}
}

func TestZeroKeyIsEmpty(t *testing.T) {
	t.Parallel()
	for _, pattern := range []string{"", "#", "*", "#.#", "a"} {
		p, err := Compile(pattern)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := p.Match(Key{}), p.Match(SplitKey("")); got != want {
			t.Errorf("%q: Match(Key{}) = %v, Match(SplitKey(\"\")) = %v", pattern, got, want)
		}
	}
}

func TestMatchDoesNotAllocate(t *testing.T) {
	p, err := Compile("#.gecko-level-3.#")
	if err != nil {
		t.Fatal(err)
	}
	k := SplitKey(pulseKey)
	if n := testing.AllocsPerRun(100, func() { p.Match(k) }); n != 0 {
		t.Errorf("Match allocates %v times per call, want 0", n)
	}
}

func TestValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, pattern string
		wantErr       string // substring of the error text; "" for valid
	}{
		{"empty", "", ""},
		{"hash", "#", ""},
		{"star", "*", ""},
		{"dot", ".", ""},
		{"empty words", "a..b", ""},
		{"pulse", "primary.*.*.*.*.*.gecko-t-linux-large.#", ""},
		{"unicode", "route.index.gecko.ünïcode.#", ""},
		{"other punctuation", "a-b_c/d:e.#", ""},
		{"max length", strings.Repeat("a", MaxLength), ""},
		{"too long", strings.Repeat("a", MaxLength+1), "is 256 bytes long, more than the 255 allowed"},
		{"invalid utf-8", "a.\xff.b", "not valid UTF-8"},
		{"newline", "a.\n.b", "control character"},
		{"nul", "a\x00", "control character"},
		{"tab", "a\tb", "control character"},
		{"del", "a\x7f", "control character"},
		{"star in word", "a*", `routingKeyPattern "a*" is not a valid topic pattern: * and # must stand alone as a whole word`},
		{"hash in word", "a.#b.c", "* and # must stand alone"},
		{"two stars", "a.**", "* and # must stand alone"},
		{"star hash", "*#", "* and # must stand alone"},
		{"trailing word", "a.b#", "* and # must stand alone"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			err := Validate(tc.pattern)
			_, cerr := Compile(tc.pattern)
			if (err == nil) != (cerr == nil) {
				t.Errorf("Validate error %v but Compile error %v", err, cerr)
			}
			if tc.wantErr == "" {
				if err != nil {
					t.Errorf("Validate(%q) = %v, want nil", tc.pattern, err)
				}
				return
			}
			if err == nil {
				t.Fatalf("Validate(%q) = nil, want an error containing %q", tc.pattern, tc.wantErr)
			}
			if !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("Validate(%q) = %q, want it to contain %q", tc.pattern, err, tc.wantErr)
			}
			checkClientText(t, err.Error())
		})
	}
}

func TestQuoteTruncates(t *testing.T) {
	t.Parallel()
	err := Validate(strings.Repeat("é", 200)) // 400 bytes
	if err == nil {
		t.Fatal("Validate accepted 400 bytes")
	}
	if len(err.Error()) > 200 {
		t.Errorf("error text is %d bytes long, want it short: %s", len(err.Error()), err)
	}
	if !strings.Contains(err.Error(), `é"...`) {
		t.Errorf("error text %q does not end the value with a whole rune and ...", err)
	}
	checkClientText(t, err.Error())
}

// checkClientText fails t unless text can be sent to a client as one line.
func checkClientText(tb testing.TB, text string) {
	tb.Helper()
	if text == "" || strings.ContainsAny(text, "\r\n") {
		tb.Errorf("error text %q is empty or not a single line", text)
	}
}
