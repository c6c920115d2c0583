package api

import (
	"bytes"
	"net"
	"net/http"
	"runtime"
	"slices"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// writeHeader sends the response's status line and header, as
// startHTTP1 does.
func (out *http1Writer) writeHeader(hdr http.Header) error {
	out.head = out.header(hdr)
	return out.flushHead()
}

// TestWriteHeaderAsNetHTTP checks that a stream's header is the bytes
// http.Header.Write makes of it.
func TestWriteHeaderAsNetHTTP(t *testing.T) {
	for _, chunked := range []bool{true, false} {
		hdr := http.Header{
			"Access-Control-Allow-Origin": {"*"},
			"Content-Type":                {"text/event-stream"},
			"Cache-Control":               {"no-cache"},
			"X-Accel-Buffering":           {"no"},
			"Vary":                        {"Origin", "Cookie"},
			"X-Odd":                       {" two\r\nlines\n "},
			"Bad Name":                    {"dropped"},
			"Date":                        {"not this one"},
		}
		want := hdr.Clone()
		a, b := net.Pipe()
		out := &http1Writer{conn: a, chunked: chunked, deadline: deadline{timeout: time.Minute, set: a.SetWriteDeadline}}
		got := make(chan []byte)
		go func() {
			buf := make([]byte, 4096)
			n, _ := b.Read(buf)
			got <- buf[:n]
		}()
		now := time.Now()
		if err := out.writeHeader(hdr); err != nil {
			t.Fatal(err)
		}
		g := <-got
		a.Close()
		want.Set("Date", httpDate(now))
		want.Set("Connection", "close")
		if chunked {
			want.Set("Transfer-Encoding", "chunked")
		}
		var w bytes.Buffer
		w.WriteString("HTTP/1.1 200 OK\r\n")
		_ = want.Write(&w)
		w.WriteString("\r\n")
		if !bytes.Equal(g, w.Bytes()) {
			t.Errorf("chunked=%v: wrote\n%q\nnet/http writes\n%q", chunked, g, w.Bytes())
		}
	}
}

func TestHTTPDate(t *testing.T) {
	for _, now := range []time.Time{time.Unix(1767225600, 0), time.Unix(1767225600, 999e6), time.Unix(1767225601, 0), time.Unix(1767225600, 5)} {
		if got, want := httpDate(now), now.UTC().Format(http.TimeFormat); got != want {
			t.Errorf("httpDate(%v) = %q, want %q", now, got, want)
		}
	}
}

// writesConn is a net.Conn that records its writes.
type writesConn struct {
	net.Conn
	writes [][]byte
}

func (c *writesConn) Write(b []byte) (int, error) {
	c.writes = append(c.writes, bytes.Clone(b))
	return len(b), nil
}

func (c *writesConn) SetWriteDeadline(time.Time) error { return nil }

// TestHeadWithFirstWrite checks that a header kept for later goes out in
// the first write, before its bytes, or alone when flushed.
func TestHeadWithFirstWrite(t *testing.T) {
	event := func() []byte {
		return append(make([]byte, headroom, 256), "event: ready\ndata: {}\n\n"...)
	}
	for _, flush := range []bool{false, true} {
		c := &writesConn{}
		out := &http1Writer{conn: c, chunked: true, deadline: deadline{timeout: time.Minute, set: c.SetWriteDeadline}}
		out.head = out.header(http.Header{"Content-Type": {"text/event-stream"}})
		head := string(out.head)
		if flush {
			if err := out.flushHead(); err != nil {
				t.Fatal(err)
			}
		}
		for range 2 {
			if err := out.write(event()); err != nil {
				t.Fatal(err)
			}
		}
		chunk := "17\r\nevent: ready\ndata: {}\n\n\r\n"
		want := []string{head + chunk, chunk}
		if flush {
			want = []string{head, chunk, chunk}
		}
		var got []string
		for _, w := range c.writes {
			got = append(got, string(w))
		}
		if !slices.Equal(got, want) {
			t.Errorf("flush=%v: writes\n%q\nwant\n%q", flush, got, want)
		}
	}
}

// TestRunnersReused checks that the goroutine of an ended stream runs the
// next one, that at most maxIdleRunners wait, and that they end with stop
// or when idle for long enough.
func TestRunnersReused(t *testing.T) {
	stop := make(chan struct{})
	rs := newRunners(time.Hour, stop)
	waitIdle := func(n int32) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for rs.idle.Load() != n {
			if time.Now().After(deadline) {
				t.Fatalf("%d idle runners after 30s, want %d", rs.idle.Load(), n)
			}
			runtime.Gosched()
		}
	}
	ran := make(chan struct{}, maxIdleRunners+10)
	rs.run(func() { ran <- struct{}{} })
	<-ran
	waitIdle(1)
	// The idle runner counts itself before it reaches its receive: the
	// send waits for it, with a deadline.
	select {
	case rs.work <- func() { ran <- struct{}{} }:
	case <-time.After(30 * time.Second):
		t.Fatal("no idle runner took the next stream in 30s")
	}
	<-ran
	waitIdle(1)
	// More at once than may stay idle.
	release := make(chan struct{})
	for range maxIdleRunners + 10 {
		rs.run(func() { <-release; ran <- struct{}{} })
	}
	close(release)
	for range maxIdleRunners + 10 {
		<-ran
	}
	waitIdle(maxIdleRunners)
	close(stop)
	waitIdle(0)

	before := goleak.IgnoreCurrent()
	rs = newRunners(time.Millisecond, make(chan struct{}))
	ran = make(chan struct{})
	rs.run(func() { close(ran) })
	<-ran
	goleak.VerifyNone(t, before) // it retries for a while
}
