package broker

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
)

// testExchange is the one exchange of the session tests.
const testExchange = "exchange/test"

// opConn is a Conn that records its binds and unbinds in order and can hold
// the worker inside one of them until the test lets it go, so that a test
// can queue work behind it. Its queue never delivers.
type opConn struct {
	closed    chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	ops     []string         // "bind p" or "unbind p", in call order
	bound   map[string]bool  // patterns bound now
	hold    string           // the op to hold the worker in, once
	fail    map[string]error // ops that return an error
	held    chan struct{}    // closed when the worker is held
	release chan struct{}    // closed by the test to let it go
}

func newOpConn() *opConn {
	return &opConn{closed: make(chan struct{}), bound: make(map[string]bool)}
}

func (c *opConn) Queue() string                         { return "test" }
func (c *opConn) Bind(exchange, pattern string) error   { return c.do("bind", pattern) }
func (c *opConn) Unbind(exchange, pattern string) error { return c.do("unbind", pattern) }
func (c *opConn) Consume(func(*Message)) error {
	<-c.closed
	return ErrConnectionLost
}
func (c *opConn) Close() error {
	c.closeOnce.Do(func() { close(c.closed) })
	return nil
}

func (c *opConn) do(verb, pattern string) error {
	op := verb + " " + pattern
	c.mu.Lock()
	c.ops = append(c.ops, op)
	if err := c.fail[op]; err != nil {
		c.mu.Unlock()
		return err
	}
	c.bound[pattern] = verb == "bind"
	var held, release chan struct{}
	if c.hold == op {
		c.hold, held, release = "", c.held, c.release
	}
	c.mu.Unlock()
	if held != nil {
		close(held)
		select {
		case <-release:
		case <-c.closed:
			return ErrConnectionLost
		}
	}
	return nil
}

// holdAt makes the worker stop inside the next op ("bind p" or "unbind p"):
// held is closed when it is there, and it goes on when release is closed.
func (c *opConn) holdAt(op string) (held <-chan struct{}, release chan<- struct{}) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold, c.held, c.release = op, make(chan struct{}), make(chan struct{})
	return c.held, c.release
}

// opsSince returns the ops recorded after the first n.
func (c *opConn) opsSince(n int) []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return slices.Clone(c.ops[n:])
}

func (c *opConn) isBound(pattern string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.bound[pattern]
}

// testSession returns a session on c, ended when t ends.
func testSession(t *testing.T, c Conn) *session {
	t.Helper()
	s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
	t.Cleanup(func() { s.end(ErrClosed) })
	return s
}

func bindings(patterns ...string) []binding.Binding {
	bs := make([]binding.Binding, len(patterns))
	for i, p := range patterns {
		bs[i] = binding.Binding{Exchange: testExchange, RoutingKeyPattern: p}
	}
	return bs
}

// testTimeout bounds every wait of these tests for the worker.
const testTimeout = 10 * time.Second

// subscribeTest subscribes to patterns and closes the subscription when t
// ends.
func subscribeTest(t *testing.T, s *session, patterns ...string) *Subscription {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sub, err := s.subscribe(ctx, bindings(patterns...), false)
	if err != nil {
		t.Fatalf("subscribe %q: %v", patterns, err)
	}
	t.Cleanup(sub.Close)
	return sub
}

// addTest registers a subscription to patterns without waiting for its
// bindings, and returns a function that waits for them.
func addTest(t *testing.T, s *session, patterns ...string) (*Subscription, func()) {
	t.Helper()
	sub, answers, pending, err := s.add(bindings(patterns...))
	if err != nil {
		t.Fatalf("add %q: %v", patterns, err)
	}
	t.Cleanup(sub.Close)
	return sub, func() {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.await(ctx, answers, pending); err != nil {
			t.Fatalf("bindings %q: %v", patterns, err)
		}
	}
}

