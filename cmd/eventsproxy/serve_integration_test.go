//go:build integration

package main

import (
	"bytes"
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/rabbittest"
)

// TestServeLoginRefused starts serve against the real RabbitMQ with a
// wrong password: it fails at once, exit 1, with an ERROR that names the
// user and not the password.
func TestServeLoginRefused(t *testing.T) {
	t.Parallel()
	u, err := url.Parse(rabbittest.URL())
	if err != nil || u.User == nil {
		t.Fatalf("AMQP_URL %q has no user", rabbittest.URL())
	}
	user := u.User.Username()
	u.User = url.UserPassword(user, "wrong-password-hunter2")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	code := run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--amqp-url", u.String()}, envOf(nil), strings.NewReader(""), &stdout, &stderr)
	if ctx.Err() != nil {
		t.Fatalf("serve still running after a minute:\n%s", stderr.String())
	}
	logs := stderr.String()
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, `user \"`+user+`\"`) || strings.Contains(logs, "hunter2") {
		t.Errorf("logs must say at ERROR that user %q was refused, without the password:\n%s", user, logs)
	}
}
