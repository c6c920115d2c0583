package main

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"
)

func envOf(m map[string]string) func(string) string { return func(k string) string { return m[k] } }

func TestServeRefusesBadConfiguration(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
	}{
		{"unknown flag", []string{"serve", "--amqp-url", "amqp://h", "--no-such-flag"}, nil, []string{"no-such-flag"}},
		{"no broker", []string{"serve"}, nil, []string{"--amqp-url"}},
		{"everything wrong at once", []string{"serve", "--amqp-url", "http://u:hunter2@h", "--ping-interval", "1ms", "--max-connections", "-1", "--tls-cert", "c.pem"},
			map[string]string{"WRITE_TIMEOUT": "later"},
			[]string{"WRITE_TIMEOUT", "must start with amqp://", "--ping-interval", "--max-connections", "--tls-cert and --tls-key"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), tc.args, envOf(tc.env), strings.NewReader(""), &stdout, &stderr)
			if code != 2 {
				t.Fatalf("exit code %d, want 2; stderr:\n%s", code, stderr.String())
			}
			for _, w := range tc.want {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr.String())
				}
			}
			if strings.Contains(stderr.String(), "hunter2") {
				t.Errorf("stderr shows the password:\n%s", stderr.String())
			}
		})
	}
}

// TestServeLogsNoPassword runs serve against a broker that is not there
// and checks that its logs name the broker without the password.
func TestServeLogsNoPassword(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var stderr syncBuffer
	stderr.notify = make(chan struct{}, 1)
	done := make(chan int, 1)
	go func() {
		// Port 1 on loopback refuses connections at once.
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--amqp-url", "amqp://user:hunter2@127.0.0.1:1/"}, envOf(nil), strings.NewReader(""), &bytes.Buffer{}, &stderr)
	}()
	for !strings.Contains(stderr.String(), "reconnecting") {
		select {
		case <-stderr.notify:
		case <-ctx.Done():
			t.Fatalf("no reconnect logged:\n%s", stderr.String())
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit code %d after the context ended, want 0", code)
	}
	logs := stderr.String()
	if strings.Contains(logs, "hunter2") || !strings.Contains(logs, "user:xxxxx@127.0.0.1:1") {
		t.Fatalf("logs must name the broker with its password redacted:\n%s", logs)
	}
}

// TestServeAndDevMessages checks what a mistyped command line prints:
// the problem once, and a hint, not the flag package's dump.
func TestServeAndDevMessages(t *testing.T) {
	t.Parallel()
	for _, cmd := range []string{"serve", "dev"} {
		t.Run(cmd, func(t *testing.T) {
			t.Parallel()
			var stdout, stderr bytes.Buffer
			code := run(context.Background(), []string{cmd, "--no-such-flag"}, envOf(map[string]string{"AMQP_URL": "amqp://h"}), strings.NewReader(""), &stdout, &stderr)
			want := "eventsproxy " + cmd + ": unknown flag --no-such-flag\nRun 'eventsproxy " + cmd + " --help' for the flags.\n"
			if code != 2 || stderr.String() != want || stdout.Len() != 0 {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 2 and stderr:\n%s", code, stdout.String(), stderr.String(), want)
			}

			stdout.Reset()
			stderr.Reset()
			code = run(context.Background(), []string{cmd, "--help"}, envOf(nil), strings.NewReader(""), &stdout, &stderr)
			if code != 0 || stderr.Len() != 0 || !strings.HasPrefix(stdout.String(), "Usage: eventsproxy "+cmd) || !strings.Contains(stdout.String(), "\n  --listen ADDRESS") {
				t.Errorf("--help: exit %d, stderr %q, stdout:\n%s", code, stderr.String(), stdout.String())
			}
		})
	}
}

func TestServeRefusesBadPORT(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"serve"}, envOf(map[string]string{"AMQP_URL": "amqp://h", "PORT": "abc", "PING_INTERVAL": "5"}), strings.NewReader(""), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), `PORT="abc" is not a port number`) || !strings.Contains(stderr.String(), `PING_INTERVAL="5" needs a unit`) {
		t.Fatalf("exit %d, stderr:\n%s", code, stderr.String())
	}
}

// TestBusyPort runs serve and dev on an address in use: each says so and
// suggests --listen.
func TestBusyPort(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	for _, cmd := range []string{"serve", "dev"} {
		var stdout, stderr bytes.Buffer
		code := run(context.Background(), []string{cmd, "--listen", addr}, envOf(map[string]string{"AMQP_URL": "amqp://127.0.0.1:1/"}), strings.NewReader(""), &stdout, &stderr)
		if code != 1 || !strings.Contains(stderr.String(), addr+" is in use") || !strings.Contains(stderr.String(), "--listen 127.0.0.1:0") {
			t.Errorf("%s: exit %d, stderr:\n%s", cmd, code, stderr.String())
		}
	}
}

// TestServeHasNoPublishEndpoint checks that only dev takes messages over
// HTTP: serve answers POST /dev/publish as any unknown path.
func TestServeHasNoPublishEndpoint(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	stderr := &syncBuffer{notify: make(chan struct{}, 1)}
	done := make(chan int, 1)
	go func() {
		done <- run(ctx, []string{"serve", "--listen", "127.0.0.1:0", "--amqp-url", "amqp://127.0.0.1:1/"}, envOf(nil), strings.NewReader(""), &bytes.Buffer{}, stderr)
	}()
	url := regexp.MustCompile(`msg=listening .*url=(http://\S+)`)
	var m []string
	for m == nil {
		select {
		case <-stderr.notify:
			m = url.FindStringSubmatch(stderr.String())
		case <-ctx.Done():
			t.Fatalf("serve did not log where it listens:\n%s", stderr.String())
		}
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := client.Post(m[1]+"/dev/publish?exchange=amq.topic&routingKey=a", "application/json", strings.NewReader("{}"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST /dev/publish on serve: %s, want 404", resp.Status)
	}
	cancel()
	if code := <-done; code != 0 {
		t.Errorf("exit code %d", code)
	}
}
