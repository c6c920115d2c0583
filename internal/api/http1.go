package api

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// http1Writer writes the response of an HTTP/1.x stream itself, on the
// connection it took from net/http once the request was read (Hijack):
// net/http's per-connection buffers (about 10 KiB) and its goroutine are
// then free while the stream lives, each wake-up costs one write system
// call, and a client that closed is noticed by a goroutine blocked in Read.
type http1Writer struct {
	conn net.Conn
	// chunked says whether the body is sent in chunks (HTTP/1.1) or ends
	// with the connection (HTTP/1.0).
	chunked bool
	// stopClose unregisters the closing of conn when the handler kills
	// its streams; it reports whether it did so before the close ran
	// (and then conn is the caller's to close).
	stopClose func() bool
	cancel    context.CancelFunc
	// done tells the handler that the stream is over.
	done     func()
	deadline deadline
	runners  *runners
	readBuf  [64]byte // watch's
	// head is the response's header while it waits to go out with the
	// first write (see startHTTP1); headErr is its write's error.
	head    []byte
	headErr error
}

// startHTTP1 takes over conn, hijacked from net/http for r, and sends the
// response's header. It returns the stream's context, which ends when the
// client goes away or the handler kills its streams, and its writer. The
// handler counts two goroutines for the stream: the stream's own and the
// connection's reader.
//
// What net/http read ahead of the request's end is a pipelined request,
// which a stream never answers: it is dropped with the connection's
// buffers.
//
// With later, the header is not written yet: it goes out with the first
// write, or alone when flushHead is called (before the stream waits for
// anything).
func (h *Handler) startHTTP1(conn net.Conn, r *http.Request, hdr http.Header, later bool) (context.Context, *http1Writer, error) {
	ctx, cancel := context.WithCancel(h.streamsCtx)
	out := &http1Writer{
		conn:    conn,
		chunked: r.ProtoAtLeast(1, 1),
		// On the handler's context, not the stream's: a hook on the
		// stream's would leave a map in it for the stream's life. The
		// stream's own ends close conn themselves (stop, end).
		stopClose: context.AfterFunc(h.streamsCtx, func() { _ = conn.Close() }),
		cancel:    cancel,
		done:      h.streams.Done,
		deadline:  deadline{timeout: h.cfg.WriteTimeout, set: conn.SetWriteDeadline},
		runners:   h.runners,
	}
	go out.watch()
	out.head = out.header(hdr)
	if later {
		return ctx, out, nil
	}
	if err := out.flushHead(); err != nil {
		return ctx, out, fmt.Errorf("%w: %w", errWrite, err)
	}
	return ctx, out, nil
}

// flushHead writes the header if it has not gone out yet.
func (out *http1Writer) flushHead() error {
	if out.head == nil {
		return out.headErr
	}
	return out.writeConn(nil)
}

// stop ends the stream's context and closes its connection (unless the
// handler's kill or the stream's end closed it already): for a client that
// went away (watch), or a reconnect that takes the stream over.
func (out *http1Writer) stop() {
	out.cancel()
	if out.stopClose() {
		_ = out.conn.Close()
	}
}

// watch reads the connection until it fails, which is how a client that
// goes away is noticed, and then stops the stream (stop). A client has
// nothing more to say on a stream, so what it sends anyway is read and
// dropped.
func (out *http1Writer) watch() {
	defer out.done()
	defer out.stop()
	for {
		if _, err := out.conn.Read(out.readBuf[:]); err != nil {
			return
		}
	}
}

// header returns the response's status line and header as net/http would
// have written them: the fields sorted by name, with Date, Connection:
// close (the stream ends with its connection) and, for HTTP/1.1,
// Transfer-Encoding: chunked. Its buffer has room for a first event after
// it.
func (out *http1Writer) header(hdr http.Header) []byte {
	// The names, sorted: few, so on the stack and by insertion (a small
	// frame: this runs deep in net/http's goroutine).
	var names [16]string
	ns := append(names[:0], "Connection", "Date")
	if out.chunked {
		ns = append(ns, "Transfer-Encoding")
	}
	for k := range hdr {
		switch k {
		case "Date", "Connection", "Transfer-Encoding":
			continue
		}
		if validFieldName(k) { // else net/http drops it
			ns = append(ns, k)
		}
	}
	for i := 1; i < len(ns); i++ {
		for j := i; j > 0 && ns[j] < ns[j-1]; j-- {
			ns[j], ns[j-1] = ns[j-1], ns[j]
		}
	}
	date := httpDate(time.Now())
	value := func(k string, i int) (string, bool) {
		switch k {
		case "Date":
			return date, i == 0
		case "Connection":
			return "close", i == 0
		case "Transfer-Encoding":
			return "chunked", i == 0
		}
		if vs := hdr[k]; i < len(vs) {
			return vs[i], true
		}
		return "", false
	}
	size := len("HTTP/1.1 200 OK\r\n\r\n")
	for _, k := range ns {
		for i := 0; ; i++ {
			v, ok := value(k, i)
			if !ok {
				break
			}
			size += len(k) + len(v) + 4
		}
	}
	b := make([]byte, 0, size+firstEventRoom)
	b = append(b, "HTTP/1.1 200 OK\r\n"...)
	for _, k := range ns {
		for i := 0; ; i++ {
			v, ok := value(k, i)
			if !ok {
				break
			}
			b = append(b, k...)
			b = append(b, ": "...)
			b = appendFieldValue(b, v)
			b = append(b, "\r\n"...)
		}
	}
	return append(b, "\r\n"...)
}

