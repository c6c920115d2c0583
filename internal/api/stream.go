package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"sync"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/sse"
)

// Event kinds of the wire contract (the README's "The event contract").
const (
	kindReady    = "ready"
	kindPing     = "ping"
	kindError    = "error"
	kindOverflow = "overflow"
	kindMessage  = "message"
	kindGap      = "gap"
)

// messageHead and messageTail frame a message's data, which is one line, as
// sse.AppendEvent would.
var messageHead, messageTail = sse.Frame(kindMessage)

// messageEvent returns msg's `message` event: framed once per message and
// shared by every stream that sends it.
func messageEvent(msg *broker.Message) []byte {
	return msg.Framed(messageHead, messageTail)
}

// messageEvent returns msg's `message` event in the form the stream asked
// for: with properties and headers (properties=1) or without. Each form
// is framed once per message, the first time a stream asks for it.
func (st *stream) messageEvent(msg *broker.Message) []byte {
	if st.props {
		return msg.FramedProperties(messageHead, messageTail)
	}
	return msg.Framed(messageHead, messageTail)
}

// stream is one client's open connect request: its subscription's events,
// written by out.
type stream struct {
	h     *Handler
	out   writer
	addr  string
	start time.Time
	// principal is whom the stream is for (nil with access control off).
	principal *access.Principal

	// buf holds the events of one write from buf[headroom:]; the bytes
	// before are room for the writer's framing.
	buf []byte
	// written is when the last write ended; window is the pacing window
	// the stream last counted itself in (see pacer.wrote).
	written time.Time
	window  int64

	bindings, delivered, dropped int

	// resume: the client opted in; rs is then the stream's resumable
	// state, lastSeq the sequence number that its events' ids name, and
	// kick makes it let go of rs for a reconnect.
	resume  bool
	rs      *resumable
	lastSeq uint64
	kick    func()
	// first: nothing written yet (the first bytes carry `retry:`).
	first bool
	// props: the client asked for messages' properties and headers
	// (properties=1).
	props bool
}

// maxTake bounds the messages (by broker.Message.Size) that one write
// takes from the buffer, so that a stream stuck in a write holds at most
// that besides its buffer's budget. A write that took half of it or more
// leaves a backlog: the next one does not wait to gather.
const maxTake = 256 << 10

// open parses the stream's bindings, subscribes (or, resuming, takes its
// lingering stream over) and sends `ready`.
func (st *stream) open(ctx context.Context, r *http.Request, q url.Values) (Subscription, error) {
	h := st.h
	bs, err := binding.FromQuery(q, h.cfg.Limits)
	if err != nil {
		return nil, err
	}
	if err := st.principal.Check(bs); err != nil {
		return nil, err
	}
	st.bindings = len(bs)
	var key, gap string
	if st.resume {
		k, _ := json.Marshal(bs)
		key = string(k)
		if st.props {
			// A reconnect that asks for the other form takes a stream
			// that asked for this one over no more than one with other
			// bindings: its messages were taken in that form.
			key += "+properties"
		}
		if last := lastEventID(r, q); last != "" {
			rs, reason := h.res.take(last, key, st.kick, ctx.Done())
			if rs != nil {
				return st.resumed(rs, last)
			}
			gap = reason
		}
	}
	sub, err := st.subscribe(ctx, bs)
	if err != nil {
		return nil, err
	}
	if st.resume {
		st.rs = h.res.add(key, sub, st.kick)
	}
	if err := st.send(kindReady, []byte("{}")); err != nil {
		return sub, err
	}
	h.cfg.Metrics.ReadySeconds.Observe(time.Since(st.start).Seconds())
	if gap != "" {
		// Counted once told: a request refused before its stream started
		// resumed nothing, and failed no resume.
		if err := st.sendGap(gap); err != nil {
			return sub, err
		}
	}
	return sub, nil
}

// brokerPoll is how often the handler looks whether the broker
// connection is back while streams wait for it.
const brokerPoll = 250 * time.Millisecond

