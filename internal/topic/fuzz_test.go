package topic

import (
	"strings"
	"testing"
	"unicode/utf8"
)

// naiveMatch is a reference matcher written straight from the rules, with no
// cleverness: recursion over word slices, trying every split for #.
func naiveMatch(pattern, routingKey string) bool {
	return naiveWords(words(pattern), words(routingKey))
}

// words splits s as RabbitMQ does: the empty string has no words.
func words(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, ".")
}

func naiveWords(p, k []string) bool {
	if len(p) == 0 {
		return len(k) == 0
	}
	switch p[0] {
	case "#":
		for i := 0; i <= len(k); i++ {
			if naiveWords(p[1:], k[i:]) {
				return true
			}
		}
		return false
	case "*":
		return len(k) > 0 && naiveWords(p[1:], k[1:])
	default:
		return len(k) > 0 && p[0] == k[0] && naiveWords(p[1:], k[1:])
	}
}

func FuzzMatch(f *testing.F) {
	for _, tc := range matchCases {
		f.Add(tc.pattern, tc.key)
	}
	f.Add("#.#.#.#.a", "b.b.b.b.b.b.b.b")
	f.Add("*.#.*.#.*", "a.b.c")
	f.Add("a.#.*.b.#", "a.x.b.b")
	f.Fuzz(func(t *testing.T, pattern, key string) {
		// The reference takes time exponential in the number of # words.
		if strings.Count(pattern, "#") > 4 || strings.Count(key, ".") > 16 {
			return
		}
		want := naiveMatch(pattern, key)
		if got := Match(pattern, key); got != want {
			t.Errorf("Match(%q, %q) = %v, reference says %v", pattern, key, got, want)
		}
		p, err := Compile(pattern)
		if err != nil {
			return
		}
		if got := p.Match(SplitKey(key)); got != want {
			t.Errorf("Compile(%q).Match(SplitKey(%q)) = %v, reference says %v", pattern, key, got, want)
		}
	})
}

func FuzzValidate(f *testing.F) {
	for _, s := range []string{"", "#", "*", ".", "a.*.#", "a*", "#b", "a\n", "\xff", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, pattern string) {
		err := Validate(pattern)
		p, cerr := Compile(pattern)
		if (err == nil) != (cerr == nil) {
			t.Fatalf("Validate(%q) = %v but Compile error %v", pattern, err, cerr)
		}
		if err != nil {
			if p != nil {
				t.Errorf("Compile(%q) returned a Pattern with error %v", pattern, cerr)
			}
			if cerr.Error() != err.Error() {
				t.Errorf("Compile error %q, Validate error %q", cerr, err)
			}
			checkClientText(t, err.Error())
			if !utf8.ValidString(err.Error()) {
				t.Errorf("error text %q is not valid UTF-8", err)
			}
			return
		}
		if len(pattern) > MaxLength || !utf8.ValidString(pattern) {
			t.Errorf("Validate accepted %q", pattern)
		}
		for _, w := range strings.Split(pattern, ".") {
			if len(w) > 1 && strings.ContainsAny(w, "*#") {
				t.Errorf("Validate accepted word %q of %q", w, pattern)
			}
		}
		if p.String() != pattern {
			t.Errorf("String() = %q, want %q", p.String(), pattern)
		}
	})
}
