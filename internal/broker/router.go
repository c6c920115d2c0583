package broker

import (
	"time"

	"golang.org/x/time/rate"

	"eventsproxy/internal/topic"
)

// unroutedLogEvery spaces the log lines about unrouted messages: a
// publisher that uses BCC, or an exchange-to-exchange binding, may bring
// many, and one line now and then (with a count) says enough.
const unroutedLogEvery = 10 * time.Second

// router takes the connection's messages and pushes each to the
// subscriptions whose bindings match it. Its fields are the consuming
// goroutine's alone; the keys and tries it reads are the session's, under
// session.mu.
type router struct {
	s *session
	// seq numbers the messages routed, so that a message reaches each
	// subscription once (see push).
	seq uint64
	// msg is the message being routed, for visit: the method value push,
	// made once rather than per message. hit says that it matched a key,
	// wanted that it reached a subscription.
	msg         *Message
	hit, wanted bool
	visit       func(*keyState)
	// count is the method value countDrop, for drops.
	count func(*keyState)
	// buffered is what the pushes of msg added to the buffers' bytes, for
	// one update of the gauge per message rather than per subscription.
	buffered int

	// Unrouted messages since the last log line, and the spacing of those.
	unrouted    int
	unroutedLog *rate.Limiter
	// Messages over Limits.MaxMessageBytes since the last log line, and
	// the spacing of those.
	tooLarge    int
	tooLargeLog *rate.Limiter
	// Messages dropped by the broker since the last log line, uncounted
	// losses among them, and the spacing of those lines.
	brokerDrops, uncounted int
	dropLog                *rate.Limiter
}

func newRouter(s *session) *router {
	r := &router{s: s, unroutedLog: rate.NewLimiter(rate.Every(unroutedLogEvery), 1),
		tooLargeLog: rate.NewLimiter(rate.Every(time.Second), 1),
		dropLog:     rate.NewLimiter(rate.Every(unroutedLogEvery), 1)}
	r.visit, r.count = r.push, r.countDrop
	return r
}

// route pushes m to the subscriptions whose bindings match it. The
// connection calls it for each message in queue order, from one goroutine;
// it never waits for a subscription.
func (r *router) route(m *Message) {
	s := r.s
	r.seq++
	if m.drop != dropNone {
		r.routeDrop(m)
		return
	}
	s.metrics.MessagesReceived.Inc()
	if m.size == 0 {
		// Once, here, rather than by each subscription's buffer: nothing
		// else has the message yet.
		m.size = m.measure()
	}
	if len(m.Body) > s.limits.MaxMessageBytes {
		// Routed all the same: each subscription it matches counts it as
		// dropped, and its stream says so.
		r.noteTooLarge(m)
	}
	s.mu.Lock()
	if trie := s.tries[m.Exchange]; trie != nil {
		r.msg, r.hit, r.wanted = m, false, false
		trie.Match(topic.SplitKey(m.RoutingKey), r.visit)
		for _, k := range m.CC {
			trie.Match(topic.SplitKey(k), r.visit)
		}
		r.msg = nil
		if r.buffered != 0 {
			s.metrics.BufferedBytes.Add(float64(r.buffered))
			r.buffered = 0
		}
		s.noteRoutedLocked(m.Exchange, r.wanted)
		if r.wanted {
			s.metrics.MessagesWanted.Inc()
		}
		if r.hit {
			s.mu.Unlock()
			return
		}
	}
	s.mu.Unlock()
	r.noteUnrouted(m)
}

// routeDrop counts a message that the broker dropped from our queue in
// the subscriptions that would have had it, or an uncounted loss in every
// subscription.
func (r *router) routeDrop(m *Message) {
	s := r.s
	r.brokerDrops++
	s.mu.Lock()
	if m.drop == dropUncounted {
		s.metrics.BrokerDropsUncounted.Inc()
		r.uncounted++
		for _, ks := range s.keys {
			for sub := range ks.subs {
				if sub.seq != r.seq {
					sub.seq = r.seq
					sub.loseUncounted()
				}
			}
		}
	} else {
		s.metrics.MessagesBrokerDropped.Inc()
		if trie := s.tries[m.Exchange]; trie != nil {
			trie.Match(topic.SplitKey(m.RoutingKey), r.count)
			for _, k := range m.CC {
				trie.Match(topic.SplitKey(k), r.count)
			}
		}
	}
	s.mu.Unlock()
	if !r.dropLog.Allow() {
		return
	}
	s.log.Warn("the broker dropped messages from the queue (full, or expired): the process fell behind; streams are told with overflow events",
		"dropped", r.brokerDrops, "uncounted", r.uncounted)
	r.brokerDrops, r.uncounted = 0, 0
}

// countDrop counts the dropped message being routed in the subscriptions
// of ks that have not counted it yet.
func (r *router) countDrop(ks *keyState) {
	for sub := range ks.subs {
		if sub.seq != r.seq {
			sub.seq = r.seq
			sub.countDrop()
		}
	}
}

// noteUnrouted counts a message that matched none of our keys, though the
// broker put it in our queue: it came by a route that the message does not
// show, and no stream gets it.
func (r *router) noteUnrouted(m *Message) {
	r.s.metrics.MessagesUnrouted.Inc()
	r.unrouted++
	if !r.unroutedLog.Allow() {
		return
	}
	r.s.log.Warn("message matched no binding: it reached the queue by a route the process cannot see (BCC, an exchange-to-exchange binding, an alternate exchange) and no stream gets it",
		"exchange", m.Exchange, "routingKey", m.RoutingKey, "unrouted", r.unrouted)
	r.unrouted = 0
}

// noteTooLarge counts and logs, a line a second at most, a message over
// Limits.MaxMessageBytes.
func (r *router) noteTooLarge(m *Message) {
	s := r.s
	s.metrics.MessagesTooLarge.Inc()
	r.tooLarge++
	if !r.tooLargeLog.Allow() {
		return
	}
	s.log.Warn("message over --max-message-bytes dropped", "exchange", m.Exchange, "routingKey", m.RoutingKey,
		"bytes", len(m.Body), "max", s.limits.MaxMessageBytes, "too_large", r.tooLarge)
	r.tooLarge = 0
}

// push gives the current message to the subscriptions of ks that do not
// have it yet: a message that matches several bindings, or several keys,
// of one subscription reaches it once. A subscription whose bindings are
// not all back after a lost connection gets nothing yet: its gap, once
// they are, stands for what it misses until then. A subscription that
// asks for properties gets no message without them: such a message was
// taken before the subscription was in the router (see
// SubscribeOptions.Properties).
func (r *router) push(ks *keyState) {
	r.hit = true
	for sub := range ks.subs {
		if sub.seq != r.seq && !sub.rebinding && (!sub.props || r.msg.Props != nil) {
			r.wanted = true
			sub.seq = r.seq
			r.buffered += sub.push(r.msg)
		}
	}
}
