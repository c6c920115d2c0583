package broker

import (
	"context"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/topic"
)

// session is one broker connection's life: its queue, the router that takes
// deliveries from it and the worker that binds and unbinds. When the
// connection goes, the session ends and every subscription of it is done,
// but those that survive it: the next session adopts them (see adopt).
type session struct {
	log     *slog.Logger
	conn    Conn
	limits  Limits
	metrics *metrics.Metrics
	every   intervals

	// mu guards the keys, the tries and the work queues. The router takes
	// it for each message, the worker for each step, add and release for
	// each subscription.
	mu      sync.Mutex
	keys    map[bindKey]*keyState             // every key in use or bound
	tries   map[string]*topic.Trie[*keyState] // exchange → its keys, for routing and covering
	bound   int                               // keys bound on the broker
	rebinds rebindList                        // the keys in keyBound, bound longest ago first

	wide      WidePolicy           // when to bind an exchange wide
	widenings map[string]*widening // exchange → the policy's state there

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

	// props counts the subscriptions that ask for properties, of this
	// session and those before (the Broker's count): see PropertyTaker.
	props *atomic.Int32

	router     *router   // used by the consuming goroutine only
	lastRebind time.Time // used by the worker only
	// typeChecked: when each exchange's type was last probed before a
	// re-bind (recheckType); used by the worker only.
	typeChecked map[string]time.Time
}

// startSession starts the router and the worker on conn, whose periodic
// duties come at every. The caller must call end.
func startSession(conn Conn, limits Limits, every intervals, m *metrics.Metrics, log *slog.Logger) *session {
	return startSessionCounting(conn, limits, every, m, log, new(atomic.Int32))
}