// brokerUp returns a channel that is closed once the broker connection is
// seen up. The first caller of an outage starts the one goroutine that
// looks, every brokerPoll, until then or until the handler shuts down;
// Wait waits for it as for the streams. After Shutdown it returns nil: the
// caller sees the shutdown.
func (h *Handler) brokerUp() <-chan struct{} {
	h.upMu.Lock()
	defer h.upMu.Unlock()
	if h.up != nil || h.upOver {
		return h.up
	}
	up := make(chan struct{})
	h.up = up
	h.streams.Add(1)
	go func() {
		defer h.streams.Done()
		t := time.NewTicker(brokerPoll)
		defer t.Stop()
		for !h.broker.Connected() {
			select {
			case <-t.C:
			case <-h.shutdown:
				return
			case <-h.streamsCtx.Done():
				return
			}
		}
		h.upMu.Lock()
		h.up = nil
		h.upMu.Unlock()
		close(up)
	}()
	return up
}

// textWaiting is the comment that a resumable stream writes while it waits
// for the broker connection, at once and then every ping interval.
const textWaiting = ": waiting for the broker\n\n"

// subscribe subscribes to bs. A resumable stream that finds the broker
// connection down waits until it is back, rather than end: it writes its
// `retry:` field and a comment at once, and a comment every ping interval,
// which keep the connection and any proxy's idle timer alive without an
// event (so its first event is still `ready`, and a reconnect in the
// meantime, with no id to send, is a new stream again).
func (st *stream) subscribe(ctx context.Context, bs []binding.Binding) (Subscription, error) {
	h := st.h
	var ping *time.Ticker
	var expired <-chan time.Time
	for {
		sub, err := h.broker.Subscribe(ctx, bs, broker.SubscribeOptions{Survive: st.resume, Properties: st.props})
		switch {
		case err == nil:
			return sub, nil
		case ctx.Err() != nil:
			return nil, errClientGone
		case !st.resume || errors.Is(err, errReadyTimeout):
			// A ready timeout, which wraps ErrUnavailable, comes with the
			// broker connection up (binds that are slow, under a bind
			// flood say): a resumable stream gets its error too.
			return nil, err
		case !errors.Is(err, broker.ErrUnavailable) && !errors.Is(err, broker.ErrConnectionLost):
			return nil, err
		}
		if ping == nil {
			ping = time.NewTicker(h.cfg.PingInterval)
			defer ping.Stop()
			// The token's expiry ends a waiting stream as it ends a
			// live one.
			var stop func()
			expired, stop = expiry(st.principal)
			defer stop()
			st.begin(len(textWaiting) + 16)
			st.buf = fmt.Appendf(st.buf, "retry: %d\n", retryMillis)
			st.first = false
			st.buf = append(st.buf, textWaiting...)
			if err := st.writeOnce(); err != nil {
				return nil, err
			}
		}
		up := h.brokerUp()
		for waiting := true; waiting; {
			select {
			case <-ctx.Done():
				return nil, errClientGone
			case <-h.shutdown:
				return nil, errShutdown
			case <-expired:
				return nil, errExpired
			case <-ping.C:
				st.begin(len(textWaiting))
				st.buf = append(st.buf, textWaiting...)
				if err := st.writeOnce(); err != nil {
					return nil, err
				}
			case <-up:
				waiting = false
			}
		}
	}
}