// firstEventRoom is the room after the header for the chunk of `ready`.
const firstEventRoom = 64

// appendFieldValue appends v as http.Header.Write does: line breaks made
// spaces, then white space trimmed at both ends.
func appendFieldValue(b []byte, v string) []byte {
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\n", " ", "\r", " ").Replace(v)
	}
	return append(b, textproto.TrimString(v)...)
}

// validFieldName reports whether k is a token (RFC 9110), which a field
// name must be.
func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0:
		default:
			return false
		}
	}
	return true
}

// dateCache holds the Date field of the current second.
var dateCache atomic.Pointer[cachedDate]

type cachedDate struct {
	unix int64
	text string
}

// httpDate returns now in the Date field's format, made once a second.
func httpDate(now time.Time) string {
	sec := now.Unix()
	if d := dateCache.Load(); d != nil && d.unix == sec {
		return d.text
	}
	d := &cachedDate{sec, now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.text
}

// write frames buf[headroom:] as one chunk, in place, and sends it in one
// write.
func (out *http1Writer) write(buf []byte) error {
	if !out.chunked {
		return out.writeConn(buf[headroom:])
	}
	var digits [16]byte
	size := strconv.AppendUint(digits[:0], uint64(len(buf)-headroom), 16)
	start := headroom - 2 - len(size)
	copy(buf[start:], size)
	buf[headroom-2], buf[headroom-1] = '\r', '\n'
	buf = append(buf, '\r', '\n')
	return out.writeConn(buf[start:])
}

// writeConn writes b, after the header if that has not gone out yet.
func (out *http1Writer) writeConn(b []byte) error {
	if out.headErr != nil {
		return out.headErr
	}
	head := out.head != nil
	if head {
		b = append(out.head, b...)
		out.head = nil
	}
	out.deadline.move()
	_, err := out.conn.Write(b)
	if head && err != nil {
		// What follows must not go out without it.
		out.headErr = err
	}
	return err
}

// goOn runs the rest of the stream on a goroutine of its own, not net/http's
// (whose stack has grown while reading the request, and which ends now):
// one that a stream that ended left idle, else a new one.
func (out *http1Writer) goOn(rest func()) { out.runners.run(rest) }

// maxIdleRunners bounds the goroutines that ended streams leave waiting
// for new ones, and runnerIdle how long each waits.
const (
	maxIdleRunners = 64
	runnerIdle     = 100 * time.Millisecond
)

// runners runs the rest of streams (see goOn). A goroutine whose stream
// ended waits for the next new stream, up to maxIdleRunners of them, for
// idleFor or until stop is closed: its stack has grown to what a stream
// needs (serving, then logging its end), and a new goroutine would grow its
// own again, which costs more than the rest of a short stream's admission.
// When streams stop coming, their goroutines are gone soon after.
type runners struct {
	work    chan func() // unbuffered: a send succeeds only to an idle runner
	idle    atomic.Int32
	idleFor time.Duration
	stop    <-chan struct{}
}

func newRunners(idleFor time.Duration, stop <-chan struct{}) *runners {
	return &runners{work: make(chan func()), idleFor: idleFor, stop: stop}
}

// run runs rest on an idle runner, or on a new one.
func (rs *runners) run(rest func()) {
	select {
	case rs.work <- rest:
	default:
		go rs.loop(rest)
	}
}

func (rs *runners) loop(rest func()) {
	var idle *time.Timer
	for rest != nil {
		rest()
		// The stream's state is not kept alive while idle: rest is
		// dead until next returns.
		rest, idle = rs.next(idle)
	}
	if idle != nil {
		idle.Stop()
	}
}

// next waits, as an idle runner, for the rest of a new stream, and
// returns it, or nil when the runner should end. It is kept out of loop,
// so that what a stream's waits have below them on the stack is small.
//
//go:noinline
func (rs *runners) next(idle *time.Timer) (rest func(), _ *time.Timer) {
	if rs.idle.Add(1) > maxIdleRunners {
		rs.idle.Add(-1)
		return nil, idle
	}
	idle = resetTimer(idle, rs.idleFor)
	select {
	case rest = <-rs.work:
		rs.idle.Add(-1)
		idle.Stop()
		return rest, idle
	case <-idle.C:
	case <-rs.stop:
	}
	rs.idle.Add(-1)
	return nil, idle
}

// goOnNew runs rest on a new runner, not an idle one: its stack has grown.
func (out *http1Writer) goOnNew(rest func()) bool {
	go out.runners.loop(rest)
	return true
}

// end sends the body's last chunk (unless the client is gone) and closes
// the connection.
func (out *http1Writer) end(why string) {
	switch {
	case why == endClient || why == endWrite:
	case out.chunked:
		_ = out.writeConn([]byte("0\r\n\r\n"))
	default:
		_ = out.flushHead()
	}
	if out.stopClose() {
		_ = out.conn.Close()
	}
	out.cancel()
	out.done()
}
