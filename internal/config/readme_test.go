package config

import (
	"os"
	"strings"
	"testing"
)

// TestREADMEListsEveryFlag keeps the README's configuration table in step
// with the flags: every flag of serve and dev has a row naming it and its
// environment variable, and every row names a flag that exists.
func TestREADMEListsEveryFlag(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{} // flag → its table row
	for _, line := range strings.Split(string(readme), "\n") {
		if !strings.HasPrefix(line, "| `--") {
			continue
		}
		// A row may name several flags: | `--tls-cert`, `--tls-key` | ...
		first := strings.SplitN(line, "|", 3)[1]
		for _, f := range strings.Split(first, ",") {
			name := strings.Trim(strings.TrimSpace(f), "`")
			rows[strings.TrimPrefix(name, "--")] = line
		}
	}
	known := map[string]bool{}
	for _, cmd := range []Command{Serve, Dev} {
		var allowed string
		_, specs := flagSet(cmd, &Config{}, &allowed, &problems{})
		for _, s := range specs {
			known[s.name] = true
			row, ok := rows[s.name]
			if !ok {
				t.Errorf("README's configuration table has no row for --%s (%s)", s.name, cmd)
				continue
			}
			if !strings.Contains(row, "`"+s.env+"`") {
				t.Errorf("README's row for --%s does not name its variable %s: %s", s.name, s.env, row)
			}
		}
	}
	for name := range rows {
		if !known[name] {
			t.Errorf("README's configuration table lists --%s, which no command has", name)
		}
	}
}