// resumed sends `ready` on the stream rs that the client's token last
// names, then what rs wrote after that token, which the client may never
// have processed.
func (st *stream) resumed(rs *resumable, last string) (Subscription, error) {
	m := st.h.cfg.Metrics
	tok, _ := parseToken(last)
	st.rs, st.lastSeq = rs, tok.seq
	replay, covered := rs.since(tok.seq)
	// What the client processed is no longer needed.
	keep := append(rs.history[:0], replay...)
	clear(rs.history[len(keep):])
	rs.history, rs.bytes, replay = keep, 0, keep
	for _, s := range keep {
		rs.bytes += s.size
	}
	if err := st.send(kindReady, []byte("{}")); err != nil {
		return rs.sub, err
	}
	m.ReadySeconds.Observe(time.Since(st.start).Seconds())
	// A broker connection lost while the stream lingered is a gap in its
	// subscription, which serve tells after the replay.
	if !covered {
		if err := st.sendGap(gapEvicted); err != nil {
			return rs.sub, err
		}
	} else {
		m.Resumes.WithLabelValues("ok", "").Inc()
	}
	if len(replay) == 0 {
		return rs.sub, nil
	}
	size := 0
	for _, s := range replay {
		size += s.size + tokenLen + 8
	}
	st.begin(size)
	for _, s := range replay {
		if s.msg == nil {
			st.lastSeq = s.seq
			st.buf = st.appendEvent(st.buf, kindGap, gapData(s.reason))
			continue
		}
		st.buf = st.appendMessage(st.buf, s.msg, s.seq)
	}
	st.lastSeq = replay[len(replay)-1].seq
	return rs.sub, st.write()
}

// lastEventID is the token a reconnect names: EventSource's header, or the
// query parameter of clients that open a new connection themselves; q is
// r's query.
func lastEventID(r *http.Request, q url.Values) string {
	if v := r.Header.Get("Last-Event-ID"); v != "" {
		return v
	}
	return q.Get("lastEventId")
}

// serve delivers sub's messages and pings, on a goroutine of the writer's
// (goOn), until the stream ends, and then gives sub back and finishes the
// stream.
//
// A stream whose messages come less than the pace (see pacer) after its
// last write waits until the pace has gone by, or its buffer is half
// full, before it takes them; while messages keep coming it then wakes up
// only at that pace, not for each message.
//
// An idle stream's goroutine waits with a small stack (see serving.wait).
// A write grows it to 4 KiB for good: a collection halves a stack only
// when less than a quarter of it is in use, counting 800 bytes that the
// runtime keeps free for its own calls, which a waiting stream's never
// is. So after each ping, which every stream writes now and then, the
// stream goes on on a new goroutine, with a small stack again, where the
// stream has a goroutine of its own (HTTP/1).
func (st *stream) serve(ctx context.Context, sub Subscription) {
	sv := &serving{st: st, ctx: ctx, sub: sub, ping: time.NewTicker(st.h.cfg.PingInterval)}
	sv.expired, sv.stopExpiry = expiry(st.principal)
	if st.rs != nil {
		// A stream taken over may hold messages whose wake-up the stream
		// that served it before took as it let go.
		if _, err := sv.take(); err != nil {
			sv.end(err)
			return
		}
	}
	// Over HTTP/1 on a goroutine whose stack holds little below the
	// stream's waits: run, and the runner's loop.
	st.out.goOn(sv.run)
}

// serving is serve's state between wake-ups, which the goroutine that
// serves the stream may hand to another.
type serving struct {
	st  *stream
	ctx context.Context
	sub Subscription

	ping       *time.Ticker
	expired    <-chan time.Time
	stopExpiry func()
	// due fires when a paced stream may write again (made when first
	// needed: most streams never are); paced says that the stream waits
	// for it rather than for Notify.
	due   *time.Timer
	paced bool

	msgs    []*broker.Message
	backlog bool
}

// What woke a waiting stream up (serving.wait).
const (
	wokeClientGone = iota
	wokeShutdown
	wokeSubDone
	wokeExpired
	wokePing
	wokeNotify
	wokeDue
	wokeHalf
)

// run serves the stream until it ends, or until its goroutine hands it to
// a new one.
func (sv *serving) run() {
	for {
		handOff, err := sv.loop()
		if !handOff {
			sv.end(err)
			return
		}
		if sv.st.out.goOnNew(sv.run) {
			return
		}
	}
}

