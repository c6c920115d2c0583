package broker

import "sync"

// Subscription is one stream's interest in the broker's messages: its
// bindings, held on the broker while it lives, and a bounded buffer that the
// router fills and the stream drains.
//
// Notify, Take, TakeGap, Done, Err and Close may be called from any
// goroutine; a stream normally has one goroutine that selects on Notify and
// Done and calls Take. Close must be called once the stream ends; it is
// idempotent.
type Subscription struct {
	// s is the session that serves the subscription, and keys its keys
	// there. A surviving subscription moves to the next session (adopt),
	// which sets both under its own mu and sub.mu; else s.mu guards keys.
	s    *session
	keys []*keyState

	// survive: the subscription outlives a lost connection
	// (SubscribeSurviving). Set before it is in any session.
	survive bool
	// props: the subscription asks for its messages' properties
	// (SubscribeOptions.Properties). Set before it is in any session.
	props bool
	// rebinding: adopted by a session whose bindings for it are not all
	// confirmed yet; the router passes it by until they are. Guarded by
	// the session's mu.
	rebinding bool

	// seq is the router's sequence number of the last message pushed here,
	// so a message that matches several bindings is pushed once. Only the
	// router goroutine touches it.
	seq uint64

	// notify has one slot: a push that finds it full knows the reader has a
	// wake-up pending and will see the new message when it drains.
	notify chan struct{}
	// half has one slot, filled by the push that brings the buffer to
	// half its size in messages or in bytes.
	half chan struct{}

	// done is closed when the subscription can get no more messages: its
	// session ended, or one of its bindings is gone from the broker
	// (failed says why).
	done     chan struct{}
	doneOnce sync.Once
	failed   error

	mu      sync.Mutex
	buf     []*Message // ring, grown up to Limits.ClientBuffer as needed
	head    int        // index of the oldest message
	n       int        // messages in the ring
	bytes   int        // their Size, summed
	dropped int        // dropped since the last Take
	closed  bool
	// gapped: messages may be missing after the oldest gapAt messages of
	// the ring (a lost connection); TakeGap reports it once they are taken.
	gapped bool
	gapAt  int
	// uncounted says that messages may have been lost since the last
	// Uncounted, in a number nobody knows (see Uncounted).
	uncounted bool
}

func newSubscription(s *session) *Subscription {
	return &Subscription{
		s:      s,
		notify: make(chan struct{}, 1),
		half:   make(chan struct{}, 1),
		done:   make(chan struct{}),
	}
}

// Notify returns a channel that receives a value when messages are waiting
// to be taken. It is never closed.
func (sub *Subscription) Notify() <-chan struct{} { return sub.notify }

// Half returns a channel that receives a value when the buffer becomes
// half full: a reader that lets messages gather before taking them should
// wait no longer. It is never closed, and may hold a value from before the
// last Take.
func (sub *Subscription) Half() <-chan struct{} { return sub.half }

// Done returns a channel that is closed when the broker connection that
// serves the subscription is gone, or one of its bindings is (its exchange
// was deleted); Err then says why. The stream must end.
func (sub *Subscription) Done() <-chan struct{} { return sub.done }

// Err returns why Done was closed, or nil while it is open: a *BindError
// for a binding that is gone, else the session's error.
func (sub *Subscription) Err() error {
	if !sub.isDone() {
		return nil
	}
	if sub.failed != nil {
		return sub.failed
	}
	sub.mu.Lock()
	s := sub.s
	sub.mu.Unlock()
	return s.error()
}

func (sub *Subscription) isDone() bool {
	select {
	case <-sub.done:
		return true
	default:
		return false
	}
}

// fail closes done, once; err is nil when the session ended.
func (sub *Subscription) fail(err error) {
	sub.doneOnce.Do(func() {
		sub.failed = err
		close(sub.done)
	})
}

// push adds m to the buffer, dropping the oldest messages while it holds
// Limits.ClientBuffer messages or the bytes would go over
// Limits.ClientBufferBytes; a message over Limits.MaxMessageBytes is
// dropped itself. It never blocks on the reader. It returns how much the
// buffer's bytes grew, for the caller to add to the BufferedBytes gauge.
// Only the router calls it.
func (sub *Subscription) push(m *Message) (grew int) {
	lim := &sub.s.limits
	size := m.Size()
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return 0
	}
	before := sub.bytes
	if len(m.Body) > lim.MaxMessageBytes {
		sub.dropped++
	} else {
		for sub.n > 0 && (sub.n >= lim.ClientBuffer || sub.bytes+size > lim.ClientBufferBytes) {
			sub.dropOldest()
		}
		if sub.n == len(sub.buf) {
			sub.grow()
		}
		sub.buf[(sub.head+sub.n)%len(sub.buf)] = m
		sub.n++
		sub.bytes += size
	}
	half := sub.n == (lim.ClientBuffer+1)/2 || before < lim.ClientBufferBytes/2 && sub.bytes >= lim.ClientBufferBytes/2
	grew = sub.bytes - before
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
	if half {
		select {
		case sub.half <- struct{}{}:
		default:
		}
	}
	return grew
}

