package broker

import (
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"eventsproxy/internal/topic"
)

// coverConn is an opConn that checks, at each unbind, that the patterns
// the test says are in use (open, ready subscriptions) are still covered
// by what stays bound: a pattern left uncovered for a moment is a message
// missed.
type coverConn struct {
	*opConn

	mu     sync.Mutex
	inUse  map[string]int
	missed []string // "unbind p left q uncovered"
}

func newCoverConn() *coverConn {
	return &coverConn{opConn: newOpConn(), inUse: make(map[string]int)}
}

func (c *coverConn) Unbind(exchange, pattern string) error {
	err := c.opConn.Unbind(exchange, pattern)
	c.opConn.mu.Lock()
	var bound []*topic.Pattern
	for p, ok := range c.opConn.bound {
		if ok {
			bound = append(bound, mustCompile(p))
		}
	}
	c.opConn.mu.Unlock()
	c.mu.Lock()
	defer c.mu.Unlock()
	for p := range c.inUse {
		q := mustCompile(p)
		if !slices.ContainsFunc(bound, func(b *topic.Pattern) bool { return b.Covers(q) }) {
			c.missed = append(c.missed, fmt.Sprintf("unbind %s left %s uncovered", pattern, p))
		}
	}
	return err
}

// use records that pattern is in use by a ready subscription, and checks
// that the broker covers it now; done says that the subscription closes.
func (c *coverConn) use(t *testing.T, pattern string) (done func()) {
	t.Helper()
	q := mustCompile(pattern)
	c.opConn.mu.Lock()
	covered := false
	for p, ok := range c.opConn.bound {
		covered = covered || ok && mustCompile(p).Covers(q)
	}
	c.opConn.mu.Unlock()
	if !covered {
		t.Errorf("ready on %s, but nothing bound covers it", pattern)
	}
	c.mu.Lock()
	c.inUse[pattern]++
	c.mu.Unlock()
	return func() {
		c.mu.Lock()
		if c.inUse[pattern]--; c.inUse[pattern] == 0 {
			delete(c.inUse, pattern)
		}
		c.mu.Unlock()
	}
}

func (c *coverConn) check(t *testing.T) {
	t.Helper()
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, m := range c.missed {
		t.Error(m)
	}
}

func mustCompile(p string) *topic.Pattern {
	q, err := topic.Compile(p)
	if err != nil {
		panic(err)
	}
	return q
}

// wideSubscribe subscribes to pattern, checks that it is covered on the
// broker once ready, and keeps it in c's patterns in use until closed.
func wideSubscribe(t *testing.T, s *session, c *coverConn, pattern string) (sub *Subscription, close func()) {
	t.Helper()
	sub = subscribeTest(t, s, pattern)
	done := c.use(t, pattern)
	return sub, func() {
		done()
		sub.Close()
	}
}

func wideKey(t *testing.T, s *session) string {
	t.Helper()
	s.mu.Lock()
	defer s.mu.Unlock()
	if w := s.widenings[testExchange]; w != nil && w.key != nil {
		return w.key.key.pattern
	}
	return ""
}

// TestWidenWhileBound checks that an exchange whose streams hold Keys
// patterns is bound wide once, that the patterns bound before are unbound
// only after the wide binding is in place, that a new pattern under it
// costs no broker operation, and that every stream still gets its
// messages.
func TestWidenWhileBound(t *testing.T) {
	t.Parallel()
	c := newCoverConn()
	s := testSession(t, c)
	s.setWidePolicy(WidePolicy{Keys: 3})
	subs := map[string]*Subscription{}
	for _, p := range []string{"primary.a.#", "primary.b.#", "primary.c.#"} {
		subs[p], _ = wideSubscribe(t, s, c, p)
	}
	syncSession(t, s)
	if got := wideKey(t, s); got != "primary.#" {
		t.Fatalf("wide key: got %q, want primary.#", got)
	}
	ops := c.opsSince(0)
	if want := []string{"bind primary.a.#", "bind primary.b.#", "bind primary.#"}; len(ops) != 5 || !slices.Equal(ops[:3], want) {
		t.Fatalf("ops: got %q, want %q then the unbinds of the first two", ops, want)
	}
	if unbinds := slices.Sorted(slices.Values(ops[3:])); !slices.Equal(unbinds, []string{"unbind primary.a.#", "unbind primary.b.#"}) {
		t.Fatalf("ops after the wide bind: got %q", ops[3:])
	}
	n := len(c.opsSince(0))
	subs["primary.d.#"], _ = wideSubscribe(t, s, c, "primary.d.#")
	syncSession(t, s)
	if got := c.opsSince(n); len(got) != 0 {
		t.Fatalf("a pattern under the wide binding cost %q", got)
	}
	for p, sub := range subs {
		key := p[:len(p)-2] + ".x"
		checkRouted(t, s, sub, key)
	}
	// A message for none of them reaches none.
	s.router.route(&Message{Exchange: testExchange, RoutingKey: "primary.z"})
	for p, sub := range subs {
		if msgs, _ := sub.Take(nil); len(msgs) != 0 {
			t.Fatalf("%s got %v", p, msgs)
		}
	}
	c.check(t)
}