// startSessionCounting is startSession with props, the count of the
// subscriptions that ask for properties, of this session and of those
// before whose survivors it adopts. A conn that is a PropertyTaker gets
// it here; the caller hands it to one that a wrapper hides.
func startSessionCounting(conn Conn, limits Limits, every intervals, m *metrics.Metrics, log *slog.Logger, props *atomic.Int32) *session {
	s := &session{
		log:     log.With("queue", conn.Queue()),
		conn:    conn,
		limits:  limits,
		every:   every,
		metrics: m,
		keys:    make(map[bindKey]*keyState),
		tries:   make(map[string]*topic.Trie[*keyState]),

		widenings: make(map[string]*widening),
		wake:      make(chan struct{}, 1),
		done:      make(chan struct{}),
		props:     props,
	}
	if pt, ok := conn.(PropertyTaker); ok {
		pt.TakeProperties(s.props)
	}
	s.router = newRouter(s)
	s.wg.Add(2)
	go func() {
		defer s.wg.Done()
		// Consume returns only when the connection has ended.
		err := conn.Consume(s.router.route)
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
// Done, closes the connection and waits for the router and the worker. The
// subscriptions that survive a lost connection (SubscribeSurviving) are not
// done: end returns them, for the next session to adopt.
func (s *session) end(cause error) (survivors []*Subscription) {
	s.fail(cause)
	// add refuses new subscriptions once the session has failed, so every
	// one that may still be served is in the keys.
	s.mu.Lock()
	var seen map[*Subscription]struct{}
	for _, ks := range s.keys {
		for sub := range ks.subs {
			if !sub.survive {
				sub.fail(nil)
				continue
			}
			if _, ok := seen[sub]; ok || sub.isDone() {
				continue
			}
			if seen == nil {
				seen = make(map[*Subscription]struct{})
			}
			seen[sub] = struct{}{}
			survivors = append(survivors, sub)
		}
	}
	s.mu.Unlock()
	if err := s.conn.Close(); err != nil {
		s.log.Warn("close broker connection", "err", err)
	}
	s.wg.Wait()
	return survivors
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
// A subscription that survives outlives a lost connection (see end).
func (s *session) subscribe(ctx context.Context, bs []binding.Binding, survive bool) (*Subscription, error) {
	return s.subscribeWith(ctx, bs, SubscribeOptions{Survive: survive})
}

// subscribeWith is subscribe with opts.
func (s *session) subscribeWith(ctx context.Context, bs []binding.Binding, opts SubscribeOptions) (*Subscription, error) {
	sub, answers, pending, err := s.addSub(bs, opts)
	if err != nil {
		return nil, err
	}
	var limit <-chan time.Time
	if pending > 0 {
		if f := BeforeWaitFunc(ctx); f != nil {
			limit = f()
		}
	}
	if err := s.awaitBy(ctx, answers, pending, limit); err != nil {
		sub.Close()
		return nil, asSent(err, bs)
	}
	return sub, nil
}

// asSent returns err, a *BindError for a key of bs that the worker refused,
// with the binding of bs whose normal form it is: the pattern the client
// sent, not the one bound (the first such, or the normal form itself if
// the client sent it). Any other err is returned as it is.
func asSent(err error, bs []binding.Binding) error {
	berr, ok := err.(*BindError)
	if !ok || slices.Contains(bs, berr.Binding) {
		return err
	}
	for _, b := range bs {
		if b.Exchange == berr.Binding.Exchange && topic.Normalize(b.RoutingKeyPattern) == berr.Binding.RoutingKeyPattern {
			return &BindError{Binding: b, Err: berr.Err}
		}
	}
	return err
}

// add registers a subscription for bs, in the router at once, and asks the
// worker for the bindings it lacks: the worker sends one answer on answers
// for each of the pending ones. bs must be valid, as binding.Parse makes
// them: only a key new to the session is compiled, and an invalid pattern
// there changes nothing and returns a *BindError.
func (s *session) add(bs []binding.Binding) (sub *Subscription, answers <-chan error, pending int, err error) {
	return s.addSub(bs, SubscribeOptions{})
}

// addSub is add, with opts.
func (s *session) addSub(bs []binding.Binding, opts SubscribeOptions) (sub *Subscription, answers <-chan error, pending int, err error) {
	// The broker binds the normal form: it matches the same keys, and
	// RabbitMQ's matching backtracks on every # of a run.
	keys := make([]bindKey, len(bs))
	for i, b := range bs {
		keys[i] = bindKey{b.Exchange, topic.Normalize(b.RoutingKeyPattern)}
	}
	sub = newSubscription(s)
	sub.survive = opts.Survive
	sub.props = opts.Properties
	// One slot per binding: the worker answers each waiter of a key once,
	// so it never blocks on a subscriber that has gone.
	ch := make(chan error, len(bs))

	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ended() {
		return nil, nil, 0, ErrUnavailable
	}
	// The patterns of new keys, compiled before anything changes.
	var fresh map[bindKey]*topic.Pattern
	for i, k := range keys {
		if s.keys[k] != nil || fresh[k] != nil {
			continue
		}
		p, err := topic.Compile(bs[i].RoutingKeyPattern)
		if err != nil {
			return nil, nil, 0, &BindError{Binding: bs[i], Err: err}
		}
		if fresh == nil {
			fresh = make(map[bindKey]*topic.Pattern)
		}
		fresh[k] = p.Normal()
	}
	if sub.props {
		// Before the router can see sub: every message taken from now on
		// carries its properties. Close counts it out.
		s.props.Add(1)
	}
	pending, wake := s.joinLocked(sub, keys, fresh, ch)
	if wake {
		s.poke()
	}
	return sub, ch, pending, nil
}

// joinLocked puts sub on keys, in the router at once, and queues the binds
// that they lack; fresh holds the patterns of keys new to the session. The
// worker answers on ch once for each key it binds: joinLocked returns how
// many, and whether the worker has work to look at (those binds, or
// re-binds of keys that it freshened). s.mu is held; the caller pokes the
// worker.
func (s *session) joinLocked(sub *Subscription, keys []bindKey, fresh map[bindKey]*topic.Pattern, ch chan<- error) (pending int, wake bool) {
	freshened := false
	for _, k := range keys {
		ks := s.keys[k]
		if ks == nil {
			ks = &keyState{
				key:     k,
				pattern: fresh[k],
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
		if ks.phase == keyBound || ks.coveredBy != nil {
			freshened = s.freshenLocked(ks) || freshened
			continue
		}
		if ks.phase == keyFailed {
			s.toLocked(ks, keyUnbound) // tried again for this waiter
		}
		if ks.phase == keyUnbound {
			if cover := s.findCoverLocked(ks); cover != nil {
				ks.coveredBy = cover
				cover.covering[ks] = struct{}{}
				s.metrics.BindOps.WithLabelValues("bind", "covered").Inc()
				freshened = s.freshenLocked(ks) || freshened
				continue
			}
		}
		ks.waiters = append(ks.waiters, waiter{sub, ch})
		pending++
		s.enqueueLocked(ks)
		s.noteBindLocked(ks)
	}
	return pending, pending > 0 || freshened
}

// await waits for pending answers of the worker, and returns the first
// error, ctx's error or the session's.
func (s *session) await(ctx context.Context, answers <-chan error, pending int) error {
	return s.awaitBy(ctx, answers, pending, nil)
}

// awaitBy is await that also ends, with ErrWaitLimit, when limit
// receives.
func (s *session) awaitBy(ctx context.Context, answers <-chan error, pending int, limit <-chan time.Time) error {
	for ; pending > 0; pending-- {
		select {
		case <-limit:
			return ErrWaitLimit
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
	if sub.props {
		s.props.Add(-1)
	}
	s.mu.Lock()
	for _, ks := range sub.keys {
		delete(ks.subs, sub)
		if ks.inUse() {
			continue
		}
		if ks.phase == keyUnbound || ks.phase == keyFailed {
			s.deleteLocked(ks)
			continue
		}
		s.enqueueLocked(ks)
	}
	sub.keys = nil
	s.mu.Unlock()
	s.poke()
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
