package broker

import (
	"context"
	"errors"
	"time"

	"eventsproxy/internal/topic"
)

// Surviving subscriptions outlive a lost connection. When a session ends,
// its surviving subscriptions are not done (see session.end): the Broker
// carries them to its next session, which adopts them. There each one is in
// the router at once, but passed by, while its keys are bound again through
// the worker like any subscription's (shared with the session's other
// subscriptions, covered by wider keys, handed over before a cover goes).
// Once every key of it is confirmed, it gets a gap, placed after the
// messages it still holds from the lost connection, and from then on every
// message routed to it: what it missed is all before the gap. A
// subscription still waiting for its bindings when the next session ends
// too is carried on to the one after, and gets one gap for both.

// lostBindWait is how long a survivor whose bind failed with the
// connection's loss waits for its session to end before it fails.
const lostBindWait = 30 * time.Second

// adopt moves subs, survivors of an earlier session, to s, and starts what
// gives each its gap once its bindings are back. It is called once, right
// after startSession; a subscription closed meanwhile is left out.
func (s *session) adopt(subs []*Subscription) {
	type adoption struct {
		sub     *Subscription
		answers <-chan error
		pending int
	}
	var adopted []adoption
	s.mu.Lock()
	for _, sub := range subs {
		sub.mu.Lock()
		if sub.closed {
			sub.mu.Unlock()
			continue
		}
		// From here Close releases sub in s, which it waits for: no
		// session but s touches sub's keys any more.
		old := sub.keys
		sub.s, sub.keys = s, nil
		sub.mu.Unlock()
		keys := make([]bindKey, len(old))
		patterns := make(map[bindKey]*topic.Pattern, len(old))
		for i, ks := range old {
			keys[i] = ks.key
			patterns[ks.key] = ks.pattern
		}
		// The new router counts from zero.
		sub.seq = 0
		sub.rebinding = true
		ch := make(chan error, len(keys))
		pending, _ := s.joinLocked(sub, keys, patterns, ch) // poked below
		adopted = append(adopted, adoption{sub, ch, pending})
	}
	s.mu.Unlock()
	if len(adopted) == 0 {
		return
	}
	s.poke()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for _, a := range adopted {
			err := s.await(context.Background(), a.answers, a.pending)
			if s.ended() {
				// Carried on to the next session, still rebinding.
				return
			}
			if errors.Is(err, errReleased) {
				continue // closed meanwhile
			}
			if err != nil && !endsStreams(err) {
				// The connection was lost under the bind: its session
				// ends (it has not yet noticed) and carries sub on.
				// Should it not end, sub is not left waiting in silence.
				select {
				case <-s.done:
					return
				case <-time.After(lostBindWait):
				}
			}
			if err != nil {
				a.sub.fail(err)
				continue
			}
			s.rebound(a.sub)
		}
	}()
}

// rebound lets the router give sub its messages again, after a gap: every
// one of its bindings is confirmed on the broker.
func (s *session) rebound(sub *Subscription) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sub.rebinding = false
	sub.markGap()
}