// TestNarrowForUnwantedTraffic checks that a wide binding that brings more
// unwanted messages a second than MaxUnwanted goes, that every pattern it
// served is bound again before it is unbound, and that the exchange stays
// narrow afterwards.
func TestNarrowForUnwantedTraffic(t *testing.T) {
	t.Parallel()
	c := newCoverConn()
	s := testSession(t, c)
	s.setWidePolicy(WidePolicy{Keys: 2, MaxUnwanted: 1})
	a, _ := wideSubscribe(t, s, c, "primary.a.#")
	b, _ := wideSubscribe(t, s, c, "primary.b.#")
	syncSession(t, s)
	if wideKey(t, s) != "primary.#" {
		t.Fatal("not wide")
	}
	n := len(c.opsSince(0))
	for i := range 100 {
		s.router.route(&Message{Exchange: testExchange, RoutingKey: fmt.Sprintf("primary.other%d", i)})
	}
	s.reviewWide()
	syncSession(t, s)
	ops := c.opsSince(n)
	if len(ops) != 3 || ops[2] != "unbind primary.#" {
		t.Fatalf("ops when narrowing: got %q, want the two binds then unbind primary.#", ops)
	}
	if binds := slices.Sorted(slices.Values(ops[:2])); !slices.Equal(binds, []string{"bind primary.a.#", "bind primary.b.#"}) {
		t.Fatalf("binds when narrowing: got %q", ops[:2])
	}
	if got := wideKey(t, s); got != "" {
		t.Fatalf("still wide on %q", got)
	}
	// Narrowed for its traffic: new patterns get their own bindings.
	n = len(c.opsSince(0))
	x, _ := wideSubscribe(t, s, c, "primary.x.#")
	syncSession(t, s)
	if got := c.opsSince(n); !slices.Equal(got, []string{"bind primary.x.#"}) {
		t.Fatalf("ops after narrowing: got %q", got)
	}
	checkRouted(t, s, a, "primary.a.1")
	checkRouted(t, s, b, "primary.b.1")
	checkRouted(t, s, x, "primary.x.1")
	c.check(t)
}

// TestNarrowWhileStreamsCome checks the handover when the wide key goes
// while a new stream arrives in the middle of it: the new stream is ready
// on the wide binding, and is bound before the wide binding goes.
func TestNarrowWhileStreamsCome(t *testing.T) {
	t.Parallel()
	c := newCoverConn()
	s := testSession(t, c)
	s.setWidePolicy(WidePolicy{Keys: 2, MaxUnwanted: 1})
	wideSubscribe(t, s, c, "primary.a.#")
	wideSubscribe(t, s, c, "primary.b.#")
	syncSession(t, s)
	held, release := c.holdAt("bind primary.a.#")
	for range 10 {
		s.router.route(&Message{Exchange: testExchange, RoutingKey: "other"})
	}
	s.reviewWide()
	waitHeld(t, held)
	// primary.a.# is being bound: a new stream on it is served by the
	// wide binding meanwhile. primary.e.# waits for a binding of its own.
	_, closeA2 := wideSubscribe(t, s, c, "primary.a.#")
	waitE := subscribeLater(t, s, "primary.e.#")
	close(release)
	e := waitE()
	c.use(t, "primary.e.#")
	syncSession(t, s)
	if c.isBound("primary.#") || !c.isBound("primary.e.#") {
		t.Fatalf("after narrowing: ops %q", c.opsSince(0))
	}
	closeA2()
	checkRouted(t, s, e, "primary.e.1")
	c.check(t)
}

