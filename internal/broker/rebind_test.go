package broker

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"testing"
	"testing/synctest"
	"time"

	"eventsproxy/internal/metrics"

	amqp "github.com/rabbitmq/amqp091-go"
)

// TestRebindPacing: each bound key in use is bound again a period after
// it was last bound, the one bound longest ago first, never two re-binds
// closer than the gap; a covered key, a key whose streams have gone and
// the stream's subscription itself are left as they are.
func TestRebindPacing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second, rebindGap: time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		a := subscribeTest(t, s, "a.#", "b")
		subscribeTest(t, s, "a.x") // covered by a.#
		gone := subscribeTest(t, s, "c")
		gone.Close()
		synctest.Wait()
		n := len(c.opsSince(0))

		steps := []struct {
			wait time.Duration
			want []string
		}{
			{9 * time.Second, nil},
			{1500 * time.Millisecond, []string{"bind a.#"}},
			{time.Second, []string{"bind b"}},
			{7 * time.Second, nil},
			{2 * time.Second, []string{"bind a.#"}},
			{time.Second, []string{"bind b"}},
		}
		for i, step := range steps {
			time.Sleep(step.wait)
			synctest.Wait()
			if got := c.opsSince(n); !slices.Equal(got, step.want) {
				t.Fatalf("step %d (+%v): ops %q, want %q", i, step.wait, got, step.want)
			}
			n += len(step.want)
		}
		select {
		case <-a.Done():
			t.Fatalf("subscription ended: %v", a.Err())
		default:
		}
	})
}

// TestRebindRefused: a re-bind that the broker refuses (the exchange is
// gone, say) ends every stream on that exchange with a BindError, as the
// exchange check does.
func TestRebindRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		a := subscribeTest(t, s, "a.#")
		covered := subscribeTest(t, s, "a.x")
		c.mu.Lock()
		c.fail = map[string]error{"bind a.#": ErrExchangeNotFound}
		c.mu.Unlock()
		time.Sleep(11 * time.Second)
		synctest.Wait()
		for name, sub := range map[string]*Subscription{"a.#": a, "a.x (covered)": covered} {
			select {
			case <-sub.Done():
			default:
				t.Fatalf("%s not ended after a refused re-bind", name)
			}
			var berr *BindError
			if err := sub.Err(); !errors.As(err, &berr) || !errors.Is(err, ErrExchangeNotFound) {
				t.Errorf("%s: Err %v, want a BindError with ErrExchangeNotFound", name, err)
			}
		}
		if s.bound != 0 {
			t.Errorf("%d keys bound, want 0", s.bound)
		}
	})
}

// TestRebindFreshened: a new stream on a key (or under a cover) last bound
// more than freshFor ago has that key bound again next, before its period
// is up; within freshFor of the last bind, it costs nothing.
func TestRebindFreshened(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: time.Minute, rebindGap: 100 * time.Millisecond}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		subscribeTest(t, s, "a.#")
		subscribeTest(t, s, "b")
		synctest.Wait()
		n := len(c.opsSince(0))

		steps := []struct {
			wait    time.Duration
			pattern string
			want    []string
		}{
			{freshFor / 2, "a.#", nil},
			{freshFor, "a.#", []string{"bind a.#"}},
			{freshFor / 2, "a.x", nil}, // covered by a.#, bound just now
			{freshFor, "a.y", []string{"bind a.#"}},
			{0, "b", []string{"bind b"}},
		}
		for i, step := range steps {
			time.Sleep(step.wait)
			subscribeTest(t, s, step.pattern)
			synctest.Wait()
			time.Sleep(time.Second) // past the gap between re-binds
			synctest.Wait()
			if got := c.opsSince(n); !slices.Equal(got, step.want) {
				t.Fatalf("step %d (%s after %v): ops %q, want %q", i, step.pattern, step.wait, got, step.want)
			}
			n += len(step.want)
		}
	})
}

