package broker

import (
	"slices"
	"testing"
	"testing/synctest"
	"time"
)

// TestBindRate checks that broker operations wait for the bind limiter:
// at one a second, the second subscription's bind reaches the broker a
// second after the first, and its subscriber waits for it.
func TestBindRate(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		s := testSession(t, limitBinds(c, newBindLimiter(1, 1)))
		start := time.Now()
		subscribeTest(t, s, "a.#")
		_, answers, pending, err := s.add(bindings("b.#"))
		if err != nil || pending != 1 {
			t.Fatalf("add: %v, %d pending", err, pending)
		}
		synctest.Wait()
		if got, want := c.opsSince(0), []string{"bind a.#"}; !slices.Equal(got, want) {
			t.Fatalf("broker operations at once: %q, want %q", got, want)
		}
		if err := <-answers; err != nil {
			t.Fatal(err)
		}
		if waited := time.Since(start); waited != time.Second {
			t.Errorf("the second bind came after %v, want 1s", waited)
		}
		if got, want := c.opsSince(0), []string{"bind a.#", "bind b.#"}; !slices.Equal(got, want) {
			t.Errorf("broker operations: %q, want %q", got, want)
		}
	})
}

// TestBindRateEndsWithConnection checks that a bind waiting for the
// limiter ends when the connection does.
func TestBindRateEndsWithConnection(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		c := newOpConn()
		lc := limitBinds(c, newBindLimiter(0.001, 1))
		if err := lc.Bind("x", "a"); err != nil {
			t.Fatal(err)
		}
		errc := make(chan error, 1)
		go func() { errc <- lc.Bind("x", "b") }()
		synctest.Wait()
		_ = lc.Close()
		if err := <-errc; err != ErrConnectionLost {
			t.Errorf("waiting bind after Close: %v, want ErrConnectionLost", err)
		}
		if got, want := c.opsSince(0), []string{"bind a"}; !slices.Equal(got, want) {
			t.Errorf("broker operations %q, want %q", got, want)
		}
	})
}

func TestNoBindLimiter(t *testing.T) {
	t.Parallel()
	c := newOpConn()
	if got := limitBinds(c, newBindLimiter(0, 10)); got != Conn(c) {
		t.Errorf("a zero rate wraps the connection: %T", got)
	}
}