// TestNarrowWhenUnused checks that a wide binding no stream uses goes at
// the next review, and that the exchange can widen again at once.
func TestNarrowWhenUnused(t *testing.T) {
	t.Parallel()
	c := newCoverConn()
	s := testSession(t, c)
	s.setWidePolicy(WidePolicy{Keys: 2})
	_, closeA := wideSubscribe(t, s, c, "primary.a.#")
	_, closeB := wideSubscribe(t, s, c, "primary.b.#")
	syncSession(t, s)
	closeA()
	closeB()
	syncSession(t, s)
	if !c.isBound("primary.#") {
		t.Fatal("the wide binding went before the review")
	}
	s.reviewWide()
	syncSession(t, s)
	if c.isBound("primary.#") {
		t.Fatalf("the wide binding is still there: ops %q", c.opsSince(0))
	}
	s.mu.Lock()
	left := len(s.keys)
	s.mu.Unlock()
	if left != 0 {
		t.Fatalf("%d keys left", left)
	}
	wideSubscribe(t, s, c, "primary.c.#")
	wideSubscribe(t, s, c, "primary.d.#")
	syncSession(t, s)
	if wideKey(t, s) != "primary.#" || !c.isBound("primary.#") {
		t.Fatalf("not wide again: ops %q", c.opsSince(0))
	}
	c.check(t)
}

// refusingConn refuses binds of one pattern, as a broker's topic
// permissions may refuse #.
type refusingConn struct {
	*opConn
	refuse string
}

func (c *refusingConn) Bind(exchange, pattern string) error {
	if pattern == c.refuse {
		c.opConn.do("bind", "refused "+pattern)
		return ErrAccessRefused
	}
	return c.opConn.Bind(exchange, pattern)
}

// TestWideRefused checks that when the broker refuses the wide binding,
// the streams are served by their own bindings, with no error, and the
// exchange is not widened again for a while.
func TestWideRefused(t *testing.T) {
	t.Parallel()
	c := &refusingConn{opConn: newOpConn(), refuse: "#"}
	s := testSession(t, c)
	s.setWidePolicy(WidePolicy{Keys: 2})
	a := subscribeTest(t, s, "a.#")
	b := subscribeTest(t, s, "b.#")
	syncSession(t, s)
	d := subscribeTest(t, s, "d.#")
	syncSession(t, s)
	ops := c.opsSince(0)
	want := []string{"bind a.#", "bind refused #", "bind b.#", "bind d.#"}
	if !slices.Equal(ops, want) {
		t.Fatalf("ops: got %q, want %q", ops, want)
	}
	checkRouted(t, s, a, "a.1")
	checkRouted(t, s, b, "b.1")
	checkRouted(t, s, d, "d.1")
}

// TestWidePattern checks the choice of the wide pattern.
func TestWidePattern(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		patterns []string
		want     string
	}{
		{[]string{"primary.a.#", "primary.b.#", "route.x"}, "primary.#"},
		{[]string{"primary.a.#", "route.b.#"}, "#"},
		{[]string{"*.a", "#.b", "primary.c"}, "#"},
		{[]string{"primary", "primary.*"}, "primary.#"},
	} {
		s := &session{keys: make(map[bindKey]*keyState)}
		for _, p := range tc.patterns {
			s.keys[bindKey{testExchange, p}] = &keyState{}
		}
		s.keys[bindKey{"other", "x.y"}] = &keyState{}
		if got := s.widePatternLocked(testExchange); got != tc.want {
			t.Errorf("%q: got %q, want %q", tc.patterns, got, tc.want)
		}
	}
}

// TestTrafficBackoffGrows checks that an exchange narrowed again and again
// for its traffic stays narrow longer each time, up to a cap.
func TestTrafficBackoffGrows(t *testing.T) {
	want := []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 8 * time.Minute, 16 * time.Minute, 32 * time.Minute, 64 * time.Minute, 64 * time.Minute, 64 * time.Minute}
	for n, w := range want {
		if got := trafficBackoff(n); got != w {
			t.Errorf("after narrowing %d: %v, want %v", n, got, w)
		}
	}
}
