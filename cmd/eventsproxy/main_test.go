package main

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"eventsproxy/internal/rabbittest"
)

// TestMain checks for leaked goroutines and, for the integration tests,
// starts a RabbitMQ node of the test binary's own (or uses AMQP_URL's).
func TestMain(m *testing.M) { rabbittest.Main(m) }

// checkRun runs the command line args with getenv, checks its exit code
// and that its output (stdout, or stderr when it fails) holds want, and
// returns that output.
func checkRun(t *testing.T, args []string, getenv func(string) string, code int, want string) string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	if got := run(context.Background(), args, getenv, nil, &stdout, &stderr); got != code {
		t.Fatalf("exit code %d, want %d; stderr %q", got, code, stderr.String())
	}
	out := stdout.String()
	if code != 0 {
		out = stderr.String()
	}
	if !strings.Contains(out, want) {
		t.Errorf("output %q does not contain %q", out, want)
	}
	return out
}
