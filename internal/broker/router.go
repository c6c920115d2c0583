package broker

import "eventsproxy/internal/topic"

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
	// made once rather than per message.
	msg   *Message
	visit func(*keyState)
}

func newRouter(s *session) *router {
	r := &router{s: s}
	r.visit = r.push
	return r
}

// route pushes m to the subscriptions whose bindings match it. The
// connection calls it for each message in queue order, from one goroutine;
// it never waits for a subscription.
func (r *router) route(m *Message) {
	s := r.s
	s.metrics.MessagesReceived.Inc()
	r.seq++
	s.mu.Lock()
	defer s.mu.Unlock()
	trie := s.tries[m.Exchange]
	if trie == nil {
		return
	}
	r.msg = m
	trie.Match(topic.SplitKey(m.RoutingKey), r.visit)
	for _, k := range m.CC {
		trie.Match(topic.SplitKey(k), r.visit)
	}
	r.msg = nil
}

// push gives the current message to the subscriptions of ks that do not
// have it yet: a message that matches several bindings, or several keys,
// of one subscription reaches it once.
func (r *router) push(ks *keyState) {
	for sub := range ks.subs {
		if sub.seq != r.seq {
			sub.seq = r.seq
			sub.push(r.msg)
		}
	}
}
