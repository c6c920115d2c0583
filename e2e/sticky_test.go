//go:build integration

package e2e

import (
	"net/http/cookiejar"
	"net/url"
	"testing"
)

// stickyRounds is how many times a sticky test reconnects.
const stickyRounds = 4

// testStickyByAddress reconnects from one address and checks that each
// stream lands on the same replica.
func testStickyByAddress(t *testing.T, e *edge, replicas [2]*proxy, ex *exchange, addrs *addrs) {
	u := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "sticky.#"})
	c := e.client(t, addrs.next())
	first := -1
	for i := range stickyRounds {
		r := streamOn(t, replicas, func() *stream { return openStream(t, c, u) })
		if first < 0 {
			first = r
		} else if r != first {
			t.Fatalf("through %s, reconnect %d from one address landed on replica %d, the first on %d", e.Name, i, r, first)
		}
	}
}

// TestStickyByCookie runs the cookie-sticky configurations of
// docs/operations.md in front of two replicas: a client that keeps the
// proxy's cookie comes back to its replica however its address changes,
// and clients without it are spread over both.
func TestStickyByCookie(t *testing.T) {
	for _, kind := range cookieEdgeKinds {
		t.Run(kind.name, func(t *testing.T) {
			replicas := startReplicas(t)
			e := startEdge(t, kind, replicas, false)
			ex := newExchange(t)
			u := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "cookie.#"})
			addrs := newAddrs()

			jar, err := cookiejar.New(nil)
			if err != nil {
				t.Fatal(err)
			}
			first := -1
			for i := range stickyRounds {
				c := e.client(t, addrs.next())
				c.Jar = jar
				r := streamOn(t, replicas, func() *stream { return openStream(t, c, u) })
				if first < 0 {
					first = r
				} else if r != first {
					t.Fatalf("through %s, reconnect %d with the cookie (%d cookies kept) landed on replica %d, the first on %d", e.Name, i, len(jar.Cookies(mustParseURL(t, e.URL))), r, first)
				}
			}

			// Without the cookie, the same sequence is spread.
			seen := map[int]bool{}
			for range 2 * stickyRounds {
				c := e.client(t, addrs.next())
				seen[streamOn(t, replicas, func() *stream { return openStream(t, c, u) })] = true
			}
			if len(seen) != 2 {
				t.Fatalf("through %s, %d streams without a cookie all landed on one replica: the test would not see a cookie that does nothing", e.Name, 2*stickyRounds)
			}
		})
	}
}

// streamOn opens a stream with open while no other is open on the replicas,
// returns the index of the replica that holds it, and closes it.
func streamOn(t testing.TB, replicas [2]*proxy, open func() *stream) int {
	t.Helper()
	for _, r := range replicas {
		waitStreamsOpen(t, r, 0, "before a new stream")
	}
	s := open()
	defer s.close()
	counts := [2]int{streamsOpen(t, replicas[0], "open"), streamsOpen(t, replicas[1], "open")}
	switch counts {
	case [2]int{1, 0}:
		return 0
	case [2]int{0, 1}:
		return 1
	}
	t.Fatalf("the replicas hold %v streams, want one stream on one of them", counts)
	return -1
}

func mustParseURL(t testing.TB, raw string) *url.URL {
	t.Helper()
	u, err := url.Parse(raw)
	if err != nil {
		t.Fatal(err)
	}
	return u
}
