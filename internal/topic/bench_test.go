package topic

import (
	"fmt"
	"strconv"
	"testing"
)

func BenchmarkMatch(b *testing.B) {
	for _, pattern := range []string{
		"primary.#",
		"#.gecko-level-3.#",
		"primary.*.*.*.*.*.gecko-t-linux-large.#",
		"primary.*.*.*.*.*.*.*.*.*",
		"#.#.#.#.#.#.a",
		"route.index.#",
	} {
		b.Run(pattern, func(b *testing.B) {
			p, err := Compile(pattern)
			if err != nil {
				b.Fatal(err)
			}
			k := SplitKey(pulseKey)
			b.ReportAllocs()
			for b.Loop() {
				p.Match(k)
			}
		})
	}
}

func BenchmarkSplitKey(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		SplitKey(pulseKey)
	}
}

func BenchmarkValidate(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if err := Validate("primary.*.*.*.*.*.gecko-t-linux-large.#"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkTrieCovering looks for the covers of a new pattern among 100 and
// 10,000 patterns of the kinds Pulse users bind (a task's, a worker type's,
// a scheduler's, an index route's) and primary.#: the cost of a subscribe's
// search for a bound key that serves it already, which should not grow with
// the number of patterns.
func BenchmarkTrieCovering(b *testing.B) {
	for _, n := range []int{100, 10000} {
		var tr Trie[string]
		tr.Insert(compile("primary.#"), "primary.#")
		for i := 1; tr.Len() < n; i++ {
			var p string
			switch i % 10 {
			case 7:
				p = "primary.*.*.*.*.*.worker-type-" + strconv.Itoa(i) + ".#"
			case 8:
				p = "#.scheduler-" + strconv.Itoa(i) + ".#"
			case 9:
				p = "route.index.project.p" + strconv.Itoa(i) + ".#"
			default:
				p = "primary.task" + strconv.Itoa(i) + ".#"
			}
			tr.Insert(compile(p), p)
		}
		for _, tc := range []struct{ name, q string }{
			{"stored-task", "primary.task5.#"},               // covered by itself and primary.#
			{"new-task", "primary.YTpD5kiRQt2iJbUbA8sUvw.#"}, // covered by primary.#
			{"uncovered-route", "route.index.gecko.v2.#"},    // covered by nothing
			{"pulse-key", pulseKey},                          // every kind may cover a literal key
		} {
			b.Run(fmt.Sprintf("patterns=%d/%s", n, tc.name), func(b *testing.B) {
				p := compile(tc.q)
				found := 0
				b.ReportAllocs()
				for b.Loop() {
					tr.Covering(p, func(string) bool {
						found++
						return true
					})
				}
				if (found == 0) != (tc.name == "uncovered-route") {
					b.Fatalf("%d covers of %q", found, tc.q)
				}
			})
		}
	}
}