// loop serves the stream until it ends, and returns why; or, after a
// ping, reports that a new goroutine may go on (handOff).
func (sv *serving) loop() (handOff bool, err error) {
	st := sv.st
	for {
		woke, now := sv.wait()
		switch woke {
		case wokeClientGone:
			return false, errClientGone
		case wokeShutdown:
			return false, errShutdown
		case wokeSubDone:
			return false, sv.sub.Err()
		case wokeExpired:
			return false, errExpired
		case wokePing:
			if err := st.ping(now); err != nil {
				return false, err
			}
			return true, nil
		case wokeNotify:
			if wait := time.Until(st.written.Add(st.h.pace.current())); !sv.backlog && wait > 0 {
				// Messages come faster than the pace: let a few more
				// gather, so that one write carries them.
				sv.due = resetTimer(sv.due, wait)
				sv.paced = true
				continue
			}
		case wokeDue:
		case wokeHalf:
			// A burst: take it before the buffer overflows.
			sv.due.Stop()
		}
		if err := sv.deliver(); err != nil {
			return false, err
		}
	}
}

// wait waits for what the stream must do next. It is all that an idle
// stream's stack holds besides loop and run, so it is kept out of them.
//
//go:noinline
func (sv *serving) wait() (woke int, now time.Time) {
	notify, half, dueC := sv.sub.Notify(), (<-chan struct{})(nil), (<-chan time.Time)(nil)
	if sv.paced {
		notify, half, dueC = nil, sv.sub.Half(), sv.due.C
	}
	select {
	case <-sv.ctx.Done():
		return wokeClientGone, now
	case <-sv.st.h.shutdown:
		return wokeShutdown, now
	case <-sv.sub.Done():
		return wokeSubDone, now
	case <-sv.expired:
		return wokeExpired, now
	case now = <-sv.ping.C:
		return wokePing, now
	case <-notify:
		return wokeNotify, now
	case <-dueC:
		return wokeDue, now
	case <-half:
		return wokeHalf, now
	}
}

// deliver takes the messages that woke the stream up and writes them.
func (sv *serving) deliver() error {
	if sv.paced {
		// What Notify says now, the take below sees.
		select {
		case <-sv.sub.Notify():
		default:
		}
	}
	sent, err := sv.take()
	if err != nil {
		return err
	}
	if sent && sv.paced && !sv.backlog {
		// Still busy, most likely: look again once the pace has gone
		// by, without a wake-up for each message until then.
		sv.due = resetTimer(sv.due, max(time.Until(sv.st.written.Add(sv.st.h.pace.current())), 0))
	} else {
		// The messages stopped (or a backlog is left): wait for Notify.
		sv.paced = false
	}
	return nil
}

// end stops the stream's timers, gives its subscription back and
// finishes it for err.
func (sv *serving) end(err error) {
	sv.ping.Stop()
	sv.stopExpiry()
	if sv.due != nil {
		sv.due.Stop()
	}
	sv.st.release(sv.sub, err)
	sv.st.finish(err)
}

// ping writes a `ping` event for now.
func (st *stream) ping(now time.Time) error {
	return st.send(kindPing, fmt.Appendf(nil, `{"time":%q}`, now.UTC().Format("2006-01-02T15:04:05.000Z07:00")))
}

// take sends the subscription's gap, if it has one, and its messages; it
// reports whether it sent anything.
func (sv *serving) take() (sent bool, err error) {
	st := sv.st
	if sv.sub.TakeGap() {
		// The broker connection was lost; the bindings are back.
		if err := st.sendGap(gapBroker); err != nil {
			return true, err
		}
		sent = true
	}
	var dropped int
	sv.msgs, dropped = sv.sub.TakeUpTo(sv.msgs[:0], maxTake)
	uncounted := sv.sub.Uncounted()
	if len(sv.msgs) == 0 && dropped == 0 && !uncounted {
		sv.backlog = false
		return sent, nil
	}
	taken, err := st.sendMessages(sv.msgs, dropped, uncounted)
	if err != nil {
		return true, err
	}
	sv.backlog = taken >= maxTake/2
	clear(sv.msgs)
	return true, nil
}

// resetTimer makes t (nil: a new timer) fire after d.
func resetTimer(t *time.Timer, d time.Duration) *time.Timer {
	if t == nil {
		return time.NewTimer(d)
	}
	t.Reset(d)
	return t
}