// subscribeLater subscribes to patterns from another goroutine, for a
// subscription whose bind the worker will be held in, and returns a
// function that waits for it.
func subscribeLater(t *testing.T, s *session, patterns ...string) func() *Subscription {
	t.Helper()
	type result struct {
		sub *Subscription
		err error
	}
	ch := make(chan result, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		sub, err := s.subscribe(ctx, bindings(patterns...), false)
		ch <- result{sub, err}
	}()
	return func() *Subscription {
		t.Helper()
		r := <-ch
		if r.err != nil {
			t.Fatalf("subscribe %q: %v", patterns, r.err)
		}
		t.Cleanup(r.sub.Close)
		return r.sub
	}
}

func waitHeld(t *testing.T, held <-chan struct{}) {
	t.Helper()
	select {
	case <-held:
	case <-time.After(testTimeout):
		t.Fatalf("worker not held within %v", testTimeout)
	}
}

func syncSession(t *testing.T, s *session) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	if err := s.sync(ctx); err != nil {
		t.Fatalf("sync: %v", err)
	}
}

// TestBindsBeforeUnbinds checks that the worker binds for a new stream
// before it unbinds for streams that closed earlier: the new stream does not
// wait behind them.
func TestBindsBeforeUnbinds(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	s := testSession(t, c)
	a := subscribeTest(t, s, "a")
	b := subscribeTest(t, s, "b")

	// While the worker binds c, two streams close and a new one comes.
	held, release := c.holdAt("bind c")
	waitC := subscribeLater(t, s, "c")
	waitHeld(t, held)
	a.Close()
	b.Close()
	_, waitD := addTest(t, s, "d")
	close(release)
	waitC()
	waitD()
	syncSession(t, s)

	want := []string{"bind a", "bind b", "bind c", "bind d", "unbind a", "unbind b"}
	if got := c.opsSince(0); !slices.Equal(got, want) {
		t.Fatalf("ops: got %q, want %q", got, want)
	}
}

// TestUnbindsDoNotStarve checks that queued unbinds get their turn after
// maxBindsInRow binds, however many binds wait.
func TestUnbindsDoNotStarve(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	s := testSession(t, c)
	a := subscribeTest(t, s, "a")
	held, release := c.holdAt("bind x")
	waitX := subscribeLater(t, s, "x")
	waitHeld(t, held)
	a.Close()
	const n = 2 * maxBindsInRow
	var waits []func()
	for i := range n {
		_, wait := addTest(t, s, fmt.Sprintf("k%d", i))
		waits = append(waits, wait)
	}
	close(release)
	waitX()
	for _, wait := range waits {
		wait()
	}
	syncSession(t, s)
	ops := c.opsSince(0)
	i := slices.Index(ops, "unbind a")
	// No unbind ran before it: bind a, bind x and 14 of the k's make the row.
	if want := maxBindsInRow; i != want {
		t.Fatalf("unbind a at %d of %q, want %d: after %d binds in a row", i, ops, want, maxBindsInRow)
	}
}

// TestUnbindsTakeTurnsWhenMany checks that binds and unbinds take turns
// while more than maxQueuedUnbinds unbinds wait.
func TestUnbindsTakeTurnsWhenMany(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	s := testSession(t, c)
	var subs []*Subscription
	for i := range maxQueuedUnbinds + 2 {
		subs = append(subs, subscribeTest(t, s, fmt.Sprintf("a%d", i)))
	}
	held, release := c.holdAt("bind x")
	waitX := subscribeLater(t, s, "x")
	waitHeld(t, held)
	start := len(c.opsSince(0))
	for _, sub := range subs {
		sub.Close()
	}
	var waits []func()
	for i := range 3 {
		_, wait := addTest(t, s, fmt.Sprintf("k%d", i))
		waits = append(waits, wait)
	}
	close(release)
	waitX()
	for _, wait := range waits {
		wait()
	}
	syncSession(t, s)
	// 1,002 unbinds wait: one goes, then a bind; at 1,001 the same; at
	// 1,000 binds go first again.
	got := c.opsSince(start)[:5]
	want := []string{"unbind a0", "bind k0", "unbind a1", "bind k1", "bind k2"}
	if !slices.Equal(got, want) {
		t.Fatalf("first operations after the hold: %q, want %q", got, want)
	}
}

