package broker

import (
	"context"
	"errors"
	"log/slog"
	"strings"
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
	queued  bool // on the worker's queue
	failed  bool // the last bind failed; retried only for a new waiter
	waiters []chan<- error

	// A key whose every message a bound wildcard key of the same exchange
	// brings anyway needs no binding of its own: coveredBy is that key,
	// which lists the keys it covers in covering. Before a covering key is
	// unbound, the keys it covers are bound or covered again (handover), so
	// no message is missed when covering keys come and go.
	wild      bool // the pattern has * or #, so it may cover others
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

// maxCoverCandidates bounds the bound wildcard keys tried as covers for a
// new key, so that a subscribe costs the same however many there are.
const maxCoverCandidates = 32

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
	tries map[string]*topic.Trie[*keyState] // exchange → its keys, for routing
	wild  map[string]map[*keyState]struct{} // exchange → its bound wildcard keys
	bound int                               // keys bound on the broker
	work  []*keyState                       // keys that may need a bind or unbind
	idle  []chan struct{}                   // closed when the worker runs out of work

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
		wild:    make(map[string]map[*keyState]struct{}),
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
	patterns := make([]*topic.Pattern, len(bs))
	for i, b := range bs {
		p, err := topic.Compile(b.RoutingKeyPattern)
		if err != nil {
			return nil, &BindError{Binding: b, Err: err}
		}
		patterns[i] = p
	}
	sub := newSubscription(s, bs, s.bufSize)
	// One slot per binding: the worker answers each waiter of a key once,
	// so it never blocks on a subscriber that has gone.
	answers := make(chan error, len(bs))
	pending := 0

	s.mu.Lock()
	if s.ended() {
		s.mu.Unlock()
		return nil, ErrUnavailable
	}
	for i, b := range bs {
		k := bindKey{b.Exchange, b.RoutingKeyPattern}
		ks := s.keys[k]
		if ks == nil {
			ks = &keyState{
				key:     k,
				pattern: patterns[i],
				subs:    make(map[*Subscription]struct{}),
				wild:    strings.ContainsAny(k.pattern, "*#"),
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
		ks.waiters = append(ks.waiters, answers)
		pending++
		s.enqueueLocked(ks)
	}
	s.mu.Unlock()
	if pending > 0 {
		s.poke()
	}

	for ; pending > 0; pending-- {
		select {
		case err := <-answers:
			if err != nil {
				sub.Close()
				return nil, err
			}
		case <-ctx.Done():
			sub.Close()
			return nil, ctx.Err()
		case <-s.done:
			sub.Close()
			return nil, s.error()
		}
	}
	return sub, nil
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

func (s *session) enqueueLocked(ks *keyState) {
	if !ks.queued {
		ks.queued = true
		s.work = append(s.work, ks)
	}
}

// findCoverLocked returns a bound key, in use, that covers ks, or nil.
func (s *session) findCoverLocked(ks *keyState) *keyState {
	tried := 0
	for k := range s.wild[ks.key.exchange] {
		if tried == maxCoverCandidates {
			break
		}
		tried++
		// A key without subscriptions is on its way out: not a cover.
		if k != ks && k.bound && !k.busy && len(k.subs) > 0 && k.pattern.Covers(ks.pattern) {
			if k.covering == nil {
				k.covering = make(map[*keyState]struct{})
			}
			return k
		}
	}
	return nil
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
	if !ks.wild {
		return
	}
	set := s.wild[ks.key.exchange]
	if bound {
		if set == nil {
			set = make(map[*keyState]struct{})
			s.wild[ks.key.exchange] = set
		}
		set[ks] = struct{}{}
	} else {
		delete(set, ks)
		if len(set) == 0 {
			delete(s.wild, ks.key.exchange)
		}
	}
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

// next takes the next key that needs a broker operation off the work queue
// and marks it busy; it returns nil when there is none.
func (s *session) next() (ks *keyState, bind bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for len(s.work) > 0 {
		ks = s.work[0]
		s.work[0] = nil
		s.work = s.work[1:]
		ks.queued = false
		if ks.wantsWork() {
			ks.busy = true
			return ks, len(ks.subs) > 0
		}
	}
	s.work = nil // let the backing array go
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
// at a time.
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