// finish ends the stream for err: the client gets its `error` event, if
// any, and the end of the response; the stream is counted and logged.
func (st *stream) finish(err error) {
	h := st.h
	f := classify(err)
	if st.resume && f.why == endShutdown {
		// EventSource reconnects after a plain end, elsewhere.
		f.text = ""
	}
	if f.internal {
		h.log.Error("stream failed", "err", err)
	}
	if f.text != "" {
		data, _ := json.Marshal(f.text)
		_ = st.send(kindError, data)
	}
	st.out.end(f.why)
	h.limits.release(st.addr)
	st.principal.Release()
	m := h.cfg.Metrics
	m.StreamsOpen.Dec()
	m.StreamsEnded.WithLabelValues(f.why).Inc()
	// LogAttrs: nothing boxed, once per stream.
	h.log.LogAttrs(context.Background(), slog.LevelInfo, "stream ended", slog.String("why", f.why), slog.String("client", st.addr),
		slog.Duration("duration", time.Since(st.start).Round(time.Millisecond)),
		slog.Int("bindings", st.bindings), slog.Int("delivered", st.delivered), slog.Int("dropped", st.dropped))
}

// sendMessages writes an `overflow` event when messages were dropped, or
// may have been in a number nobody knows (uncounted), then the messages,
// in one write. It returns the messages' broker.Message.Size, summed.
func (st *stream) sendMessages(msgs []*broker.Message, dropped int, uncounted bool) (taken int, err error) {
	m := st.h.cfg.Metrics
	size := 64 // the overflow event
	for _, msg := range msgs {
		size += len(st.messageEvent(msg)) + tokenLen
		taken += msg.Size()
	}
	st.begin(size)
	switch {
	case uncounted:
		st.dropped += dropped
		m.MessagesDropped.Add(float64(dropped))
		st.buf = st.appendEvent(st.buf, kindOverflow, fmt.Appendf(nil, `{"dropped":%d,"uncounted":true}`, dropped))
	case dropped > 0:
		st.dropped += dropped
		m.MessagesDropped.Add(float64(dropped))
		st.buf = st.appendEvent(st.buf, kindOverflow, fmt.Appendf(nil, `{"dropped":%d}`, dropped))
	}
	for _, msg := range msgs {
		if st.rs == nil {
			st.buf = append(st.buf, st.messageEvent(msg)...)
			continue
		}
		rs := st.rs
		rs.seq++
		n := len(st.buf)
		st.buf = st.appendMessage(st.buf, msg, rs.seq)
		rs.remember(sent{seq: rs.seq, msg: msg, size: len(st.buf) - n}, st.h.cfg.ResumeBytes)
		st.lastSeq = rs.seq
	}
	if err := st.write(); err != nil {
		return taken, err
	}
	if len(msgs) > 0 {
		st.delivered += len(msgs)
		m.MessagesDelivered.Add(float64(len(msgs)))
		m.DeliveryLatencySeconds.Observe(time.Since(msgs[0].Received).Seconds())
	}
	return taken, nil
}

// sendGap writes a `gap` event for reason and counts it. But for evicted
// (told again at each resume from a token the history does not cover),
// the gap takes a sequence number and its place in the history, so that a
// reconnect from a token before it is told again, and one from its own
// token is not.
func (st *stream) sendGap(reason string) error {
	data := gapData(reason)
	rs := st.rs
	if rs == nil || reason == gapEvicted {
		if err := st.send(kindGap, data); err != nil {
			return err
		}
	} else {
		rs.seq++
		st.lastSeq = rs.seq
		st.begin(len(kindGap) + len(data) + 32 + tokenLen)
		n := len(st.buf)
		st.buf = st.appendEvent(st.buf, kindGap, data)
		rs.remember(sent{seq: rs.seq, reason: reason, size: len(st.buf) - n}, st.h.cfg.ResumeBytes)
		if err := st.writeOnce(); err != nil {
			return err
		}
	}
	st.h.cfg.Metrics.Resumes.WithLabelValues("gap", reason).Inc()
	return nil
}

