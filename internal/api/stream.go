package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/sse"
)

// Event kinds of the wire contract (SPEC §1).
const (
	kindReady    = "ready"
	kindPing     = "ping"
	kindError    = "error"
	kindOverflow = "overflow"
	kindMessage  = "message"
)

// messageHead and messageTail frame a message's data, which is one line, as
// sse.AppendEvent would.
var messageHead, messageTail = sse.Frame(kindMessage)

// messageEvent returns msg's `message` event: framed once per message and
// shared by every stream that sends it.
func messageEvent(msg *broker.Message) []byte {
	return msg.Framed(messageHead, messageTail)
}

// Texts of the errors that are not the client's fault. They say nothing of
// the broker, its address or the Go error behind them.
const (
	textInternal    = "Unknown Internal Error"
	textUnavailable = "The service is temporarily unavailable; please reconnect later."
	textShutdown    = "The server is shutting down; please reconnect."
)

// Why a stream ended: the values of eventsproxy_streams_ended_total's `why`
// label and of the `why` of the stream-end log line.
const (
	endClient     = "client"      // the client went away
	endBadRequest = "bad_request" // its bindings were refused by the parser
	endExchange   = "exchange"    // the broker refused a binding
	endBroker     = "broker"      // the broker connection was lost
	endShutdown   = "shutdown"    // the server is shutting down
	endWrite      = "write"       // a write failed: the client is gone or too slow
	endInternal   = "internal"    // anything else
)

// stream is one client's open connect request.
//
// An HTTP/1.x stream takes its connection from net/http once the request is
// read (Hijack) and writes its response itself: net/http's per-connection
// buffers (about 10 KiB) and its goroutine are then free while the stream
// lives, each wake-up costs one write system call, and a client that closed
// is noticed by a goroutine blocked in Read. Streams on HTTP/2, which cannot
// be hijacked, write through net/http.
type stream struct {
	h     *Handler
	addr  string
	start time.Time

	// conn is the hijacked connection, or nil on HTTP/2. chunked says
	// whether the body is sent in chunks (HTTP/1.1) or ends with the
	// connection (HTTP/1.0).
	conn    net.Conn
	chunked bool
	// stopClose unregisters the closing of conn when the stream's context
	// ends; it reports whether it did so before the close ran.
	stopClose func() bool
	cancel    context.CancelFunc

	// w and rc are net/http's response on HTTP/2.
	w  http.ResponseWriter
	rc *http.ResponseController

	// buf holds the events of one write from buf[headroom:]; the bytes
	// before are room for the chunk header.
	buf []byte
	// deadline is the write deadline last set on the connection.
	deadline time.Time
	// written is when the last write ended.
	written time.Time

	bindings, delivered, dropped int
}

// A stream that gets messages less than busyGap after its last write waits
// gatherFor (or until its buffer is half full) before it takes them, so
// that at high rates one write (one system call and one wake-up of the
// client) carries several messages, for at most gatherFor of latency. Streams that get a message every few
// milliseconds or less often, as at S2's 200 per second, never wait.
const (
	busyGap   = time.Millisecond
	gatherFor = 500 * time.Microsecond
)

// headroom is the room left before a write's events for its chunk header:
// up to 16 hexadecimal digits and CRLF.
const headroom = 18

