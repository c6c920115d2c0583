//go:build integration

package clientjs

import (
	"os/exec"
	"path/filepath"
	"testing"
)

// TestNode runs the library's own tests (test/*.test.js) with Node.js's test
// runner, so that the suite's command runs them too.
func TestNode(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node (Node.js 20 or newer) is not on PATH: %v", err)
	}
	files, err := filepath.Glob(filepath.Join("test", "*.test.js"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no test/*.test.js: %v", err)
	}
	cmd := exec.Command(node, append([]string{"--test", "--test-reporter=spec", "--test-timeout=60000"}, files...)...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("node --test: %v\n%s", err, out)
	}
	t.Logf("%s", out)
}