// TestUnbindSuperseded checks the unbinds that a new subscription to the
// same key makes moot, or turns back into a bind, with binds going first.
func TestUnbindSuperseded(t *testing.T) {
	t.Parallel()

	t.Run("taken back before it runs", func(t *testing.T) {
		t.Parallel()
		c := newOpConn()
		s := testSession(t, c)
		a := subscribeTest(t, s, "a")
		held, release := c.holdAt("bind x")
		waitX := subscribeLater(t, s, "x")
		waitHeld(t, held)
		a.Close() // an unbind queued
		again := subscribeTest(t, s, "a")
		close(release)
		waitX()
		syncSession(t, s)
		if got, want := c.opsSince(0), []string{"bind a", "bind x"}; !slices.Equal(got, want) {
			t.Fatalf("ops: got %q, want %q", got, want)
		}
		checkRouted(t, s, again, "a")
	})

	t.Run("taken back while it runs", func(t *testing.T) {
		t.Parallel()
		c := newOpConn()
		s := testSession(t, c)
		a := subscribeTest(t, s, "a")
		held, release := c.holdAt("unbind a")
		a.Close()
		waitHeld(t, held)
		again, wait := addTest(t, s, "a")
		close(release)
		wait()
		syncSession(t, s)
		if got, want := c.opsSince(0), []string{"bind a", "unbind a", "bind a"}; !slices.Equal(got, want) {
			t.Fatalf("ops: got %q, want %q", got, want)
		}
		if !c.isBound("a") {
			t.Fatal("a is not bound on the broker")
		}
		checkRouted(t, s, again, "a")
	})

	t.Run("not ready before it is bound again", func(t *testing.T) {
		t.Parallel()
		c := newOpConn()
		s := testSession(t, c)
		a := subscribeTest(t, s, "a")
		heldUnbind, releaseUnbind := c.holdAt("unbind a")
		a.Close()
		waitHeld(t, heldUnbind)
		// The key is still bound on the broker, but on its way out: the
		// new subscription must wait for a bind of its own.
		again, answers, pending, err := s.add(bindings("a"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(again.Close)
		if pending != 1 {
			t.Fatalf("pending binds: got %d, want 1", pending)
		}
		heldBind, releaseBind := c.holdAt("bind a")
		close(releaseUnbind)
		waitHeld(t, heldBind)
		// The unbind is done and the bind is not: nothing may say ready.
		select {
		case err := <-answers:
			t.Fatalf("answered %v while the key was not bound", err)
		default:
		}
		close(releaseBind)
		ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
		defer cancel()
		if err := s.await(ctx, answers, pending); err != nil {
			t.Fatal(err)
		}
		if !c.isBound("a") {
			t.Fatal("ready, but a is not bound on the broker")
		}
		checkRouted(t, s, again, "a")
	})

	t.Run("a covered key while its cover goes", func(t *testing.T) {
		t.Parallel()
		c := newOpConn()
		s := testSession(t, c)
		cover := subscribeTest(t, s, "#")
		subscribeTest(t, s, "a") // covered by #
		held, release := c.holdAt("bind a")
		cover.Close()
		waitHeld(t, held)
		// The handover binds a before # goes; a subscription to a that
		// arrives meanwhile is served by # until then.
		again := subscribeTest(t, s, "a")
		if !c.isBound("#") {
			t.Fatal("ready on the cover #, but # is not bound on the broker")
		}
		close(release)
		syncSession(t, s)
		if got, want := c.opsSince(0), []string{"bind #", "bind a", "unbind #"}; !slices.Equal(got, want) {
			t.Fatalf("ops: got %q, want %q", got, want)
		}
		checkRouted(t, s, again, "a")
	})

	t.Run("a queued bind whose users left", func(t *testing.T) {
		t.Parallel()
		c := newOpConn()
		s := testSession(t, c)
		heldX, releaseX := c.holdAt("bind x")
		waitX := subscribeLater(t, s, "x")
		waitHeld(t, heldX)
		// y's bind, then x queued for a bind again behind it: x is busy.
		_, waitY := addTest(t, s, "y")
		x2, waitX2 := addTest(t, s, "x")
		heldY, releaseY := c.holdAt("bind y")
		close(releaseX)
		x := waitX()
		waitX2()
		waitHeld(t, heldY)
		// x is bound, still on the binds queue, and now unused.
		x.Close()
		x2.Close()
		close(releaseY)
		waitY()
		syncSession(t, s)
		if got, want := c.opsSince(0), []string{"bind x", "bind y", "unbind x"}; !slices.Equal(got, want) {
			t.Fatalf("ops: got %q, want %q", got, want)
		}
		s.mu.Lock()
		_, kept := s.keys[bindKey{testExchange, "x"}]
		s.mu.Unlock()
		if kept {
			t.Fatal("the session still holds key x")
		}
	})
}

// checkRouted checks that sub gets a message routed with key.
func checkRouted(t *testing.T, s *session, sub *Subscription, key string) {
	t.Helper()
	// The fake connection never delivers, so the test is the router.
	s.router.route(&Message{Exchange: testExchange, RoutingKey: key})
	if msgs, _ := sub.Take(nil); len(msgs) != 1 || msgs[0].RoutingKey != key {
		t.Fatalf("routed %q: the subscription got %v", key, msgs)
	}
}

// TestHandoverToAnotherCover checks that when a covering key goes, a key it
// covered moves to another bound cover without a binding of its own, and
// that when the last cover goes, the key is bound before the cover is
// unbound.
func TestHandoverToAnotherCover(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	s := testSession(t, c)
	// Two covers of primary.a, neither of which covers the other.
	covers := map[string]*Subscription{
		"primary.#": subscribeTest(t, s, "primary.#"),
		"*.a":       subscribeTest(t, s, "*.a"),
	}
	narrow := subscribeTest(t, s, "primary.a")
	coveredBy := func() string {
		t.Helper()
		s.mu.Lock()
		defer s.mu.Unlock()
		ks := s.keys[bindKey{testExchange, "primary.a"}]
		if ks.coveredBy == nil {
			t.Fatal("primary.a is not covered")
		}
		return ks.coveredBy.key.pattern
	}
	first := coveredBy()
	n := len(c.opsSince(0))
	covers[first].Close()
	syncSession(t, s)
	second := coveredBy()
	if second == first {
		t.Fatalf("primary.a still covered by %q, which is gone", first)
	}
	covers[second].Close()
	syncSession(t, s)
	want := []string{"unbind " + first, "bind primary.a", "unbind " + second}
	if got := c.opsSince(n); !slices.Equal(got, want) {
		t.Fatalf("ops after the covers went: got %q, want %q", got, want)
	}
	checkRouted(t, s, narrow, "primary.a")
}

// TestHalfSignalsAtHalf checks that a subscription's Half channel gets a
// value when its buffer reaches half its size, and not before.
func TestHalfSignalsAtHalf(t *testing.T) {
	t.Parallel()
	sub := newSubscription(&session{limits: Limits{ClientBuffer: 10}.withDefaults(), metrics: metrics.Discard()})
	half := func() bool {
		select {
		case <-sub.Half():
			return true
		default:
			return false
		}
	}
	for round := range 2 {
		for i := range 4 {
			sub.push(&Message{})
			if half() {
				t.Fatalf("round %d: Half after %d of 10", round, i+1)
			}
		}
		sub.push(&Message{})
		if !half() {
			t.Fatalf("round %d: no Half at 5 of 10", round)
		}
		sub.push(&Message{})
		if half() {
			t.Fatalf("round %d: Half again at 6 of 10", round)
		}
		if msgs, _ := sub.Take(nil); len(msgs) != 6 {
			t.Fatalf("round %d: took %d, want 6", round, len(msgs))
		}
	}
}

// TestAddInvalidChangesNothing checks that a subscription with an invalid
// pattern among valid ones is refused before it changes any key.
func TestAddInvalidChangesNothing(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	s := testSession(t, c)
	subscribeTest(t, s, "a")
	_, _, _, err := s.add(bindings("a", "b", "b*"))
	var berr *BindError
	if !errors.As(err, &berr) || berr.Binding.RoutingKeyPattern != "b*" {
		t.Fatalf("add: got %v, want a *BindError for b*", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.keys) != 1 || len(s.keys[bindKey{testExchange, "a"}].subs) != 1 {
		t.Fatalf("keys after a refused add: %v", s.keys)
	}
}

// TestBrokerDropsCounted checks what the router does with the record of a
// message that the broker dropped: each subscription that would have had
// it counts it once (by its routing key or a CC key, through a covered
// binding too), one it does not match counts nothing, and a loss nobody
// could count reaches every subscription.
func TestBrokerDropsCounted(t *testing.T) {
	s := testSession(t, newOpConn())
	a := subscribeTest(t, s, "a.#", "a.b")
	ab := subscribeTest(t, s, "a.b") // covered by a.#
	cc := subscribeTest(t, s, "cc.*")
	other := subscribeTest(t, s, "z")
	s.router.route(&Message{Exchange: testExchange, RoutingKey: "a.b", CC: []string{"cc.x", "a.c"}, drop: dropCounted})
	s.router.route(&Message{Exchange: "elsewhere", RoutingKey: "a.b", drop: dropCounted})
	for _, c := range []struct {
		name    string
		sub     *Subscription
		dropped int
	}{{"a.#", a, 1}, {"a.b", ab, 1}, {"cc.*", cc, 1}, {"z", other, 0}} {
		msgs, dropped := c.sub.Take(nil)
		if len(msgs) != 0 || dropped != c.dropped || c.sub.Uncounted() {
			t.Errorf("%s: took %d messages, %d dropped, want 0 and %d, counted", c.name, len(msgs), dropped, c.dropped)
		}
	}
	s.router.route(&Message{drop: dropUncounted})
	for _, sub := range []*Subscription{a, ab, cc, other} {
		select {
		case <-sub.Notify():
		default:
			t.Error("not woken for an uncounted loss")
		}
		if msgs, dropped := sub.Take(nil); len(msgs) != 0 || dropped != 0 || !sub.Uncounted() {
			t.Errorf("took %d messages, %d dropped, want an uncounted loss alone", len(msgs), dropped)
		}
		if sub.Uncounted() {
			t.Error("Uncounted did not forget")
		}
	}
}

// TestBeforeWait checks that subscribe calls BeforeWait's function before
// it waits for a bind, and not when every binding is in place or covered.
func TestBeforeWait(t *testing.T) {
	c := newOpConn()
	s := testSession(t, c)
	held, release := c.holdAt("bind a.#")
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	called := make(chan struct{})
	got := make(chan error, 1)
	go func() {
		sub, err := s.subscribe(BeforeWait(ctx, func() <-chan time.Time { close(called); return nil }), bindings("a.#"), false)
		if err == nil {
			t.Cleanup(sub.Close)
		}
		got <- err
	}()
	waitHeld(t, held)
	select {
	case <-called:
	case <-time.After(testTimeout):
		t.Fatal("subscribe waits for its bind without calling BeforeWait's function")
	}
	close(release)
	if err := <-got; err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a.#", "a.b.#"} {
		sub, err := s.subscribe(BeforeWait(ctx, func() <-chan time.Time {
			t.Errorf("%s: BeforeWait's function called with the binding in place", p)
			return nil
		}), bindings(p), false)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(sub.Close)
	}
}

// TestRefusedNamesClientPattern checks that a bind refused at Subscribe
// names the pattern the client sent, not the normal form that was bound.
func TestRefusedNamesClientPattern(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	c.fail = map[string]error{"bind a.#": fmt.Errorf("%w: topic permission", ErrAccessRefused)}
	s := testSession(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	_, err := s.subscribe(ctx, bindings("b", "a.#.#"), false)
	var berr *BindError
	if !errors.As(err, &berr) || !errors.Is(err, ErrAccessRefused) || berr.Binding.RoutingKeyPattern != "a.#.#" {
		t.Fatalf("Subscribe: %v, want a BindError for a.#.# with ErrAccessRefused", err)
	}
	// The normal form, when the client sent it too, is named as it is.
	_, err = s.subscribe(ctx, bindings("a.#.#", "a.#"), false)
	if !errors.As(err, &berr) || berr.Binding.RoutingKeyPattern != "a.#" {
		t.Fatalf("Subscribe: %v, want a BindError for a.#", err)
	}
}
