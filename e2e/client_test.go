//go:build integration

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// clientEvent is one line that a client script printed: an SSE event it
// received (ready, message, ping, overflow, error), or something else it
// observed (see the scripts' header comments). Fields that a line lacks stay
// zero or nil.
type clientEvent struct {
	Type string `json:"type"`

	// Data is the event's data, parsed as JSON by the script. When it was not
	// JSON, Raw holds it and ParseError says why.
	Data        json.RawMessage `json:"data"`
	Raw         *string         `json:"raw"`
	ParseError  string          `json:"parseError"`
	LastEventID *string         `json:"lastEventId"`

	ReadyState *int              `json:"readyState"`
	Attempt    int               `json:"attempt"`
	URL        string            `json:"url"`
	Status     int               `json:"status"`
	Headers    map[string]string `json:"headers"`
	Code       *int              `json:"code"`
	Message    *string           `json:"message"`
	Reason     string            `json:"reason"`

	// Line is the line as printed.
	Line string `json:"-"`
}

// bookkeeping reports whether ev says nothing about the stream's events:
// connection attempts and their answers, the open event, pings, which may
// come at any time, and the browser's console lines and failed requests,
// which tests count at their end.
func (ev clientEvent) bookkeeping() bool {
	switch ev.Type {
	case "request", "response", "open", "ping", "console", "requestfailed":
		return true
	}
	return false
}

// client is one run of a Node.js client script and everything it printed.
// A goroutine of its own reads the script's stdout into events, so that the
// script never blocks on a full pipe; the test goroutine reads events.
type client struct {
	script string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr *lineLog

	mu      sync.Mutex
	events  []clientEvent
	ended   bool          // stdout reached EOF
	changed chan struct{} // one slot: a signal that events or ended changed

	next int // index in events of the next event for nextEvent; test goroutine only

	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, read after exited is closed
}

// startClient runs `node SCRIPT --timeout N ARGS...` in e2e/. At the end of
// the test it tells the script to stop and fails the test unless it exits 0.
func startClient(t testing.TB, script string, args ...string) *client {
	t.Helper()
	return startClientEnv(t, nil, script, args...)
}

// startClientEnv is startClient with env (NAME=VALUE) added to the
// script's environment.
func startClientEnv(t testing.TB, env []string, script string, args ...string) *client {
	t.Helper()
	args = append([]string{script, "--timeout", strconv.Itoa(int(clientDeadline.Seconds()))}, args...)
	c := &client{
		script:  script,
		cmd:     exec.Command("node", args...),
		stderr:  newLineLog(false),
		changed: make(chan struct{}, 1),
		exited:  make(chan struct{}),
	}
	if env != nil {
		c.cmd.Env = append(os.Environ(), env...)
	}
	c.cmd.Stderr = c.stderr
	stdin, err := c.cmd.StdinPipe()
	if err != nil {
		t.Fatalf("%s: stdin: %v", script, err)
	}
	c.stdin = stdin
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("%s: stdout: %v", script, err)
	}
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start node %s: %v", script, err)
	}
	go c.read(stdout)
	t.Cleanup(func() { c.stop(t) })
	return c
}

// read collects stdout until EOF, then waits for the process. All reads
// finish before cmd.Wait, as exec.Cmd.StdoutPipe requires.
func (c *client) read(stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	for sc.Scan() {
		line := sc.Text()
		var ev clientEvent
		if err := json.Unmarshal([]byte(line), &ev); err != nil {
			ev = clientEvent{Type: "not-json", ParseError: err.Error()}
		}
		ev.Line = line
		c.add(ev)
	}
	if err := sc.Err(); err != nil {
		c.add(clientEvent{Type: "stdout-error", ParseError: err.Error()})
		_, _ = io.Copy(io.Discard, stdout)
	}
	c.mu.Lock()
	c.ended = true
	c.mu.Unlock()
	c.signal()

	c.err = c.cmd.Wait()
	close(c.exited)
}

func (c *client) add(ev clientEvent) {
	c.mu.Lock()
	c.events = append(c.events, ev)
	c.mu.Unlock()
	c.signal()
}

func (c *client) signal() {
	select {
	case c.changed <- struct{}{}:
	default:
	}
}

