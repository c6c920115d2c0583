package randomname

import (
	"strings"
	"testing"
)

func TestNew(t *testing.T) {
	a, b := New("q/"), New("q/")
	if !strings.HasPrefix(a, "q/") || len(a) != len("q/")+16 {
		t.Fatalf("New(%q) = %q, want the prefix and 16 hex digits", "q/", a)
	}
	if a == b {
		t.Fatalf("two names are both %q", a)
	}
}