// dropOldest drops the oldest buffered message; sub.mu is held.
func (sub *Subscription) dropOldest() {
	m := sub.buf[sub.head]
	sub.buf[sub.head] = nil
	sub.head = (sub.head + 1) % len(sub.buf)
	sub.n--
	sub.bytes -= m.Size()
	sub.dropped++
	if sub.gapped && sub.gapAt > 0 {
		sub.gapAt--
	}
}

// grow makes room for one more message in the full ring, doubling it up
// to Limits.ClientBuffer; sub.mu is held. An idle subscription holds no
// ring at all.
func (sub *Subscription) grow() {
	size := min(max(2*len(sub.buf), 8), sub.s.limits.ClientBuffer)
	buf := make([]*Message, size)
	for i := range sub.n {
		buf[i] = sub.buf[(sub.head+i)%len(sub.buf)]
	}
	sub.buf, sub.head = buf, 0
}

// keptRing is the largest ring a subscription keeps once drained: a burst
// may grow it, and an idle stream should not hold it.
const keptRing = 64

// Take appends the buffered messages, oldest first, to dst and returns it,
// with the number of messages dropped since the previous Take. A stream that
// gets dropped > 0 tells its client before sending these messages.
func (sub *Subscription) Take(dst []*Message) (msgs []*Message, dropped int) {
	return sub.TakeUpTo(dst, int(^uint(0)>>1))
}

// TakeUpTo is Take for at most maxBytes of messages (see Message.Size), and
// at least one: a stream that takes in pieces holds at most that much in
// its write besides what its buffer holds. When messages are left, or a
// gap, Notify has a value again. No message after a gap is taken before
// TakeGap has reported it.
func (sub *Subscription) TakeUpTo(dst []*Message, maxBytes int) (msgs []*Message, dropped int) {
	sub.mu.Lock()
	before := sub.bytes
	taken := 0
	limit := sub.n
	if sub.gapped {
		limit = sub.gapAt
	}
	for ; limit > 0; limit-- {
		m := sub.buf[sub.head]
		size := m.Size()
		if taken > 0 && taken+size > maxBytes {
			break
		}
		taken += size
		dst = append(dst, m)
		sub.buf[sub.head] = nil
		sub.head = (sub.head + 1) % len(sub.buf)
		sub.n--
		sub.bytes -= size
		if sub.gapped {
			sub.gapAt--
		}
	}
	left := sub.n > 0 || sub.gapped
	if sub.n == 0 {
		sub.head, sub.bytes = 0, 0
		if len(sub.buf) > keptRing {
			sub.buf = nil
		}
	}
	sub.s.metrics.BufferedBytes.Add(float64(sub.bytes - before))
	dropped, sub.dropped = sub.dropped, 0
	sub.mu.Unlock()
	if left {
		select {
		case sub.notify <- struct{}{}:
		default:
		}
	}
	return dst, dropped
}

// TakeGap reports, once, that messages may be missing before the ones that
// Take returns next, and returns false while there is no such gap, or
// messages from before it are still to be taken. Only a surviving
// subscription (SubscribeSurviving) has gaps: it gets one when the
// connection that served it was lost, once its bindings are all back on
// the next connection. A stream tells its client before the messages that
// follow.
func (sub *Subscription) TakeGap() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	if !sub.gapped || sub.gapAt > 0 {
		return false
	}
	sub.gapped = false
	return true
}

// markGap puts a gap after the messages the ring holds now; one that is
// there already, not yet taken, stands for both.
func (sub *Subscription) markGap() {
	sub.mu.Lock()
	if sub.closed || sub.gapped {
		sub.mu.Unlock()
		return
	}
	sub.gapped, sub.gapAt = true, sub.n
	sub.mu.Unlock()
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

// Close ends the subscription: the router stops pushing to it, its buffer is
// released and its bindings are given back; a binding that no other
// subscription uses is removed from the broker. Close does not wait for the
// broker. It is safe to call more than once.
func (sub *Subscription) Close() {
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return
	}
	sub.closed = true
	sub.s.metrics.BufferedBytes.Sub(float64(sub.bytes))
	sub.buf = nil
	sub.n, sub.bytes = 0, 0
	s := sub.s
	sub.mu.Unlock()
	s.release(sub)
}

// countDrop counts a message that the broker dropped before the router
// had it, and wakes the reader, so that the stream says so before its next
// message. Only the router calls it.
func (sub *Subscription) countDrop() {
	sub.mu.Lock()
	if !sub.closed {
		sub.dropped++
	}
	sub.mu.Unlock()
	sub.wake()
}

// loseUncounted records that the broker lost messages that may have been
// the subscription's, in a number nobody knows, and wakes the reader. Only
// the router calls it.
func (sub *Subscription) loseUncounted() {
	sub.mu.Lock()
	sub.uncounted = !sub.closed
	sub.mu.Unlock()
	sub.wake()
}

func (sub *Subscription) wake() {
	select {
	case sub.notify <- struct{}{}:
	default:
	}
}

// Uncounted reports, and forgets, whether the broker lost messages that
// may have been the subscription's since the previous call, in a number
// nobody knows: beyond what Take counts as dropped. It happens when the
// broker drops messages faster than the process can learn of it (see
// AMQPConfig.DroppedMaxLength). A stream that reads Notify calls it after
// each Take, and tells its client before sending the messages taken.
func (sub *Subscription) Uncounted() bool {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	u := sub.uncounted
	sub.uncounted = false
	return u
}