// nextEvent returns the next event after those already returned that is not
// bookkeeping, failing the test if none comes within timeout.
func (c *client) nextEvent(t testing.TB, timeout time.Duration) clientEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		for c.next < len(c.events) {
			ev := c.events[c.next]
			c.next++
			if !ev.bookkeeping() {
				c.mu.Unlock()
				return ev
			}
		}
		ended := c.ended
		c.mu.Unlock()
		if ended {
			t.Fatalf("%s ended its output while the test waited for an event", c.script)
		}
		select {
		case <-c.changed:
		case <-timer.C:
			t.Fatalf("%s printed no event within %v", c.script, timeout)
		}
	}
}

// expect returns the next event that is not bookkeeping and fails the test
// unless it is of the given type.
func (c *client) expect(t testing.TB, typ string, timeout time.Duration) clientEvent {
	t.Helper()
	ev := c.nextEvent(t, timeout)
	if ev.Type != typ {
		t.Fatalf("%s: got %s, want a %q event", c.script, ev.Line, typ)
	}
	return ev
}

// waitFor returns the first event printed so far or within timeout for
// which match is true, whether or not nextEvent has passed it.
func (c *client) waitFor(t testing.TB, what string, timeout time.Duration, match func(clientEvent) bool) clientEvent {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		c.mu.Lock()
		for _, ev := range c.events {
			if match(ev) {
				c.mu.Unlock()
				return ev
			}
		}
		ended := c.ended
		c.mu.Unlock()
		if ended {
			t.Fatalf("%s ended without printing %s", c.script, what)
		}
		select {
		case <-c.changed:
		case <-timer.C:
			t.Fatalf("%s did not print %s within %v", c.script, what, timeout)
		}
	}
}

// all returns every event printed so far.
func (c *client) all() []clientEvent {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]clientEvent(nil), c.events...)
}

// waitExit waits for the script to exit by itself and fails the test unless
// it exits 0 within timeout.
func (c *client) waitExit(t testing.TB, timeout time.Duration) {
	t.Helper()
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-timer.C:
		t.Fatalf("%s did not exit by itself within %v", c.script, timeout)
	}
	if c.err != nil {
		t.Fatalf("%s exited with %v, want exit status 0", c.script, c.err)
	}
}

// stop tells the script to stop (a line "exit", then the end of stdin) and
// waits for it to exit 0.
func (c *client) stop(t testing.TB) {
	defer func() {
		if t.Failed() || testing.Verbose() {
			t.Logf("%s printed:\n%s\n%s stderr:\n%s", c.script, c.transcript(), c.script, c.stderr)
		}
	}()
	// The script may have exited already; then these fail, harmlessly.
	_, _ = io.WriteString(c.stdin, "exit\n")
	_ = c.stdin.Close()

	timer := time.NewTimer(clientStopTimeout)
	defer timer.Stop()
	select {
	case <-c.exited:
	case <-timer.C:
		_ = c.cmd.Process.Kill()
		<-c.exited
		t.Errorf("%s did not exit within %v of being told to; killed it", c.script, clientStopTimeout)
		return
	}
	if c.err != nil {
		t.Errorf("%s exited with %v, want exit status 0", c.script, c.err)
	}
}

// transcript returns every line the script printed, numbered.
func (c *client) transcript() string {
	var b strings.Builder
	for i, ev := range c.all() {
		fmt.Fprintf(&b, "%3d %s\n", i+1, ev.Line)
	}
	return b.String()
}

// decodeData decodes ev's data into v, failing the test when the script
// could not parse the data as JSON: the proxy promises one line of JSON.
func decodeData(t testing.TB, ev clientEvent, v any) {
	t.Helper()
	if ev.ParseError != "" || ev.Data == nil {
		t.Fatalf("%s event's data is not JSON (%s): %s", ev.Type, ev.ParseError, ev.Line)
	}
	if err := json.Unmarshal(ev.Data, v); err != nil {
		t.Fatalf("decode %s event's data: %v: %s", ev.Type, err, ev.Line)
	}
}

// checkEventID fails the test unless ev carried the proxy's `id: -`.
func checkEventID(t testing.TB, ev clientEvent) {
	t.Helper()
	if ev.LastEventID == nil || *ev.LastEventID != "-" {
		t.Errorf("%s event: lastEventId is not %q: %s", ev.Type, "-", ev.Line)
	}
}

// jsonEqual reports whether a and b are the same JSON value.
func jsonEqual(t testing.TB, a, b []byte) bool {
	t.Helper()
	var va, vb any
	if err := json.Unmarshal(a, &va); err != nil {
		t.Fatalf("not JSON: %v: %s", err, a)
	}
	if err := json.Unmarshal(b, &vb); err != nil {
		t.Fatalf("not JSON: %v: %s", err, b)
	}
	return reflect.DeepEqual(va, vb)
}
