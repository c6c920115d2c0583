package broker

import (
	"context"
	"errors"
	"log/slog"
	"sync"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/topic"
)

// bindKey names one broker binding of our queue.
type bindKey struct{ exchange, pattern string }

// keyState is one (exchange, pattern) that at least one subscription uses or
// that is still bound on the broker. Guarded by session.mu.
type keyState struct {
	key     bindKey
	pattern *topic.Pattern
	subs    map[*Subscription]struct{}
	bound   bool // the broker has confirmed the binding
	busy    bool // a bind or unbind is in flight
	queued  bool // on one of the worker's queues
	failed  bool // the last bind failed; retried only for a new waiter
	waiters []chan<- error

	// A key whose every message a bound wildcard key of the same exchange
	// brings anyway needs no binding of its own: coveredBy is that key,
	// which lists the keys it covers in covering. Before a covering key is
	// unbound, the keys it covers are bound or covered again (handover), so
	// no message is missed when covering keys come and go. A covered key is
	// not bound, so it never covers others in turn.
	coveredBy *keyState
	covering  map[*keyState]struct{}
}

// wantsWork reports whether the broker's state differs from what the
// subscriptions need, with no operation in flight to mend it.
func (ks *keyState) wantsWork() bool {
	if ks.busy {
		return false
	}
	if len(ks.subs) > 0 {
		return !ks.bound && !ks.failed && ks.coveredBy == nil
	}
	return ks.bound
}

// session is one broker connection's life: its queue, the router that takes
// deliveries from it and the worker that binds and unbinds. When the
// connection goes, the session ends and every subscription of it is done.
type session struct {
	log     *slog.Logger
	conn    Conn
	bufSize int
	metrics *metrics.Metrics

	mu    sync.RWMutex
	keys  map[bindKey]*keyState             // every key in use or bound
	tries map[string]*topic.Trie[*keyState] // exchange → its keys, for routing and covering
	bound int                               // keys bound on the broker

	// Keys that may need a bind (queued with subscriptions) or an unbind
	// (queued without); next takes the binds first.
	binds, unbinds []*keyState
	bindsInRow     int             // binds taken since the last unbind
	idle           []chan struct{} // closed when the worker runs out of work

	wake chan struct{} // one slot: the worker has pending work to look at
	done chan struct{} // closed when the session ends
	wg   sync.WaitGroup

	errMu sync.Mutex
	err   error

	// Router only: the sequence number of the current message, the
	// message, and the visitor that pushes it (a method value made once).
	seq   uint64
	msg   *Message
	visit func(*keyState)
}

// startSession starts the router and the worker on conn. The caller must
// call end.
func startSession(conn Conn, bufSize int, m *metrics.Metrics, log *slog.Logger) *session {
	s := &session{
		log:     log.With("queue", conn.Queue()),
		conn:    conn,
		bufSize: bufSize,
		metrics: m,
		keys:    make(map[bindKey]*keyState),
		tries:   make(map[string]*topic.Trie[*keyState]),
		wake:    make(chan struct{}, 1),
		done:    make(chan struct{}),
	}
	s.visit = s.push
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// Consume returns only when the connection has ended.
		err := conn.Consume(s.route)
		if !s.ended() {
			s.log.Warn("broker connection lost", "err", err)
		}
		s.fail(err)
	}()
	go func() {
		defer s.wg.Done()
		s.bindLoop()
	}()
	return s
}

// end marks the session ended with cause, so that its subscriptions see
// Done, closes the connection and waits for the router and the worker.
func (s *session) end(cause error) {
	s.fail(cause)
	if err := s.conn.Close(); err != nil {
		s.log.Warn("close broker connection", "err", err)
	}
	s.wg.Wait()
}

// fail closes done with cause, once.
func (s *session) fail(cause error) {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	if s.err == nil {
		s.err = cause
		close(s.done)
	}
}

func (s *session) error() error {
	s.errMu.Lock()
	defer s.errMu.Unlock()
	return s.err
}

func (s *session) ended() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

