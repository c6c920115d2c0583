//go:build integration

package e2e

import (
	"bytes"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proxy is the real eventsproxy binary serving one test, stopped with
// SIGTERM when the test ends.
type proxy struct {
	// URL is the proxy's root URL, http://HOST:PORT.
	URL string

	cmd    *exec.Cmd
	log    *lineLog
	exited chan struct{} // closed once cmd.Wait has returned
	err    error         // cmd.Wait's result, read after exited is closed

	stopOnce sync.Once
}

// startProxy runs `eventsproxy serve` on a free loopback port against the
// test broker, with extra flags appended, and returns once it has logged
// that it is listening. At the end of the test it sends SIGTERM and fails
// the test unless the proxy exits 0 within proxyStopTimeout.
func startProxy(t testing.TB, flags ...string) *proxy {
	t.Helper()
	return startBinary(t, append([]string{"serve", "--listen", "127.0.0.1:0", "--amqp-url", amqpURL}, flags...)...)
}

// startDev runs `eventsproxy dev` on a free loopback port, as startProxy
// runs serve.
func startDev(t testing.TB, flags ...string) *proxy {
	t.Helper()
	return startBinary(t, append([]string{"dev", "--listen", "127.0.0.1:0"}, flags...)...)
}

// startBinary runs the binary with args and returns once it has logged that
// it is listening; it is stopped with SIGTERM at the end of the test.
func startBinary(t testing.TB, args ...string) *proxy {
	t.Helper()
	p := &proxy{
		cmd:    exec.Command(proxyBinary, args...),
		log:    newLineLog(true),
		exited: make(chan struct{}),
	}
	p.cmd.Stdout = p.log
	p.cmd.Stderr = p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start eventsproxy %s: %v", args[0], err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() { p.stop(t) })

	timer := time.NewTimer(proxyStartTimeout)
	defer timer.Stop()
	select {
	case addr := <-p.log.listening:
		p.URL = "http://" + addr
		return p
	case <-p.exited:
		t.Fatalf("eventsproxy %s exited (%v) before it logged msg=listening with addr=HOST:PORT", args[0], p.err)
	case <-timer.C:
		t.Fatalf("eventsproxy %s did not log msg=listening with addr=HOST:PORT within %v", args[0], proxyStartTimeout)
	}
	return nil
}

// stop sends SIGTERM and waits for a clean exit, once: a test may stop the
// proxy itself before the cleanup does.
func (p *proxy) stop(t testing.TB) {
	p.stopOnce.Do(func() { p.stopNow(t) })
}

func (p *proxy) stopNow(t testing.TB) {
	defer func() {
		if t.Failed() {
			t.Logf("eventsproxy output:\n%s", p.log)
		}
	}()
	select {
	case <-p.exited:
		t.Errorf("eventsproxy exited before the end of the test: %v", p.err)
		return
	default:
	}

	start := time.Now()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Errorf("send SIGTERM to eventsproxy: %v", err)
	}
	timer := time.NewTimer(proxyStopTimeout)
	defer timer.Stop()
	select {
	case <-p.exited:
	case <-timer.C:
		_ = p.cmd.Process.Kill()
		<-p.exited
		t.Errorf("eventsproxy did not exit within %v of SIGTERM; killed it", proxyStopTimeout)
		return
	}
	if p.err != nil {
		t.Errorf("eventsproxy exited with %v after SIGTERM, want exit status 0", p.err)
		return
	}
	t.Logf("eventsproxy exited 0, %v after SIGTERM", time.Since(start).Round(time.Millisecond))
}

// lineLog collects a process's output line by line. When it watches for the
// proxy's "listening" line it sends that line's address on listening, once.
// It is an io.Writer that exec.Cmd's copying goroutine may call while the
// test reads it.
type lineLog struct {
	// listening receives the address of the first log line with
	// msg=listening and addr=HOST:PORT; it has room for that one address so
	// that Write never blocks.
	listening chan string

	mu      sync.Mutex
	watch   bool
	partial []byte
	lines   []string
}

func newLineLog(watchListening bool) *lineLog {
	return &lineLog{listening: make(chan string, 1), watch: watchListening}
}

func (l *lineLog) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.partial = append(l.partial, b...)
	for {
		i := bytes.IndexByte(l.partial, '\n')
		if i < 0 {
			return len(b), nil
		}
		line := string(l.partial[:i])
		l.partial = l.partial[i+1:]
		l.lines = append(l.lines, line)
		if l.watch {
			if addr, ok := listeningAddr(line); ok {
				l.watch = false
				l.listening <- addr
			}
		}
	}
}

// String returns everything written so far.
func (l *lineLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.lines, "\n") + "\n" + string(l.partial)
}

// listeningAddr returns the address of a log/slog text line that says the
// server is ready: msg=listening addr=HOST:PORT.
func listeningAddr(line string) (string, bool) {
	fields := textFields(line)
	addr := fields["addr"]
	if fields["msg"] != "listening" || addr == "" {
		return "", false
	}
	return addr, true
}

// textFields splits a log/slog TextHandler line into its key=value pairs;
// values may be quoted Go strings.
func textFields(line string) map[string]string {
	fields := make(map[string]string)
	for rest := strings.TrimSpace(line); rest != ""; rest = strings.TrimLeft(rest, " ") {
		key, value, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		if i := strings.LastIndexByte(key, ' '); i >= 0 {
			// A word without "=" before this pair: not slog's output; skip it.
			key = key[i+1:]
		}
		if strings.HasPrefix(value, `"`) {
			quoted, err := strconv.QuotedPrefix(value)
			if err != nil {
				break
			}
			rest = value[len(quoted):]
			value, _ = strconv.Unquote(quoted)
		} else {
			value, rest, _ = strings.Cut(value, " ")
		}
		fields[key] = value
	}
	return fields
}
