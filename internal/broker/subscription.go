package broker

import "sync"

// Subscription is one stream's interest in the broker's messages: its
// bindings, held on the broker while it lives, and a bounded buffer that the
// router fills and the stream drains.
//
// Notify, Take, Done, Err and Close may be called from any goroutine; a
// stream normally has one goroutine that selects on Notify and Done and calls
// Take. Close must be called once the stream ends; it is idempotent.
type Subscription struct {
	s    *session
	keys []*keyState

	// seq is the router's sequence number of the last message pushed here,
	// so a message that matches several bindings is pushed once. Only the
	// router goroutine touches it.
	seq uint64

	// notify has one slot: a push that finds it full knows the reader has a
	// wake-up pending and will see the new message when it drains.
	notify chan struct{}
	// half has one slot, filled by the push that brings the buffer to
	// half its size.
	half chan struct{}

	// done is closed when the subscription can get no more messages: its
	// session ended, or one of its bindings is gone from the broker
	// (failed says why).
	done     chan struct{}
	doneOnce sync.Once
	failed   error

	mu      sync.Mutex
	buf     []*Message // ring of capacity cap(buf)
	head    int        // index of the oldest message
	n       int        // messages in the ring
	dropped int        // dropped since the last Take
	closed  bool
}

func newSubscription(s *session, size int) *Subscription {
	return &Subscription{
		s:      s,
		notify: make(chan struct{}, 1),
		half:   make(chan struct{}, 1),
		done:   make(chan struct{}),
		buf:    make([]*Message, size),
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
	select {
	case <-sub.done:
	default:
		return nil
	}
	if sub.failed != nil {
		return sub.failed
	}
	return sub.s.error()
}

// fail closes done, once; err is nil when the session ended.
func (sub *Subscription) fail(err error) {
	sub.doneOnce.Do(func() {
		sub.failed = err
		close(sub.done)
	})
}

// push adds m to the buffer, dropping the oldest message when it is full.
// It never blocks on the reader. Only the router calls it.
func (sub *Subscription) push(m *Message) {
	sub.mu.Lock()
	if sub.closed {
		sub.mu.Unlock()
		return
	}
	size := len(sub.buf)
	if sub.n == size {
		sub.buf[sub.head] = nil
		sub.head = (sub.head + 1) % size
		sub.n--
		sub.dropped++
	}
	sub.buf[(sub.head+sub.n)%size] = m
	sub.n++
	half := sub.n == (size+1)/2
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
}

// Take appends the buffered messages, oldest first, to dst and returns it,
// with the number of messages dropped since the previous Take. A stream that
// gets dropped > 0 tells its client before sending these messages.
func (sub *Subscription) Take(dst []*Message) (msgs []*Message, dropped int) {
	sub.mu.Lock()
	defer sub.mu.Unlock()
	size := len(sub.buf)
	for i := 0; i < sub.n; i++ {
		j := (sub.head + i) % size
		dst = append(dst, sub.buf[j])
		sub.buf[j] = nil
	}
	sub.head, sub.n = 0, 0
	dropped, sub.dropped = sub.dropped, 0
	return dst, dropped
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
	sub.buf = nil
	sub.n = 0
	sub.mu.Unlock()
	sub.s.release(sub)
}
