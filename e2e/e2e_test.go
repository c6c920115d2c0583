//go:build integration

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/rabbittest"
)

// How long the tests wait. They wait for events, never for time; these are
// only the deadlines after which a test fails, generous because `make test`
// runs other packages' tests on the same two cores.
const (
	// proxyStartTimeout bounds the wait for the proxy's "listening" log line.
	proxyStartTimeout = 30 * time.Second
	// proxyStopTimeout bounds the wait for the proxy to exit after SIGTERM.
	proxyStopTimeout = 30 * time.Second
	// eventTimeout bounds the wait for any one event at a client.
	eventTimeout = 60 * time.Second
	// browserStartTimeout bounds the wait for Chromium's first event, which
	// includes starting the browser.
	browserStartTimeout = 120 * time.Second
	// clientStopTimeout bounds the wait for a client script to exit once told.
	clientStopTimeout = 30 * time.Second
	// clientDeadline is the deadline each client script keeps by itself, in
	// case the test that started it never tells it to stop.
	clientDeadline = 5 * time.Minute
)

// Set once by TestMain, read by every test.
var (
	// proxyBinary is the eventsproxy binary that TestMain built.
	proxyBinary string
	// amqpURL is the broker that the proxy and the tests' publishers use.
	amqpURL string
)

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "eventsproxy-e2e-")
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: %v\n", err)
		os.Exit(1)
	}
	// The broker: AMQP_URL's, or a RabbitMQ node of the tests' own.
	stopBroker, err := rabbittest.Setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: %v\n", err)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	cleanup := func(code int) {
		stopBroker()
		os.RemoveAll(dir)
		os.Exit(code)
	}
	if err := setup(dir); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: FAIL: %v\n", err)
		cleanup(1)
	}
	goleak.VerifyTestMain(m, goleak.Cleanup(cleanup))
}

// setup checks that the Node.js side is installed and builds the proxy into
// dir, once for all tests.
func setup(dir string) error {
	amqpURL = rabbittest.URL()

	if _, err := exec.LookPath("node"); err != nil {
		return fmt.Errorf("node (Node.js 20 or newer) is not on PATH: %w", err)
	}
	for _, pkg := range []string{"eventsource", "playwright-core"} {
		if _, err := os.Stat(filepath.Join("node_modules", pkg, "package.json")); err != nil {
			return fmt.Errorf("e2e/node_modules lacks %s: run make test, which installs e2e/'s packages with npm ci (%w)", pkg, err)
		}
	}

	root, err := filepath.Abs("..")
	if err != nil {
		return err
	}
	if _, err := os.Stat(filepath.Join(root, "go.mod")); err != nil {
		return fmt.Errorf("the repository root is not the parent of e2e/: %w", err)
	}
	proxyBinary = filepath.Join(dir, "eventsproxy")
	build := exec.Command("go", "build", "-o", proxyBinary, "./cmd/eventsproxy")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/eventsproxy: %w\n%s", err, out)
	}
	return nil
}
