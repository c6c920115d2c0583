//go:build integration

package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/server"
)

// checkLeaks fails the test if goroutines that it started outlive it,
// once every cleanup registered after this call has run.
func checkLeaks(t *testing.T) {
	t.Helper()
	ignore := goleak.IgnoreCurrent()
	t.Cleanup(func() { goleak.VerifyNone(t, ignore) })
}

// startProxyService runs the real service, as `eventsproxy serve` does, on the
// local RabbitMQ until the test ends, and returns its base URL.
func startProxyService(t *testing.T) string {
	t.Helper()
	cfg, err := config.Load(config.Serve, []string{
		"--listen", "127.0.0.1:0",
		"--amqp-url", rabbittest.URL(),
		"--queue-prefix", rabbittest.Unique("eventsproxy-test/") + "/",
		"--shutdown-timeout", "5s",
	}, noEnvironment)
	if err != nil {
		t.Fatalf("config: %v", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	d := broker.AMQP(broker.AMQPConfig{
		URL:            cfg.AMQPURL,
		ConnectionName: "eventsproxy test " + t.Name(),
		QueuePrefix:    cfg.QueuePrefix,
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if os.Getenv("TEST_LOG") != "" {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, d, ln, log, func(url string) { urls <- url }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	select {
	case url := <-urls:
		return url
	case err := <-done:
		t.Fatalf("server.Run returned early: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("the service was not serving within 15s")
	}
	return ""
}

// watchedBuffer collects what one goroutine writes while another waits for
// text in it.
type watchedBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // one slot: a write since the last look
}

func newWatchedBuffer() *watchedBuffer { return &watchedBuffer{written: make(chan struct{}, 1)} }

func (b *watchedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *watchedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until s has been written, failing the test after d.
func (b *watchedBuffer) waitFor(t testing.TB, s string, d time.Duration) {
	t.Helper()
	deadline := time.After(d)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.written:
		case <-deadline:
			t.Fatalf("%q not written within %v; have %q", s, d, b.String())
		}
	}
}

// proc is a run of the eventsproxy command in a goroutine.
type proc struct {
	stdout, stderr *watchedBuffer
	code           chan int
}

func startCommand(ctx context.Context, args []string, getenv func(string) string) *proc {
	c := &proc{stdout: newWatchedBuffer(), stderr: newWatchedBuffer(), code: make(chan int, 1)}
	go func() { c.code <- run(ctx, args, getenv, nil, c.stdout, c.stderr) }()
	return c
}

// wait returns the exit code, failing the test after d.
func (c *proc) wait(t testing.TB, d time.Duration) int {
	t.Helper()
	select {
	case code := <-c.code:
		return code
	case <-time.After(d):
		t.Fatalf("the command did not exit within %v; stdout %q, stderr %q", d, c.stdout.String(), c.stderr.String())
	}
	return -1
}

// runPublish runs `eventsproxy publish` and returns its exit code and stderr.
func runPublish(t testing.TB, args []string, getenv func(string) string, stdin io.Reader) (int, string) {
	t.Helper()
	var stdout, stderr bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	code := run(ctx, append([]string{"publish"}, args...), getenv, stdin, &stdout, &stderr)
	if stdout.Len() > 0 {
		t.Errorf("publish wrote %q to stdout", stdout.String())
	}
	return code, stderr.String()
}

func TestListenPublish(t *testing.T) {
	checkLeaks(t)
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ex := rabbittest.Exchange(t, rabbittest.Channel(t, conn), "eventsproxy-test-listen/")
	url := startProxyService(t)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := startCommand(ctx, []string{"listen", "--url", url, "--bind", ex + "=build.#", "--json", "--count", "2", "--timeout", "10s"}, noEnvironment)
	listen.stderr.waitFor(t, "listening: 1 binding\n", 15*time.Second)

	// A body as an argument, with CC routes, the URL as a flag.
	code, stderr := runPublish(t, []string{"--amqp-url", rabbittest.URL(), "--exchange", ex, "--routing-key", "build.1.done",
		"--cc", "route.index.build.latest", "--cc", "other.key", `{"build": 1, "state": "done"}`}, noEnvironment, nil)
	if code != 0 || !strings.Contains(stderr, "confirmed") {
		t.Fatalf("publish 1: exit code %d, stderr %q", code, stderr)
	}
	// A message that no binding matches: the broker drops it and says so.
	code, stderr = runPublish(t, []string{"--amqp-url", rabbittest.URL(), "--exchange", ex, "--routing-key", "deploy.1", "{}"}, noEnvironment, nil)
	if code != 0 || !strings.Contains(stderr, "the broker dropped it") {
		t.Fatalf("unroutable publish: exit code %d, stderr %q", code, stderr)
	}
	// A body from stdin that is not JSON, the URL from AMQP_URL.
	getenv := func(k string) string {
		if k == "AMQP_URL" {
			return rabbittest.URL()
		}
		return ""
	}
	code, stderr = runPublish(t, []string{"--exchange", ex, "--routing-key", "build.2.done", "--content-type", "text/plain", "-"},
		getenv, strings.NewReader("line one\nline two"))
	if code != 0 {
		t.Fatalf("publish 2: exit code %d, stderr %q", code, stderr)
	}

	if code := listen.wait(t, 15*time.Second); code != 0 {
		t.Fatalf("listen: exit code %d, stderr %q", code, listen.stderr.String())
	}
	want := fmt.Sprintf(`{"exchange":%q,"routingKey":"build.1.done","redelivered":false,"routes":["index.build.latest"],"payload":{"build":1,"state":"done"}}`+"\n"+
		`{"exchange":%q,"routingKey":"build.2.done","redelivered":false,"routes":[],"payload":"line one\nline two"}`+"\n", ex, ex)
	if got := listen.stdout.String(); got != want {
		t.Errorf("listen stdout =\n%s\nwant\n%s", got, want)
	}
}

func TestListenServerError(t *testing.T) {
	checkLeaks(t)
	url := startProxyService(t)
	missing := rabbittest.Unique("eventsproxy-test-missing/")
	listen := startCommand(context.Background(), []string{"listen", "--url", url, "--bind", missing + "=#"}, noEnvironment)
	if code := listen.wait(t, 15*time.Second); code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	want := fmt.Sprintf("eventsproxy listen: server error: Exchange %q does not exist.\n", missing)
	if got := listen.stderr.String(); got != want {
		t.Errorf("stderr %q, want %q", got, want)
	}
	if listen.stdout.String() != "" {
		t.Errorf("stdout %q, want nothing", listen.stdout.String())
	}
}

func TestListenInterrupt(t *testing.T) {
	checkLeaks(t)
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ex := rabbittest.Exchange(t, rabbittest.Channel(t, conn), "eventsproxy-test-listen/")
	url := startProxyService(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	listen := startCommand(ctx, []string{"listen", "--url", url + "/api/events/v1/connect", "--bind", ex + "=#"}, noEnvironment)
	listen.stderr.waitFor(t, "listening: 1 binding\n", 15*time.Second)
	cancel() // as SIGINT does through main's signal.NotifyContext
	if code := listen.wait(t, 10*time.Second); code != 0 {
		t.Errorf("exit code %d after interrupt, want 0; stderr %q", code, listen.stderr.String())
	}
}

func TestListenUsage(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		out  string // in stdout when code is 0, else in stderr
	}{
		{"help", []string{"--help"}, 0, "Exit codes:"},
		{"no bind", []string{"--url", "http://127.0.0.1:1"}, 2, "at least one --bind"},
		{"bad bind", []string{"--url", "http://127.0.0.1:1", "--bind", "amq.topic"}, 2, `--bind "amq.topic" has no '='`},
		{"cannot connect", []string{"--url", "http://127.0.0.1:1", "--bind", "amq.topic=#"}, 3, "cannot connect to http://127.0.0.1:1/api/events/v1/connect/"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkRun(t, append([]string{"listen"}, tt.args...), noEnvironment, tt.code, tt.out)
		})
	}
}