// subscribe registers a subscription for bs and waits until every binding
// is confirmed by the broker. The subscription is in the router from the
// start, so nothing routed after a binding's confirmation can be missed.
func (s *session) subscribe(ctx context.Context, bs []binding.Binding) (*Subscription, error) {
	sub, answers, pending, err := s.add(bs)
	if err != nil {
		return nil, err
	}
	if err := s.await(ctx, answers, pending); err != nil {
		sub.Close()
		return nil, err
	}
	return sub, nil
}

// add registers a subscription for bs, in the router at once, and asks the
// worker for the bindings it lacks: the worker sends one answer on answers
// for each of the pending ones.
func (s *session) add(bs []binding.Binding) (sub *Subscription, answers <-chan error, pending int, err error) {
	patterns := make([]*topic.Pattern, len(bs))
	for i, b := range bs {
		p, err := topic.Compile(b.RoutingKeyPattern)
		if err != nil {
			return nil, nil, 0, &BindError{Binding: b, Err: err}
		}
		// The broker binds the normal form: it matches the same keys, and
		// RabbitMQ's matching backtracks on every # of a run.
		patterns[i] = p.Normal()
	}
	sub = newSubscription(s, s.bufSize)
	// One slot per binding: the worker answers each waiter of a key once,
	// so it never blocks on a subscriber that has gone.
	ch := make(chan error, len(bs))

	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		return nil, nil, 0, ErrUnavailable
	}
	for i, b := range bs {
		k := bindKey{b.Exchange, patterns[i].String()}
		ks := s.keys[k]
		if ks == nil {
			ks = &keyState{
				key:     k,
				pattern: patterns[i],
				subs:    make(map[*Subscription]struct{}),
			}
			s.keys[k] = ks
			trie := s.tries[k.exchange]
			if trie == nil {
				trie = &topic.Trie[*keyState]{}
				s.tries[k.exchange] = trie
			}
			trie.Insert(ks.pattern, ks)
		}
		ks.subs[sub] = struct{}{}
		sub.keys = append(sub.keys, ks)
		if ks.bound && !ks.busy || ks.coveredBy != nil {
			continue
		}
		if !ks.bound && !ks.busy {
			if cover := s.findCoverLocked(ks); cover != nil {
				ks.coveredBy = cover
				cover.covering[ks] = struct{}{}
				s.metrics.BindOps.WithLabelValues("bind", "covered").Inc()
				continue
			}
		}
		ks.failed = false
		ks.waiters = append(ks.waiters, ch)
		pending++
		s.enqueueLocked(ks)
	}
	s.mu.Unlock()
	if pending > 0 {
		s.poke()
	}
	return sub, ch, pending, nil
}

// await waits for pending answers of the worker, and returns the first
// error, ctx's error or the session's.
func (s *session) await(ctx context.Context, answers <-chan error, pending int) error {
	for ; pending > 0; pending-- {
		select {
		case err := <-answers:
			if err != nil {
				return err
			}
		case <-ctx.Done():
			return ctx.Err()
		case <-s.done:
			return s.error()
		}
	}
	return nil
}

// release removes sub from the router and gives back its bindings.
func (s *session) release(sub *Subscription) {
	s.mu.Lock()
	for _, ks := range sub.keys {
		delete(ks.subs, sub)
		if len(ks.subs) > 0 {
			continue
		}
		if !ks.bound && !ks.busy {
			s.deleteLocked(ks)
			continue
		}
		s.enqueueLocked(ks)
	}
	sub.keys = nil
	s.mu.Unlock()
	s.poke()
}

// enqueueLocked puts ks on the worker's queue for what it needs by the
// look of it now: a bind while it has subscriptions, else an unbind. next
// checks again when it takes ks.
func (s *session) enqueueLocked(ks *keyState) {
	if ks.queued {
		return
	}
	ks.queued = true
	if len(ks.subs) > 0 {
		s.binds = append(s.binds, ks)
	} else {
		s.unbinds = append(s.unbinds, ks)
	}
}

