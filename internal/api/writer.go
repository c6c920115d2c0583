package api

import (
	"fmt"
	"net/http"
	"time"
)

// writer carries a stream's bytes to its client over one transport:
// http1Writer on a connection taken from net/http, http2Writer through
// net/http.
type writer interface {
	// write sends the events in buf[headroom:] in one write, bounded by
	// the write timeout. buf[:headroom] is free for the writer's framing,
	// and the writer may append to buf.
	write(buf []byte) error
	// goOn runs the rest of the stream, from its first message on.
	goOn(rest func())
	// goOnNew runs the rest of the stream on a new goroutine, which
	// starts with a small stack, where the stream has goroutines of its
	// own; it reports whether it did (else the caller goes on).
	goOnNew(rest func()) bool
	// end ends the response once the stream's last event is written; why
	// says why the stream ended.
	end(why string)
}

// headroom is the room left before a write's events for the writer's
// framing: a chunk header of up to 16 hexadecimal digits and CRLF.
const headroom = 18

// deadline keeps a connection's write deadline ahead of its writes. A
// client that stops reading is dropped once a write has waited timeout,
// while an idle stream may live forever. Moving the deadline costs a timer
// update, so it moves only when less than three quarters of timeout are
// left: a write still gets at least that.
type deadline struct {
	timeout time.Duration
	set     func(time.Time) error
	at      time.Time
}

func (d *deadline) move() {
	now := time.Now()
	if d.at.Sub(now) >= d.timeout*3/4 {
		return
	}
	d.at = now.Add(d.timeout)
	_ = d.set(d.at)
}

// http2Writer writes through net/http, which keeps the connection: HTTP/2
// streams cannot be taken from it. The stream stays on net/http's
// goroutine, as the response ends when the handler returns.
type http2Writer struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
}

// startHTTP2 sends the response's header (set on w already) and returns
// the stream's writer.
func startHTTP2(w http.ResponseWriter, timeout time.Duration) (*http2Writer, error) {
	rc := http.NewResponseController(w)
	out := &http2Writer{w: w, rc: rc, timeout: timeout}
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return out, fmt.Errorf("%w: %w", errWrite, err)
	}
	// The deadline that guard set was for the header. HTTP/2 resets a
	// stream whose write deadline passes even with no write pending, so
	// left in place it would cut a stream that waits that long for
	// `ready` (its error after --ready-timeout too); each write sets its
	// own.
	_ = rc.SetWriteDeadline(time.Time{})
	return out, nil
}

// write bounds each write by the timeout and clears the deadline after
// it: HTTP/2 resets a stream whose deadline passes with no write pending,
// so a deadline kept ahead of the writes (as deadline does for HTTP/1.x)
// would cut an idle stream whose pings are further apart than timeout.
func (out *http2Writer) write(buf []byte) error {
	_ = out.rc.SetWriteDeadline(time.Now().Add(out.timeout))
	_, err := out.w.Write(buf[headroom:])
	if err == nil {
		err = out.rc.Flush()
	}
	if err == nil {
		_ = out.rc.SetWriteDeadline(time.Time{})
	}
	return err
}

func (out *http2Writer) goOn(rest func()) { rest() }

func (out *http2Writer) goOnNew(func()) bool { return false }

func (out *http2Writer) end(string) {}
