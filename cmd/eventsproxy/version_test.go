package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func noEnvironment(string) string { return "" }

func TestVersion(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version"}, noEnvironment, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	re := regexp.MustCompile(`^eventsproxy \S+ \(\S+, go\S+\)\n$`)
	if !re.MatchString(stdout.String()) {
		t.Errorf("stdout = %q, want to match %s", stdout.String(), re)
	}
}

func TestVersionJSON(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	if code := run(context.Background(), []string{"version", "--json"}, noEnvironment, nil, &stdout, &stderr); code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr.String())
	}
	var got map[string]string
	if err := json.Unmarshal(stdout.Bytes(), &got); err != nil {
		t.Fatalf("stdout %q: %v", stdout.String(), err)
	}
	for _, k := range []string{"version", "commit", "go"} {
		if got[k] == "" {
			t.Errorf("%s missing from %s", k, stdout.String())
		}
	}
}

func TestVersionUsage(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout when code is 0, else in stderr
	}{
		{"help", []string{"version", "--help"}, 0, "Usage: eventsproxy version"},
		{"unknown flag", []string{"version", "--nope"}, 2, "flag provided but not defined"},
		{"argument", []string{"version", "extra"}, 2, "unexpected arguments"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			checkRun(t, tt.args, noEnvironment, tt.code, tt.out)
		})
	}
}

// TestVersionLinkTime builds the binary with the -ldflags that release
// builds use, so that a renamed variable or package cannot silently leave
// releases saying "dev".
func TestVersionLinkTime(t *testing.T) {
	t.Parallel()
	// go test puts GOROOT/bin first in the test's PATH.
	goTool, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("the go tool is needed to build the binary: %v", err)
	}
	bin := filepath.Join(t.TempDir(), "eventsproxy")
	build := exec.Command(goTool, "build", "-o", bin, "-ldflags",
		"-X eventsproxy/internal/version.Version=v9.8.7 -X eventsproxy/internal/version.Commit=feedface", ".")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatalf("eventsproxy version: %v", err)
	}
	want := "eventsproxy v9.8.7 (feedface, go"
	if !strings.HasPrefix(string(out), want) {
		t.Errorf("output %q, want it to start with %q", out, want)
	}
}