// findCoverLocked returns a bound key, in use, that covers ks, or nil. It
// asks the exchange's routing trie, which holds every key of the exchange,
// for the keys that cover ks: the work grows with ks's words, not with the
// number of keys, so no cover is missed however many there are. s.mu must be
// held for writing, since Covering marks the trie's nodes as the router's
// Match does under the read lock.
func (s *session) findCoverLocked(ks *keyState) *keyState {
	trie := s.tries[ks.key.exchange]
	if trie == nil {
		return nil
	}
	var cover *keyState
	trie.Covering(ks.pattern, func(k *keyState) bool {
		// ks is in the trie too, and a pattern covers itself: ks is no
		// cover of its own. Nor is a key that is not bound (a covered
		// one among them), a busy one, or one without subscriptions,
		// which is on its way out.
		if k == ks || !k.bound || k.busy || len(k.subs) == 0 {
			return true
		}
		cover = k
		return false
	})
	if cover != nil && cover.covering == nil {
		cover.covering = make(map[*keyState]struct{})
	}
	return cover
}

// setBoundLocked records whether the broker has ks bound.
func (s *session) setBoundLocked(ks *keyState, bound bool) {
	if ks.bound == bound {
		return
	}
	ks.bound = bound
	if bound {
		s.bound++
	} else {
		s.bound--
	}
	s.metrics.BindingsHeld.Set(float64(s.bound))
}

// handover prepares the unbind of cover: each key it covers that is still
// in use moves to another cover, or is returned, marked busy, for the
// worker to bind before the unbind.
func (s *session) handover(cover *keyState) []*keyState {
	s.mu.Lock()
	defer s.mu.Unlock()
	var toBind []*keyState
	for ks := range cover.covering {
		if other := s.findCoverLocked(ks); other != nil {
			delete(cover.covering, ks)
			ks.coveredBy = other
			other.covering[ks] = struct{}{}
			continue
		}
		ks.busy = true
		toBind = append(toBind, ks)
	}
	return toBind
}

// uncover detaches ks from the key that covered it.
func (s *session) uncover(ks *keyState) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.uncoverLocked(ks)
}

func (s *session) uncoverLocked(ks *keyState) {
	if ks.coveredBy != nil {
		delete(ks.coveredBy.covering, ks)
		ks.coveredBy = nil
	}
}

func (s *session) deleteLocked(ks *keyState) {
	if s.keys[ks.key] != ks {
		return
	}
	s.uncoverLocked(ks)
	delete(s.keys, ks.key)
	trie := s.tries[ks.key.exchange]
	trie.Delete(ks.pattern)
	if trie.Len() == 0 {
		delete(s.tries, ks.key.exchange)
	}
}

func (s *session) poke() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// maxBindsInRow is how many binds the worker does in a row while unbinds
// wait: binds go first, since a new stream waits for them, but unbinds must
// not starve under a steady flow of binds, or bindings of ended streams
// would pile up on the broker. Past maxQueuedUnbinds waiting, binds and
// unbinds take turns.
const (
	maxBindsInRow    = 16
	maxQueuedUnbinds = 1000
)

// next takes the next key that needs a broker operation off the work queues
// and marks it busy; it returns nil when there is none. Binds go before
// unbinds (up to maxBindsInRow at a time, one while more than
// maxQueuedUnbinds wait): a new stream waits for its binds,
// while nobody waits for the unbinds of streams that have ended. What a key
// needs is decided by its state when it is taken, not by the queue it was
// put on: an unbind that a new subscription made moot is skipped, and a key
// queued for a bind whose subscriptions have all gone since moves to the
// unbinds.
func (s *session) next() (ks *keyState, bind bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for {
		limit := maxBindsInRow
		if len(s.unbinds) > maxQueuedUnbinds {
			limit = 1
		}
		if len(s.binds) > 0 && (s.bindsInRow < limit || len(s.unbinds) == 0) {
			ks = s.binds[0]
			s.binds[0] = nil
			s.binds = s.binds[1:]
			if ks.wantsWork() && len(ks.subs) == 0 {
				s.unbinds = append(s.unbinds, ks) // still queued
				continue
			}
			ks.queued = false
			if ks.wantsWork() {
				ks.busy = true
				s.bindsInRow++
				return ks, true
			}
			continue
		}
		if len(s.unbinds) == 0 {
			break
		}
		ks = s.unbinds[0]
		s.unbinds[0] = nil
		s.unbinds = s.unbinds[1:]
		ks.queued = false
		s.bindsInRow = 0
		if ks.wantsWork() {
			ks.busy = true
			return ks, len(ks.subs) > 0
		}
	}
	s.binds, s.unbinds = nil, nil // let the backing arrays go
	for _, ch := range s.idle {
		close(ch)
	}
	s.idle = nil
	return nil, false
}