// connect serves GET /api/events/v1/connect/.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request) {
	// Every answer carries the CORS header, refusals too: a browser on
	// another origin must see the 204 (or it counts as a network error and
	// retries) and be able to read a 503's body.
	w.Header().Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	// EventSource reconnects with the last id it saw, `-`; 204 tells it to
	// stop, as the original service did: a client that wants more opens a
	// new connection.
	if r.Header.Get("Last-Event-ID") != "" {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	m := h.cfg.Metrics
	if h.shuttingDown() {
		m.StreamsRefused.WithLabelValues(metrics.RefusedShuttingDown).Inc()
		refuse(w, http.StatusServiceUnavailable, "ShuttingDown", textShutdown, 1)
		return
	}
	if !h.broker.Connected() {
		m.StreamsRefused.WithLabelValues(metrics.RefusedBrokerUnavailable).Inc()
		refuse(w, http.StatusServiceUnavailable, "ServiceUnavailable", textUnavailable, 5)
		return
	}
	addr := h.clientAddr(r)
	switch h.limits.acquire(addr) {
	case refusedTotal:
		m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnections).Inc()
		refuse(w, http.StatusServiceUnavailable, "TooManyConnections",
			"The server has too many open streams; please retry later.", 10)
		return
	case refusedPerAddr:
		m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnectionsPerIP).Inc()
		refuse(w, http.StatusTooManyRequests, "TooManyConnectionsFromAddress",
			"Too many open streams from your address; close some or retry later.", 10)
		return
	}
	m.StreamsOpen.Inc()

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	st := &stream{h: h, addr: addr, start: time.Now()}
	h.streams.Add(2) // the stream and its connection's reader, if hijacked
	conn, _, err := http.NewResponseController(w).Hijack()
	if err != nil {
		// HTTP/2: net/http keeps the connection.
		h.streams.Add(-2)
		st.w, st.rc = w, http.NewResponseController(w)
		w.WriteHeader(http.StatusOK)
		why := endWrite
		if st.rc.Flush() == nil {
			why = st.run(r.Context(), r)
		}
		st.finish(why)
		return
	}
	// What net/http read ahead of this request's end is a pipelined
	// request, which a stream never answers: it is dropped with the
	// connection's buffers.
	ctx, cancel := context.WithCancel(h.streamsCtx)
	st.conn, st.cancel = conn, cancel
	st.chunked = r.ProtoAtLeast(1, 1)
	st.stopClose = context.AfterFunc(ctx, func() { _ = conn.Close() })
	go st.watch()
	if err := st.writeHeader(hdr); err != nil {
		st.finish(endWrite)
		return
	}
	// Subscribing may take a broker round trip; it runs here, on net/http's
	// goroutine, whose stack has grown while reading the request. The
	// stream then goes on in a goroutine of its own with a small stack,
	// and this one ends.
	sub, why := st.open(ctx, r)
	if sub == nil {
		st.finish(why)
		return
	}
	go func() {
		why := st.serve(ctx, sub)
		sub.Close()
		st.finish(why)
	}()
}

// refuse answers a connect request that will get no stream.
func refuse(w http.ResponseWriter, status int, code, text string, retryAfterSeconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeJSON(w, status, errorBody{Code: code, Message: text})
}

// watch reads the hijacked connection until it fails, which is how a
// client that goes away is noticed, and then ends the stream's context.
// A client has nothing more to say on a stream, so what it sends anyway is
// read and dropped.
func (st *stream) watch() {
	defer st.h.streams.Done()
	defer st.cancel()
	b := make([]byte, 64)
	for {
		if _, err := st.conn.Read(b); err != nil {
			return
		}
	}
}

// writeHeader sends the response's status line and header on a hijacked
// connection, as net/http would have.
func (st *stream) writeHeader(hdr http.Header) error {
	hdr.Set("Date", time.Now().UTC().Format(http.TimeFormat))
	// The stream ends with its connection.
	hdr.Set("Connection", "close")
	if st.chunked {
		hdr.Set("Transfer-Encoding", "chunked")
	}
	b := bytes.NewBuffer(make([]byte, 0, 256))
	b.WriteString("HTTP/1.1 200 OK\r\n")
	_ = hdr.Write(b)
	b.WriteString("\r\n")
	return st.writeConn(b.Bytes())
}

// run serves an HTTP/2 stream after its header is sent and returns why it
// ended.
func (st *stream) run(ctx context.Context, r *http.Request) (why string) {
	sub, why := st.open(ctx, r)
	if sub == nil {
		return why
	}
	defer sub.Close()
	return st.serve(ctx, sub)
}

// finish ends the stream: a hijacked connection gets the end of its body
// (unless the client is gone) and is closed; the stream is counted and
// logged.
func (st *stream) finish(why string) {
	h := st.h
	if st.conn != nil {
		if st.chunked && why != endClient && why != endWrite {
			_ = st.writeConn([]byte("0\r\n\r\n"))
		}
		if st.stopClose() {
			_ = st.conn.Close()
		}
		st.cancel()
		h.streams.Done()
	}
	h.limits.release(st.addr)
	m := h.cfg.Metrics
	m.StreamsOpen.Dec()
	m.StreamsEnded.WithLabelValues(why).Inc()
	h.log.Info("stream ended", "why", why, "client", st.addr,
		"duration", time.Since(st.start).Round(time.Millisecond),
		"bindings", st.bindings, "delivered", st.delivered, "dropped", st.dropped)
}