// TestRebindFreshenWhileBehind: while the periodic re-binds are behind
// (the oldest is due already), a new stream on a stale key does not jump
// the queue, so that streams coming to some keys cannot starve the rest.
func TestRebindFreshenWhileBehind(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second, rebindGap: 5 * time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		subscribeTest(t, s, "a")
		subscribeTest(t, s, "b")
		subscribeTest(t, s, "c")
		synctest.Wait()
		n := len(c.opsSince(0))
		time.Sleep(10*time.Second + time.Millisecond) // a is re-bound; b and c are due, and wait for the gap
		synctest.Wait()
		subscribeTest(t, s, "c")
		time.Sleep(11 * time.Second)
		synctest.Wait()
		if got, want := c.opsSince(n), []string{"bind a", "bind b", "bind c"}; !slices.Equal(got, want) {
			t.Fatalf("ops %q, want %q", got, want)
		}
	})
}

// TestRebindAccessRefused: a re-bind refused for our user's access to its
// pattern (RabbitMQ's topic permissions are per binding key) ends only the
// streams on that pattern; a key it covered gets a bind of its own, and
// the exchange's other keys are re-bound as before. When the covered
// key's own bind is refused too, or fails with another channel error of
// the broker's (the connection still up), its stream ends rather than go
// silent.
func TestRebindAccessRefused(t *testing.T) {
	channelErr := &amqp.Error{Code: amqp.PreconditionFailed, Reason: "PRECONDITION_FAILED", Server: true, Recover: true}
	for _, coveredErr := range []error{nil, fmt.Errorf("%w: topic permission", ErrAccessRefused), channelErr} {
		coveredRefused := coveredErr != nil
		synctest.Test(t, func(t *testing.T) {
			c := newOpConn()
			s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second, rebindGap: time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
			defer s.end(ErrClosed)
			refused := subscribeTest(t, s, "a.#")
			covered := subscribeTest(t, s, "a.x")
			other := subscribeTest(t, s, "b")
			c.mu.Lock()
			c.fail = map[string]error{"bind a.#": fmt.Errorf("%w: topic permission", ErrAccessRefused)}
			if coveredRefused {
				c.fail["bind a.x"] = coveredErr
			}
			c.mu.Unlock()
			n := len(c.opsSince(0))
			time.Sleep(10*time.Second + 500*time.Millisecond)
			synctest.Wait()
			ended := map[string]*Subscription{"a.#": refused}
			open := map[string]*Subscription{"b": other}
			if coveredRefused {
				ended["a.x"] = covered
			} else {
				open["a.x"] = covered
			}
			for name, sub := range ended {
				select {
				case <-sub.Done():
				default:
					t.Fatalf("%s not ended after a refused bind", name)
				}
				want := error(ErrAccessRefused)
				if name == "a.x" {
					want = coveredErr
				}
				var berr *BindError
				if err := sub.Err(); !errors.As(err, &berr) || !errors.Is(err, want) || berr.Binding.RoutingKeyPattern != name {
					t.Errorf("%s: Err %v, want a BindError for %s with %v", name, err, name, want)
				}
			}
			for name, sub := range open {
				select {
				case <-sub.Done():
					t.Errorf("%s ended: %v", name, sub.Err())
				default:
				}
			}
			// a.x is bound before a.# is unbound (which RabbitMQ would
			// refuse as well), so that no message of a.x is missed.
			if got, want := c.opsSince(n), []string{"bind a.#", "bind a.x", "unbind a.#"}; !slices.Equal(got, want) {
				t.Fatalf("ops %q, want %q", got, want)
			}
			time.Sleep(time.Second)
			synctest.Wait()
			if got, want := c.opsSince(n+3), []string{"bind b"}; !slices.Equal(got, want) {
				t.Fatalf("then ops %q, want %q", got, want)
			}
			want := 2
			if coveredRefused {
				want = 1
			}
			s.mu.Lock()
			bound := s.bound
			s.mu.Unlock()
			if bound != want {
				t.Errorf("%d keys bound, want %d", bound, want)
			}
		})
	}
}

// typedConn is an opConn whose exchanges have types, which RecheckTopic
// probes (and counts).
type typedConn struct {
	*opConn
	typ    string // the type of every exchange; "" is topic
	probes int
}

func (c *typedConn) RecheckTopic(exchange string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.probes++
	if c.typ != "" {
		return &ExchangeTypeError{Exchange: exchange, Type: c.typ}
	}
	return nil
}

