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
	"eventsproxy/internal/sse"
)

// Event kinds of the wire contract (SPEC §1).
const (
	kindReady    = "ready"
	kindMessage  = "message"
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

// retryAfter is the Retry-After of a refusal while the broker is away.
const retryAfter = 5 * time.Second

// stream is one client's open connect request.
type stream struct {
	h     *Handler
	w     http.ResponseWriter
	rc    *http.ResponseController
	buf   []byte
	start time.Time

	delivered, dropped int
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
	if !h.broker.Connected() {
		w.Header().Set("Retry-After", strconv.Itoa(int(retryAfter.Seconds())))
		writeJSON(w, http.StatusServiceUnavailable, errorBody{Code: "ServiceUnavailable", Message: textUnavailable})
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)

	st := &stream{h: h, w: w, rc: http.NewResponseController(w), start: time.Now()}
	if err := st.flush(); err != nil {
		return
	}
	reason := st.serve(r.Context(), r)
	h.log.Info("stream ended",
		"duration", time.Since(st.start).Round(time.Millisecond),
		"delivered", st.delivered, "dropped", st.dropped, "reason", reason)
}

// serve runs the stream after its headers are sent and returns why it ended.
func (st *stream) serve(ctx context.Context, r *http.Request) string {
	h := st.h
	bs, err := binding.FromQuery(r.URL.Query(), h.cfg.Limits)
	if err != nil {
		_ = st.sendError(err)
		return "bad bindings"
	}
	sub, err := h.broker.Subscribe(ctx, bs)
	if err != nil {
		if ctx.Err() != nil {
			return "client gone before ready"
		}
		_ = st.sendError(err)
		return "subscribe: " + err.Error()
	}
	defer sub.Close()

	if err := st.send(kindReady, []byte("{}")); err != nil {
		return "write: client gone"
	}
	ping := time.NewTicker(h.cfg.PingInterval)
	defer ping.Stop()
	var msgs []*broker.Message
	for {
		select {
		case <-ctx.Done():
			return "client gone"
		case <-h.shutdown:
			_ = st.sendText(textShutdown)
			return "server shutdown"
		case <-sub.Done():
			_ = st.sendError(sub.Err())
			return "broker connection lost"
		case now := <-ping.C:
			data := fmt.Appendf(nil, `{"time":%q}`, now.UTC().Format("2006-01-02T15:04:05.000Z07:00"))
			if err := st.send(kindPing, data); err != nil {
				return "write: client gone"
			}
		case <-sub.Notify():
			var dropped int
			msgs, dropped = sub.Take(msgs[:0])
			if err := st.sendMessages(msgs, dropped); err != nil {
				return "write: client gone"
			}
			clear(msgs)
		}
	}
}

// sendMessages writes an `overflow` event when messages were dropped, then
// the messages, in one flush.
func (st *stream) sendMessages(msgs []*broker.Message, dropped int) error {
	st.buf = st.buf[:0]
	if dropped > 0 {
		st.dropped += dropped
		st.buf = sse.AppendEvent(st.buf, kindOverflow, fmt.Appendf(nil, `{"dropped":%d}`, dropped))
	}
	for _, m := range msgs {
		st.buf = sse.AppendEvent(st.buf, kindMessage, m.Data())
	}
	st.delivered += len(msgs)
	return st.write()
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

func (st *stream) write() error {
	// The deadline covers this write only: a client that stops reading is
	// dropped after WriteTimeout, while an idle stream may live forever.
	_ = st.rc.SetWriteDeadline(time.Now().Add(st.h.cfg.WriteTimeout))
	if _, err := st.w.Write(st.buf); err != nil {
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
