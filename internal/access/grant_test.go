package access_test

import (
	"errors"
	"strings"
	"testing"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/topic"
)

func TestGrantsAllows(t *testing.T) {
	t.Parallel()
	gs, err := access.ParseGrants(`[
		{"exchange": "exchange/taskcluster-queue/v1/", "routingKeyPattern": "primary.#"},
		{"exchange": "exchange/other/v1/exact", "routingKeyPattern": "*.#"}
	]`)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		exchange, pattern string
		want              bool
	}{
		{"exchange/taskcluster-queue/v1/task-completed", "primary.abc.#", true},
		{"exchange/taskcluster-queue/v1/task-completed", "primary.#", true},
		{"exchange/taskcluster-queue/v1/task-completed", "primary", true},
		{"exchange/taskcluster-queue/v1/task-completed", "#", false},
		{"exchange/taskcluster-queue/v1/task-completed", "*.abc", false},
		{"exchange/taskcluster-queue/v1/", "primary.#", true},
		{"exchange/taskcluster-queue/v1", "primary.#", false},
		{"exchange/taskcluster-queue/v2/x", "primary.#", false},
		{"exchange/other/v1/exact", "#.*", true}, // the same keys as *.#
		{"exchange/other/v1/exact", "#", false},  // also the empty key
		{"exchange/other/v1/exactly", "a", false},
		{"exchange/other/v1/", "a", false},
	}
	for _, tc := range cases {
		b := binding.Binding{Exchange: tc.exchange, RoutingKeyPattern: tc.pattern}
		if got := gs.Allows(b); got != tc.want {
			t.Errorf("Allows(%v) = %v, want %v", b, got, tc.want)
		}
	}
}

func TestGrantsCheck(t *testing.T) {
	t.Parallel()
	gs, err := access.ParseGrants(`[{"exchange": "x/", "routingKeyPattern": "a.#"}]`)
	if err != nil {
		t.Fatal(err)
	}
	ok := binding.Binding{Exchange: "x/1", RoutingKeyPattern: "a.b"}
	bad := binding.Binding{Exchange: "x/2", RoutingKeyPattern: "b.#"}
	if err := gs.Check([]binding.Binding{ok}, false); err != nil {
		t.Errorf("Check: %v", err)
	}
	err = gs.Check([]binding.Binding{ok, bad}, false)
	var denied *access.DeniedError
	if !errors.As(err, &denied) || denied.Binding != bad {
		t.Fatalf("Check = %v, want a DeniedError for %v", err, bad)
	}
	want := `The token does not grant binding {"exchange":"x/2","routingKeyPattern":"b.#"}.`
	if err.Error() != want {
		t.Errorf("text %q, want %q", err, want)
	}
	err = gs.Check([]binding.Binding{bad}, true)
	if !strings.Contains(err.Error(), "needs a token") {
		t.Errorf("anonymous text %q", err)
	}
	var none access.Grants
	if none.Allows(ok) {
		t.Error("no grants allowed a binding")
	}
}

func TestParseGrantsRefuses(t *testing.T) {
	t.Parallel()
	for _, s := range []string{
		``, `{}`, `[1]`, `[{"exchange": "x"}]`, `[{"exchange": "", "routingKeyPattern": "#"}]`,
		`[{"exchange": "x", "routingKeyPattern": "a#"}]`, `[{"exchange": "x", "routingKeyPattern": 1}]`,
		`[{"exchange": "x", "routingKeyPatern": "#", "routingKeyPattern": "#"}]`,
	} {
		if _, err := access.ParseGrants(s); err == nil {
			t.Errorf("ParseGrants(%q) accepted it", s)
		}
	}
	gs, err := access.ParseGrants(`[]`)
	if err != nil || gs == nil || len(gs) != 0 {
		t.Errorf("ParseGrants([]) = %v, %v; want empty, non-nil grants", gs, err)
	}
}

// FuzzGrantCheck checks the grant check against brute force: a binding is
// allowed exactly when the grant names its exchange (exactly, or by a
// prefix ending in "/") and every routing key of a small universe that the
// binding's pattern matches, the grant's pattern matches too.
func FuzzGrantCheck(f *testing.F) {
	f.Add("x/", "a.#", "x/y", "a.b.#")
	f.Add("x", "*.#", "x", "#.*")
	f.Add("x/", "*.#.a", "x/", "#.a.a")
	f.Add("x/y", "#", "x/yz", "a")
	universe := keys([]string{"a", "b", "", "z"}, 7)
	f.Fuzz(func(t *testing.T, gx, gp, bx, bp string) {
		if !small(gp) || !small(bp) {
			return
		}
		gs, err := access.CompileGrants([]access.Grant{{Exchange: gx, RoutingKeyPattern: gp}})
		if err != nil {
			return
		}
		if topic.Validate(bp) != nil {
			return
		}
		got := gs.Allows(binding.Binding{Exchange: bx, RoutingKeyPattern: bp})
		want := gx == bx || (strings.HasSuffix(gx, "/") && strings.HasPrefix(bx, gx))
		for _, k := range universe {
			if !want {
				break
			}
			if topic.Match(bp, k) && !topic.Match(gp, k) {
				want = false
			}
		}
		if got != want {
			t.Fatalf("grant {%q, %q} allows {%q, %q}: %v; brute force says %v", gx, gp, bx, bp, got, want)
		}
	})
}

// small reports whether p has at most four words, each of them a, b, the
// empty word, * or #: the routing keys of keys' universe then tell apart
// any two such patterns ("z" stands for every other word).
func small(p string) bool {
	ws := strings.Split(p, ".")
	if len(ws) > 4 {
		return false
	}
	for _, w := range ws {
		switch w {
		case "a", "b", "", "*", "#":
		default:
			return false
		}
	}
	return true
}

// keys returns every routing key of up to n words from alphabet.
func keys(alphabet []string, n int) []string {
	out := []string{""}
	level := []string{""}
	for i := range n {
		var next []string
		for _, k := range level {
			for _, a := range alphabet {
				w := a
				if i > 0 {
					w = k + "." + a
				}
				next = append(next, w)
				out = append(out, w)
			}
		}
		level = next
	}
	return out
}
