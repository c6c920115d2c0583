package api

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
)

// propertiesParam is the connect request's query parameter that opts in
// to messages' properties and headers, with the value 1.
const propertiesParam = "properties"

// connect serves GET /api/events/v1/connect/: it admits the request or
// refuses it, starts the writer of the request's transport and runs the
// stream.
func (h *Handler) connect(w http.ResponseWriter, r *http.Request) {
	// Every answer carries the CORS header, refusals too: a browser on
	// another origin must see the 204 (or it counts as a network error and
	// retries) and be able to read a 503's body.
	w.Header().Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	if h.cfg.CORSCredentials {
		w.Header().Set("Access-Control-Allow-Credentials", "true")
	}
	// EventSource reconnects with the last id it saw, `-`; 204 tells it to
	// stop, as the original service did: a client that wants more opens a
	// new connection.
	// The query, parsed once for the whole admission.
	q := r.URL.Query()
	resume := h.res != nil && q.Get("resume") == "1"
	if r.Header.Get("Last-Event-ID") != "" && !resume {
		w.WriteHeader(http.StatusNoContent)
		return
	}
	principal, ok := h.authorize(w, r)
	if !ok {
		return
	}
	// A resumable stream waits out the broker's absence (a reconnect may
	// take over a stream that does, with its bindings); refused with a
	// 503, an EventSource would give up for good.
	addr, ok := h.admit(w, r, resume)
	if !ok {
		principal.Release()
		return
	}
	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	st := &stream{h: h, addr: addr, start: time.Now(), principal: principal, resume: resume, first: true,
		props: q.Get(propertiesParam) == "1"}
	ctx := r.Context()
	var err error
	var h1 *http1Writer
	h.streams.Add(2) // the stream and its connection's reader, if hijacked
	if conn, _, herr := http.NewResponseController(w).Hijack(); herr == nil {
		// The header goes out at once, before any binding is made; when
		// the subscription needs no broker round trip, in the write of
		// `ready` (one system call less). A resumable stream's may wait
		// for the stream it takes over: it sends its header first.
		later := !resume && tellsWait(h.broker)
		ctx, h1, err = h.startHTTP1(conn, r, hdr, later)
		if later {
			w := h1
			ctx = broker.BeforeWait(ctx, func() <-chan time.Time {
				_ = w.flushHead()
				return nil
			})
		}
		st.out = h1
	} else {
		// HTTP/2: net/http keeps the connection.
		h.streams.Add(-2)
		st.out, err = startHTTP2(w, h.cfg.WriteTimeout)
	}
	if err != nil {
		st.finish(err)
		return
	}
	if resume {
		// A reconnect that takes this stream over kicks it: it ends as
		// if its client had left, and lingers for the taker. An
		// HTTP/1.x stream's context is its writer's own already; a
		// stream that did not opt in needs none.
		if h1 != nil {
			st.kick = h1.stop
		} else {
			var kick context.CancelFunc
			ctx, kick = context.WithCancel(ctx)
			st.kick = kick
		}
	}
	sub, err := st.open(ctx, r, q)
	if err != nil {
		st.release(sub, err)
		st.finish(err)
		return
	}
	st.serve(ctx, sub)
}

// release gives sub back once the stream ends for err; a resumable stream
// whose client left, or whose token expired, lingers instead, for a
// reconnect (with a fresh token) to continue it.
func (st *stream) release(sub Subscription, err error) {
	if st.rs == nil {
		if sub != nil {
			sub.Close()
		}
		return
	}
	if errors.Is(err, errClientGone) || errors.Is(err, errWrite) || errors.Is(err, errExpired) {
		st.h.res.park(st.rs)
		return
	}
	st.h.res.end(st.rs)
	sub.Close()
}

// admit refuses the request, and returns false, when the service cannot
// take another stream, or this client another one; else it takes a slot
// for the client's address, which the stream's end gives back. A
// resumable request, which may wait for the broker, is admitted while the
// broker connection is down.
func (h *Handler) admit(w http.ResponseWriter, r *http.Request, resumable bool) (addr string, ok bool) {
	m := h.cfg.Metrics
	if h.shuttingDown() {
		m.StreamsRefused.WithLabelValues(metrics.RefusedShuttingDown).Inc()
		refuse(w, http.StatusServiceUnavailable, "ShuttingDown", textShutdown, 1)
		return "", false
	}
	if !resumable && !h.broker.Connected() {
		m.StreamsRefused.WithLabelValues(metrics.RefusedBrokerUnavailable).Inc()
		refuse(w, http.StatusServiceUnavailable, "ServiceUnavailable", textUnavailable, 5)
		return "", false
	}
	addr = h.clientAddr(r)
	if !h.allowConnect(w, addr) {
		return "", false
	}
	switch h.limits.acquire(addr) {
	case refusedTotal:
		m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnections).Inc()
		refuse(w, http.StatusServiceUnavailable, "TooManyConnections",
			"The server has too many open streams; please retry later.", 10)
		return "", false
	case refusedPerAddr:
		m.StreamsRefused.WithLabelValues(metrics.RefusedMaxConnectionsPerIP).Inc()
		refuse(w, http.StatusTooManyRequests, "TooManyConnectionsFromAddress",
			"Too many open streams from your address; close some or retry later.", 10)
		return "", false
	}
	m.StreamsOpen.Inc()
	return addr, true
}

// refuse answers a connect request that will get no stream.
func refuse(w http.ResponseWriter, status int, code, text string, retryAfterSeconds int) {
	w.Header().Set("Retry-After", strconv.Itoa(retryAfterSeconds))
	writeJSON(w, status, errorBody{Code: code, Message: text})
}
