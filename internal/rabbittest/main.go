package rabbittest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// Main runs a test binary's tests, checks that they leak no goroutines
// (goleak, with opts), and exits. Built with -tags integration, it first
// sets the binary's broker up (see Setup) and tears it down at the end, so a
// package's TestMain is just rabbittest.Main(m).
func Main(m *testing.M, opts ...goleak.Option) {
	teardown, err := Setup()
	if err != nil {
		fmt.Fprintf(os.Stderr, "rabbittest: FAIL: %v\n", err)
		os.Exit(1)
	}
	goleak.VerifyTestMain(m, append(opts, goleak.Cleanup(func(code int) {
		teardown()
		os.Exit(code)
	}))...)
}

// Setup sets the test binary's broker up, for Default and the package's
// functions, and returns what tears it down. With $AMQP_URL set, that is the
// broker it names. Otherwise, in a build with -tags integration, Setup
// starts a node of the binary's own (Go runs the test binaries of several
// packages at once: each gets its own node, name and ports) and the teardown
// stops and deletes it. In other builds it does nothing: unit tests need no
// broker.
func Setup() (teardown func(), err error) {
	if b, ok := fromEnvironment(); ok {
		setDefault(&b, nil)
		return func() {}, nil
	}
	if !integration {
		return func() {}, nil
	}
	start := time.Now()
	n, err := NewNode(randomCookie())
	if err != nil {
		return nil, err
	}
	fmt.Fprintf(os.Stderr, "rabbittest: node %s serves %s (management on port %d), started in %v\n",
		n.Name, n.Broker, n.ManagementPort, time.Since(start).Round(time.Millisecond))
	setDefault(&n.Broker, n)
	return func() {
		setDefault(nil, nil)
		if err := n.Stop(); err != nil {
			fmt.Fprintf(os.Stderr, "rabbittest: stop node %s: %v\n", n.Name, err)
		}
	}, nil
}