// TestRebindTypeChanged: before a re-bind the exchange's type is probed
// again, at most twice a period; once it is no longer a topic exchange,
// every stream on it ends with the type's error, what was bound there is
// unbound, and nothing is bound there again.
func TestRebindTypeChanged(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := &typedConn{opConn: newOpConn()}
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second, rebindGap: time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		subs := map[string]*Subscription{}
		for _, p := range []string{"a", "b", "c.#", "c.d"} {
			subs[p] = subscribeTest(t, s, p)
		}
		n := len(c.opsSince(0))
		time.Sleep(22*time.Second + 500*time.Millisecond) // two rounds of re-binds
		synctest.Wait()
		c.mu.Lock()
		probes := c.probes
		c.typ = "fanout"
		c.mu.Unlock()
		if probes != 2 {
			t.Errorf("%d type probes in two rounds of re-binds, want 2", probes)
		}
		n += 6
		time.Sleep(10 * time.Second) // the next re-bind finds the new type
		synctest.Wait()
		for p, sub := range subs {
			select {
			case <-sub.Done():
			default:
				t.Fatalf("%s not ended after its exchange's type changed", p)
			}
			var terr *ExchangeTypeError
			if err := sub.Err(); !errors.As(err, &terr) || terr.Type != "fanout" {
				t.Errorf("%s: Err %v, want an ExchangeTypeError for fanout", p, err)
			}
		}
		got := c.opsSince(n)
		slices.Sort(got)
		if want := []string{"unbind a", "unbind b", "unbind c.#"}; !slices.Equal(got, want) {
			t.Fatalf("ops %q, want %q", got, want)
		}
		time.Sleep(30 * time.Second)
		synctest.Wait()
		if got := c.opsSince(n + 3); len(got) > 0 {
			t.Fatalf("then ops %q, want none", got)
		}
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.bound != 0 {
			t.Errorf("%d keys bound, want 0", s.bound)
		}
	})
}

// TestRebindWideAccessRefused: a wide key whose re-bind is refused for
// access ends no stream (none asked for it): the patterns it served get
// bindings of their own before it is unbound, and the exchange stays
// narrow.
func TestRebindWideAccessRefused(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{rebind: 10 * time.Second, rebindGap: time.Second}, metrics.Discard(), slog.New(slog.NewTextHandler(io.Discard, nil)))
		defer s.end(ErrClosed)
		s.setWidePolicy(WidePolicy{Keys: 3})
		subs := map[string]*Subscription{}
		for _, p := range []string{"primary.a.#", "primary.b.#", "primary.c.#"} {
			subs[p] = subscribeTest(t, s, p)
		}
		synctest.Wait()
		if got := wideKey(t, s); got != "primary.#" {
			t.Fatalf("wide key: got %q, want primary.#", got)
		}
		c.mu.Lock()
		c.fail = map[string]error{"bind primary.#": fmt.Errorf("%w: topic permission", ErrAccessRefused)}
		c.mu.Unlock()
		n := len(c.opsSince(0))
		time.Sleep(10*time.Second + 500*time.Millisecond)
		synctest.Wait()
		for p, sub := range subs {
			select {
			case <-sub.Done():
				t.Fatalf("%s ended: %v", p, sub.Err())
			default:
			}
		}
		ops := c.opsSince(n)
		if len(ops) != 5 || ops[0] != "bind primary.#" || ops[4] != "unbind primary.#" {
			t.Fatalf("ops %q, want the refused re-bind, three binds, then the unbind", ops)
		}
		if binds := slices.Sorted(slices.Values(ops[1:4])); !slices.Equal(binds, []string{"bind primary.a.#", "bind primary.b.#", "bind primary.c.#"}) {
			t.Fatalf("ops %q, want the three patterns bound before the unbind", ops)
		}
		s.mu.Lock()
		bound, wide := s.bound, s.widenings[testExchange].key
		s.mu.Unlock()
		if bound != 3 || wide != nil {
			t.Errorf("%d keys bound, wide key %v; want 3 and none", bound, wide)
		}
		for p, sub := range subs {
			checkRouted(t, s, sub, p[:len(p)-2]+".x")
		}
	})
}
