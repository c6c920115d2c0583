package topic

import "testing"

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
