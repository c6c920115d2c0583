package topic

import (
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// sharedCasesFile holds matching cases that every matcher of the project
// reads: this package's and the JavaScript client's (clients/js).
const sharedCasesFile = "testdata/match-cases.json"

var update = flag.Bool("update", false, "rewrite "+sharedCasesFile)

// sharedCase is one row of sharedCasesFile.
type sharedCase struct {
	Name    string `json:"name"`
	Pattern string `json:"pattern"`
	Key     string `json:"key"`
	Want    bool   `json:"want"`
}

// sharedCases returns matchCases (the RabbitMQ-checked table and more) and
// generated cases over a small alphabet, where empty words, runs of # and
// backtracking are frequent, each with naiveMatch's answer.
func sharedCases() []sharedCase {
	var cases []sharedCase
	for _, tc := range matchCases {
		cases = append(cases, sharedCase{tc.name, tc.pattern, tc.key, tc.want})
	}
	rng := rand.New(rand.NewPCG(15, 1))
	join := func(alphabet []string) string {
		w := make([]string, rng.IntN(6))
		for i := range w {
			w[i] = alphabet[rng.IntN(len(alphabet))]
		}
		return strings.Join(w, ".")
	}
	seen := map[[2]string]bool{}
	for _, tc := range cases {
		seen[[2]string{tc.Pattern, tc.Key}] = true
	}
	for hits, misses := 0, 0; hits < 200 || misses < 200; {
		p := join([]string{"a", "b", "", "*", "#", "#"})
		k := join([]string{"a", "b", ""})
		if seen[[2]string{p, k}] {
			continue
		}
		want := naiveMatch(p, k)
		if want && hits >= 200 || !want && misses >= 200 {
			continue
		}
		seen[[2]string{p, k}] = true
		if want {
			hits++
		} else {
			misses++
		}
		cases = append(cases, sharedCase{fmt.Sprintf("generated %d", hits+misses), p, k, want})
	}
	return cases
}

func encodeSharedCases(tb testing.TB) []byte {
	tb.Helper()
	var b bytes.Buffer
	b.WriteString("{\n  \"about\": \"RabbitMQ topic matching: pattern, routing key, whether RabbitMQ routes. Written by go test ./internal/topic -run SharedCases -update; read by internal/topic and clients/js.\",\n  \"cases\": [\n")
	for i, tc := range sharedCases() {
		line, err := json.Marshal(tc)
		if err != nil {
			tb.Fatal(err)
		}
		b.WriteString("    ")
		b.Write(line)
		if i < len(sharedCases())-1 {
			b.WriteString(",")
		}
		b.WriteString("\n")
	}
	b.WriteString("  ]\n}\n")
	return b.Bytes()
}

func TestSharedCases(t *testing.T) {
	want := encodeSharedCases(t)
	if *update {
		if err := os.WriteFile(sharedCasesFile, want, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	got, err := os.ReadFile(sharedCasesFile)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s is out of date: run go test ./internal/topic -run SharedCases -update", sharedCasesFile)
	}
	var doc struct{ Cases []sharedCase }
	if err := json.Unmarshal(got, &doc); err != nil {
		t.Fatal(err)
	}
	for _, tc := range doc.Cases {
		if m := Match(tc.Pattern, tc.Key); m != tc.Want {
			t.Errorf("%s: Match(%q, %q) = %v, want %v", tc.Name, tc.Pattern, tc.Key, m, tc.Want)
		}
		if m := naiveMatch(tc.Pattern, tc.Key); m != tc.Want {
			t.Errorf("%s: naiveMatch(%q, %q) = %v, want %v", tc.Name, tc.Pattern, tc.Key, m, tc.Want)
		}
	}
}