// sync waits until the worker has done every operation asked for before the
// call, or ctx or the session is done.
func (s *session) sync(ctx context.Context) error {
	ch := make(chan struct{})
	s.mu.Lock()
	s.idle = append(s.idle, ch)
	s.mu.Unlock()
	s.poke()
	select {
	case <-ch:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return s.error()
	}
}

// bindLoop is the worker: it alone binds and unbinds, and brings the
// broker's bindings in line with what the subscriptions need, one operation
// at a time, binds first (see next).
func (s *session) bindLoop() {
	for {
		select {
		case <-s.wake:
		case <-s.done:
			return
		}
		for {
			ks, bind := s.next()
			if ks == nil {
				break
			}
			var err error
			if bind {
				err = s.conn.Bind(ks.key.exchange, ks.key.pattern)
			} else {
				// The keys this one covers get bindings of their own (or
				// another cover) before it goes.
				for _, covered := range s.handover(ks) {
					berr := s.conn.Bind(covered.key.exchange, covered.key.pattern)
					s.uncover(covered)
					s.settle(covered, true, berr)
				}
				err = s.conn.Unbind(ks.key.exchange, ks.key.pattern)
			}
			s.settle(ks, bind, err)
			if err != nil && s.ended() {
				return
			}
		}
	}
}

// settle records the outcome of a bind or unbind of ks and answers waiters.
func (s *session) settle(ks *keyState, bind bool, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ks.busy = false
	op, result := "unbind", "ok"
	if bind {
		op = "bind"
	}
	switch {
	case err == nil:
		s.setBoundLocked(ks, bind)
	case bind:
		result = "error"
		if errors.Is(err, ErrExchangeNotFound) || errors.Is(err, ErrAccessRefused) {
			result = "refused"
		}
		ks.failed = true
		berr := &BindError{Binding: binding.Binding{Exchange: ks.key.exchange, RoutingKeyPattern: ks.key.pattern}, Err: err}
		if !s.ended() {
			s.log.Info("bind refused", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "err", err)
		}
		for _, w := range ks.waiters {
			w <- berr
		}
		ks.waiters = nil
	default:
		// An unbind that failed leaves at worst an unused binding, which
		// goes with the queue; a missing exchange took it already.
		result = "error"
		s.setBoundLocked(ks, false)
		if !s.ended() {
			s.log.Warn("unbind", "exchange", ks.key.exchange, "pattern", ks.key.pattern, "err", err)
		}
	}
	s.metrics.BindOps.WithLabelValues(op, result).Inc()
	if ks.bound && len(ks.subs) > 0 {
		for _, w := range ks.waiters {
			w <- nil
		}
		ks.waiters = nil
	}
	if ks.wantsWork() {
		s.enqueueLocked(ks)
	} else if len(ks.subs) == 0 && !ks.bound {
		s.deleteLocked(ks)
	}
}

// route pushes m to the subscriptions whose bindings match it. The
// connection calls it for each message in queue order, from one goroutine;
// it never waits for a subscription.
func (s *session) route(m *Message) {
	s.metrics.MessagesReceived.Inc()
	s.seq++
	s.mu.RLock()
	defer s.mu.RUnlock()
	trie := s.tries[m.Exchange]
	if trie == nil {
		return
	}
	s.msg = m
	trie.Match(topic.SplitKey(m.RoutingKey), s.visit)
	for _, k := range m.CC {
		trie.Match(topic.SplitKey(k), s.visit)
	}
	s.msg = nil
}

// push gives the current message to the subscriptions of ks that do not
// have it yet: a message that matches several bindings, or several keys,
// of one subscription reaches it once. Only the router calls it.
func (s *session) push(ks *keyState) {
	for sub := range ks.subs {
		if sub.seq != s.seq {
			sub.seq = s.seq
			sub.push(s.msg)
		}
	}
}
