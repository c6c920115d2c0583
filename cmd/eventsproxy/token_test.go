package main

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
)

func TestToken(t *testing.T) {
	t.Parallel()
	const secret = "a secret of thirty-two bytes: ok"
	getenv := func(k string) string {
		return map[string]string{"TOKEN_SECRETS": secret + ",older", "TOKEN_AUDIENCE": "eventsproxy"}[k]
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"token", "--sub", "ci", "--ttl", "10m",
		"--grant", "exchange/taskcluster-queue/v1/=primary.#", "--grant", "amq.topic=a.*"}, getenv, nil, &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr.String())
	}
	tok := strings.TrimSpace(stdout.String())
	az, err := access.Open(access.Config{HMACSecrets: [][]byte{[]byte(secret)}, Audience: "eventsproxy"},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer az.Close()
	r := httptest.NewRequest("GET", "/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	p, err := az.Authorize(r)
	if err != nil {
		t.Fatalf("the service refuses the minted token: %v", err)
	}
	if p.Subject != "ci" || time.Until(p.Expiry) > 11*time.Minute || time.Until(p.Expiry) < 9*time.Minute {
		t.Errorf("subject %q, expiry %v", p.Subject, p.Expiry)
	}
	for _, tc := range []struct {
		b    binding.Binding
		want bool
	}{
		{binding.Binding{Exchange: "exchange/taskcluster-queue/v1/task-completed", RoutingKeyPattern: "primary.x.#"}, true},
		{binding.Binding{Exchange: "amq.topic", RoutingKeyPattern: "a.b"}, true},
		{binding.Binding{Exchange: "amq.topic", RoutingKeyPattern: "#"}, false},
	} {
		if err := p.Check([]binding.Binding{tc.b}); (err == nil) != tc.want {
			t.Errorf("%v: %v", tc.b, err)
		}
	}
}

func TestTokenRefuses(t *testing.T) {
	t.Parallel()
	withSecret := func(k string) string {
		if k == "TOKEN_SECRETS" {
			return "a secret of thirty-two bytes: ok"
		}
		return ""
	}
	noEnv := func(string) string { return "" }
	for _, tc := range []struct {
		args   []string
		getenv func(string) string
		want   string
	}{
		{[]string{"token"}, withSecret, "--grant"},
		{[]string{"token", "--grant", "x=#"}, noEnv, "no secret"},
		{[]string{"token", "--grant", "x"}, withSecret, "--grant \"x\" has no '='"},
		{[]string{"token", "--grant", "x=a#"}, withSecret, "--grant"},
		{[]string{"token", "--grant", "x=#", "--ttl", "-1m"}, withSecret, "expiry"},
		{[]string{"token", "--grant", "x=#", "--alg", "RS256"}, withSecret, "RS256"},
	} {
		var stdout, stderr bytes.Buffer
		if code := run(context.Background(), tc.args, tc.getenv, nil, &stdout, &stderr); code != 2 || !strings.Contains(stderr.String(), tc.want) || stdout.Len() != 0 {
			t.Errorf("%q: exit %d, stderr %q, stdout %q; want 2 and %q", tc.args, code, stderr.String(), stdout.String(), tc.want)
		}
	}
	var stdout bytes.Buffer
	if code := run(context.Background(), []string{"token", "--help"}, noEnv, nil, &stdout, io.Discard); code != 0 || !strings.Contains(stdout.String(), "--grant") {
		t.Errorf("--help: exit %d, %q", code, stdout.String())
	}
}