// open parses the stream's bindings, subscribes and sends `ready`. It
// returns the subscription, or nil and why the stream ended.
func (st *stream) open(ctx context.Context, r *http.Request) (*broker.Subscription, string) {
	h := st.h
	bs, err := binding.FromQuery(r.URL.Query(), h.cfg.Limits)
	if err != nil {
		_ = st.sendError(err)
		return nil, endBadRequest
	}
	st.bindings = len(bs)
	sub, err := h.broker.Subscribe(ctx, bs)
	if err != nil {
		if ctx.Err() != nil {
			return nil, endClient
		}
		_ = st.sendError(err)
		var berr *broker.BindError
		if errors.As(err, &berr) && (errors.Is(err, broker.ErrExchangeNotFound) || errors.Is(err, broker.ErrAccessRefused)) {
			return nil, endExchange
		}
		if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrConnectionLost) {
			return nil, endBroker
		}
		return nil, endInternal
	}
	if err := st.send(kindReady, []byte("{}")); err != nil {
		sub.Close()
		return nil, endWrite
	}
	h.cfg.Metrics.ReadySeconds.Observe(time.Since(st.start).Seconds())
	return sub, ""
}

// serve delivers sub's messages and pings until the stream ends, and
// returns why it ended.
func (st *stream) serve(ctx context.Context, sub *broker.Subscription) (why string) {
	h := st.h
	ping := time.NewTicker(h.cfg.PingInterval)
	defer ping.Stop()
	var gather *time.Timer
	var msgs []*broker.Message
	for {
		select {
		case <-ctx.Done():
			return endClient
		case <-h.shutdown:
			_ = st.sendText(textShutdown)
			return endShutdown
		case <-sub.Done():
			_ = st.sendError(sub.Err())
			return endBroker
		case now := <-ping.C:
			data := fmt.Appendf(nil, `{"time":%q}`, now.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			if err := st.send(kindPing, data); err != nil {
				return endWrite
			}
		case <-sub.Notify():
			if time.Since(st.written) < busyGap {
				// Messages come faster than one per busyGap: let a few
				// more gather, so that one write carries them.
				if gather == nil {
					gather = time.NewTimer(gatherFor)
				} else {
					gather.Reset(gatherFor)
				}
				select {
				case <-gather.C:
				case <-sub.Half():
					// A burst: take it before the buffer overflows.
					gather.Stop()
				case <-ctx.Done():
					return endClient
				}
			}
			var dropped int
			msgs, dropped = sub.Take(msgs[:0])
			if err := st.sendMessages(msgs, dropped); err != nil {
				return endWrite
			}
			clear(msgs)
		}
	}
}

// sendMessages writes an `overflow` event when messages were dropped, then
// the messages, in one write.
func (st *stream) sendMessages(msgs []*broker.Message, dropped int) error {
	m := st.h.cfg.Metrics
	size := 64 // the overflow event
	for _, msg := range msgs {
		size += len(messageEvent(msg))
	}
	st.begin(size)
	if dropped > 0 {
		st.dropped += dropped
		m.MessagesDropped.Add(float64(dropped))
		st.buf = sse.AppendEvent(st.buf, kindOverflow, fmt.Appendf(nil, `{"dropped":%d}`, dropped))
	}
	for _, msg := range msgs {
		st.buf = append(st.buf, messageEvent(msg)...)
	}
	if err := st.write(); err != nil {
		return err
	}
	if len(msgs) > 0 {
		st.delivered += len(msgs)
		m.MessagesDelivered.Add(float64(len(msgs)))
		m.DeliveryLatencySeconds.Observe(time.Since(msgs[0].Received).Seconds())
	}
	return nil
}

// send writes one event.
func (st *stream) send(kind string, data []byte) error {
	st.begin(len(kind) + len(data) + 32)
	st.buf = sse.AppendEvent(st.buf, kind, data)
	return st.write()
}

// sendError sends the client's text for err as an `error` event.
func (st *stream) sendError(err error) error {
	text, internal := clientText(err)
	if internal {
		st.h.log.Error("stream failed", "err", err)
	}
	return st.sendText(text)
}

func (st *stream) sendText(text string) error {
	data, _ := json.Marshal(text)
	return st.send(kindError, data)
}

// maxKeptBuffer is the largest write buffer a stream keeps between writes:
// a burst may need a big one once, and an idle stream should not hold it.
// Bigger ones are shared between streams through bigBuffers.
const maxKeptBuffer = 8 << 10

// bigBuffers holds write buffers above maxKeptBuffer between writes.
var bigBuffers sync.Pool // of *[]byte

// begin empties the write buffer, keeping the room for a chunk header,
// for events of about size bytes.
func (st *stream) begin(size int) {
	need := headroom + size + 2
	if need > cap(st.buf) && need > maxKeptBuffer {
		if p, _ := bigBuffers.Get().(*[]byte); p != nil && cap(*p) >= need {
			st.buf = *p
		} else {
			st.buf = make([]byte, 0, need)
		}
	}
	if cap(st.buf) < headroom {
		st.buf = make([]byte, 0, 256)
	}
	st.buf = st.buf[:headroom]
}

// write sends the events in st.buf to the client in one write.
func (st *stream) write() error {
	if len(st.buf) == headroom {
		// Nothing to send; on HTTP/1.1 an empty chunk would end the body.
		return nil
	}
	var err error
	if st.conn == nil {
		st.moveDeadline()
		if _, err = st.w.Write(st.buf[headroom:]); err == nil {
			err = st.rc.Flush()
		}
	} else {
		out := st.buf[headroom:]
		if st.chunked {
			var digits [16]byte
			size := strconv.AppendUint(digits[:0], uint64(len(out)), 16)
			start := headroom - 2 - len(size)
			copy(st.buf[start:], size)
			st.buf[headroom-2], st.buf[headroom-1] = '\r', '\n'
			st.buf = append(st.buf, '\r', '\n')
			out = st.buf[start:]
		}
		err = st.writeConn(out)
	}
	st.written = time.Now()
	if cap(st.buf) > maxKeptBuffer {
		b := st.buf[:0]
		bigBuffers.Put(&b)
		st.buf = nil
	}
	return err
}

// writeConn writes b to the hijacked connection.
func (st *stream) writeConn(b []byte) error {
	st.moveDeadline()
	_, err := st.conn.Write(b)
	return err
}

// moveDeadline keeps the connection's write deadline ahead. A client that
// stops reading is dropped once a write has waited WriteTimeout, while an
// idle stream may live forever. Moving the deadline costs a timer update,
// so it moves only when less than three quarters of WriteTimeout are left:
// a write still gets at least that.
func (st *stream) moveDeadline() {
	timeout := st.h.cfg.WriteTimeout
	now := time.Now()
	if st.deadline.Sub(now) >= timeout*3/4 {
		return
	}
	st.deadline = now.Add(timeout)
	if st.conn != nil {
		_ = st.conn.SetWriteDeadline(st.deadline)
	} else {
		_ = st.rc.SetWriteDeadline(st.deadline)
	}
}

// clientText returns the text a client may see for err, and whether err is
// an internal failure (to be logged in full) rather than the client's doing.
func clientText(err error) (text string, internal bool) {
	var berr *binding.Error
	if errors.As(err, &berr) {
		return berr.Error(), false
	}
	var bind *broker.BindError
	if errors.As(err, &bind) {
		switch {
		case errors.Is(err, broker.ErrExchangeNotFound):
			return fmt.Sprintf("Exchange %q does not exist.", bind.Binding.Exchange), false
		case errors.Is(err, broker.ErrAccessRefused):
			return fmt.Sprintf("Access to exchange %q is not allowed.", bind.Binding.Exchange), false
		}
	}
	if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrConnectionLost) || errors.Is(err, broker.ErrClosed) {
		return textUnavailable, false
	}
	return textInternal, true
}
