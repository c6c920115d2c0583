package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
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
)

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
type stream struct {
	h     *Handler
	w     http.ResponseWriter
	rc    *http.ResponseController
	buf   []byte
	start time.Time
	// deadline is the write deadline last set on the connection.
	deadline time.Time

	bindings, delivered, dropped int
}

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
	defer h.limits.release(addr)
	m.StreamsOpen.Inc()
	defer m.StreamsOpen.Dec()

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	st := &stream{h: h, w: w, rc: http.NewResponseController(w), start: time.Now()}
	why := endWrite
	if st.flush() == nil {
		why = st.serve(r.Context(), r)
	}
	m.StreamsEnded.WithLabelValues(why).Inc()
	h.log.Info("stream ended", "why", why, "client", addr,
		"duration", time.Since(st.start).Round(time.Millisecond),
		"bindings", st.bindings, "delivered", st.delivered, "dropped", st.dropped)
}

// refuse answers a connect request that will get no stream.
func refuse(w http.ResponseWriter, status int, code, text string, retryAfterSeconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeJSON(w, status, errorBody{Code: code, Message: text})
}

// serve runs the stream after its headers are sent and returns why it ended.
func (st *stream) serve(ctx context.Context, r *http.Request) (why string) {
	h := st.h
	bs, err := binding.FromQuery(r.URL.Query(), h.cfg.Limits)
	if err != nil {
		_ = st.sendError(err)
		return endBadRequest
	}
	st.bindings = len(bs)
	sub, err := h.broker.Subscribe(ctx, bs)
	if err != nil {
		if ctx.Err() != nil {
			return endClient
		}
		_ = st.sendError(err)
		var berr *broker.BindError
		if errors.As(err, &berr) && (errors.Is(err, broker.ErrExchangeNotFound) || errors.Is(err, broker.ErrAccessRefused)) {
			return endExchange
		}
		if errors.Is(err, broker.ErrUnavailable) || errors.Is(err, broker.ErrConnectionLost) {
			return endBroker
		}
		return endInternal
	}
	defer sub.Close()

	if err := st.send(kindReady, []byte("{}")); err != nil {
		return endWrite
	}
	h.cfg.Metrics.ReadySeconds.Observe(time.Since(st.start).Seconds())
	ping := time.NewTicker(h.cfg.PingInterval)
	defer ping.Stop()
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
// the messages, in one flush.
func (st *stream) sendMessages(msgs []*broker.Message, dropped int) error {
	m := st.h.cfg.Metrics
	st.buf = st.buf[:0]
	if dropped > 0 {
		st.dropped += dropped
		m.MessagesDropped.Add(float64(dropped))
		st.buf = sse.AppendEvent(st.buf, kindOverflow, fmt.Appendf(nil, `{"dropped":%d}`, dropped))
	}
	for _, msg := range msgs {
		st.buf = append(st.buf, msg.Event()...)
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

// send writes one event and flushes it.
func (st *stream) send(kind string, data []byte) error {
	st.buf = sse.AppendEvent(st.buf[:0], kind, data)
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
const maxKeptBuffer = 8 << 10

func (st *stream) write() error {
	// A client that stops reading is dropped once a write has waited
	// WriteTimeout, while an idle stream may live forever. Moving the
	// deadline costs a timer update, so it moves only when less than three
	// quarters of WriteTimeout are left: a write still gets at least that.
	timeout := st.h.cfg.WriteTimeout
	if now := time.Now(); st.deadline.Sub(now) < timeout*3/4 {
		st.deadline = now.Add(timeout)
		_ = st.rc.SetWriteDeadline(st.deadline)
	}
	_, err := st.w.Write(st.buf)
	if cap(st.buf) > maxKeptBuffer {
		st.buf = nil
	}
	if err != nil {
		return err
	}
	return st.flush()
}

func (st *stream) flush() error {
	return st.rc.Flush()
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