// gapData is the data of a `gap` event for reason.
func gapData(reason string) []byte {
	return fmt.Appendf(nil, `{"reason":%q}`, reason)
}

// send writes one event. The buffer is not kept: the events written this
// way (ready, ping, error, a gap mostly) are all that an idle stream writes,
// and it should hold no buffer between them.
func (st *stream) send(kind string, data []byte) error {
	st.begin(len(kind) + len(data) + 32 + tokenLen)
	st.buf = st.appendEvent(st.buf, kind, data)
	return st.writeOnce()
}

// writeOnce writes st.buf and lets go of it, as send does: for what an
// idle or waiting stream writes.
func (st *stream) writeOnce() error {
	err := st.write()
	st.buf = nil
	return err
}

// idTail is what sse.AppendEvent ends an event with.
const idTail = "id: -\n\n"

// appendEvent appends one event; on a resumable stream with its token, and
// the first one with a `retry:` field.
func (st *stream) appendEvent(dst []byte, kind string, data []byte) []byte {
	if !st.resume {
		return sse.AppendEvent(dst, kind, data)
	}
	if st.first {
		st.first = false
		dst = fmt.Appendf(dst, "retry: %d\n", retryMillis)
	}
	dst = sse.AppendEvent(dst, kind, data)
	return st.appendID(dst[:len(dst)-len(idTail)], st.lastSeq)
}

// appendMessage appends msg's event with the token of seq.
func (st *stream) appendMessage(dst []byte, msg *broker.Message, seq uint64) []byte {
	ev := st.messageEvent(msg)
	dst = append(dst, ev[:len(ev)-len(idTail)]...)
	return st.appendID(dst, seq)
}

// appendID ends an event with the id of seq. An event of a resumable
// stream that has no token yet (an `error` before `ready`) has no id at
// all, so that EventSource keeps the one it had: `-` would make its
// reconnect a resume from nowhere, told `gap` `unknown`.
func (st *stream) appendID(dst []byte, seq uint64) []byte {
	if st.rs == nil {
		if st.resume {
			return append(dst, '\n')
		}
		return append(dst, idTail...)
	}
	dst = append(dst, "id: "...)
	dst = append(dst, st.rs.prefix...)
	dst = appendSeq(dst, seq)
	return append(dst, "\n\n"...)
}

// maxKeptBuffer is the largest write buffer a stream keeps between writes:
// a burst may need a big one once, and an idle stream should not hold it.
// Bigger ones are shared between streams through bigBuffers.
const maxKeptBuffer = 8 << 10

// bigBuffers holds write buffers above maxKeptBuffer between writes.
var bigBuffers sync.Pool // of *[]byte

// begin empties the write buffer, keeping the room for the writer's
// framing, for events of about size bytes.
func (st *stream) begin(size int) {
	need := headroom + size + 2
	switch {
	case need <= cap(st.buf):
	case need > maxKeptBuffer:
		if p, _ := bigBuffers.Get().(*[]byte); p != nil && cap(*p) >= need {
			st.buf = *p
		} else {
			st.buf = make([]byte, 0, need)
		}
	default:
		// Once, rather than growing as the events are appended.
		st.buf = make([]byte, 0, max(need, 256))
	}
	st.buf = st.buf[:headroom]
}

// write sends the events in st.buf to the client in one write.
func (st *stream) write() error {
	if len(st.buf) == headroom {
		// Nothing to send; on HTTP/1.1 an empty chunk would end the body.
		return nil
	}
	err := st.out.write(st.buf)
	st.written = time.Now()
	st.h.pace.wrote(st.written, &st.window)
	if cap(st.buf) > maxKeptBuffer {
		b := st.buf[:0]
		bigBuffers.Put(&b)
		st.buf = nil
	}
	if err != nil {
		return fmt.Errorf("%w: %w", errWrite, err)
	}
	return nil
}
