//go:build integration

package server_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// These tests run the service on a cluster of three nodes of their own and
// take away the node it is connected to: stopped (rabbitmqctl stop_app), and
// killed outright. The bounds are generous for a busy machine; the figures
// measured go to the test log (go test -v -run TestCluster).

// TestClusterNodeLost covers both ways to lose a node, one after the other
// on one cluster: starting three nodes costs more than the tests.
func TestClusterNodeLost(t *testing.T) {
	before := goleak.IgnoreCurrent()
	nodes := rabbittest.StartCluster(t, 3)
	var urls []string
	for _, n := range nodes {
		urls = append(urls, n.URL)
	}
	list := strings.Join(urls, ",")

	t.Run("stop_app", func(t *testing.T) {
		lost := nodeLost(t, nodes, list, func(n *rabbittest.Node) error { return n.StopApp() })
		// The node comes back and rejoins; it holds nothing of ours.
		if err := lost.StartApp(); err != nil {
			t.Fatal(err)
		}
		assertNothingLeft(t, []*rabbittest.Node{lost}, "")
	})
	t.Run("kill", func(t *testing.T) {
		nodeLost(t, nodes, list, func(n *rabbittest.Node) error { return n.Kill() })
	})
	goleak.VerifyNone(t, before)
}

// clusterPatterns are the patterns of the streams the tests open: two
// exchanges, distinct patterns, so that each binding is one broker binding.
var clusterPatterns = []string{"a.#", "b.*", "c", "d.#", "e.x.*"}

// nodeLost runs the service on the cluster nodes (their URLs in list), opens
// streams on it, takes away the node it is connected to with fail, checks
// what the streams and the service see, and returns that node.
func nodeLost(t *testing.T, nodes []*rabbittest.Node, list string, fail func(*rabbittest.Node) error) *rabbittest.Node {
	t.Helper()
	r := startOn(t, list)
	<-r.connected // the first connection
	a, queue := queueNode(t, nodes, r.prefix, nil)
	others := without(nodes, a)
	t.Logf("the service is connected to node %s (queue %s)", a.Name, queue)

	// The publisher is connected to another node, which stays.
	b := others[0]
	pubConn := b.Dial(t, "eventsproxy test publisher "+t.Name())
	pub := rabbittest.Channel(t, pubConn)
	exchanges := []string{b.Exchange(t, pub, "eventsproxy-test/x/"), b.Exchange(t, pub, "eventsproxy-test/y/")}
	type binding struct{ exchange, pattern string }
	var bs []binding
	for _, ex := range exchanges {
		for _, p := range clusterPatterns {
			bs = append(bs, binding{ex, p})
		}
	}
	streams := make([]*stream, 0, 2*len(bs))
	for range 2 {
		for _, bd := range bs {
			streams = append(streams, openBinding(t, r.url, bd.exchange, bd.pattern))
		}
	}
	if got := len(b.QueueBindings(t, queue)); got != len(bs) {
		t.Fatalf("the queue on node %s has %d bindings, want %d", a.Name, got, len(bs))
	}

	failed := time.Now()
	if err := fail(a); err != nil {
		t.Fatal(err)
	}
	took := time.Since(failed)
	var lostAt time.Time
	select {
	case lostAt = <-r.lost:
	case <-time.After(took + 30*time.Second):
		t.Fatalf("the service did not notice node %s going away", a.Name)
	}
	slowest := expectUnavailable(t, streams, lostAt)
	for _, s := range streams {
		s.resp.Body.Close()
	}

	var backAt time.Time
	select {
	case backAt = <-r.connected:
	case <-time.After(60 * time.Second):
		t.Fatalf("not serving again within 60s of losing node %s", a.Name)
	}
	if code, _ := status(t, r.url+"/__heartbeat__"); code != 200 {
		t.Fatalf("heartbeat after reconnecting: %d, want 200", code)
	}
	c, _ := queueNode(t, others, r.prefix, a)
	t.Logf("cluster %s: the service noticed %v after the command began (which took %v); %d streams told within %v of that; serving again from node %s %v after the loss",
		t.Name(), lostAt.Sub(failed).Round(time.Millisecond), took.Round(time.Millisecond), len(streams), slowest.Round(time.Microsecond), c.Name, backAt.Sub(lostAt).Round(time.Millisecond))

	// The streams come back on the new node: each is ready only once its
	// binding is there, so a message published right after its ready
	// reaches it.
	readyStart := time.Now()
	var slowestReady time.Duration
	for i, bd := range bs {
		start := time.Now()
		s := openBinding(t, r.url, bd.exchange, bd.pattern)
		slowestReady = max(slowestReady, time.Since(start))
		key := strings.NewReplacer("#", "k", "*", "k").Replace(bd.pattern)
		rabbittest.Publish(t, pub, bd.exchange, key, nil, fmt.Appendf(nil, `{"n":%d}`, i))
		ev := s.next(t, 10*time.Second)
		if ev.Kind != "message" || !strings.Contains(string(ev.Data), fmt.Sprintf(`"payload":{"n":%d}`, i)) {
			t.Fatalf("stream %d on %s %s after failover: got %q %s, want message %d", i, bd.exchange, bd.pattern, ev.Kind, ev.Data, i)
		}
		s.resp.Body.Close()
	}
	t.Logf("cluster %s: %d streams opened again one by one in %v (slowest ready %v), each got what was published after its ready",
		t.Name(), len(bs), time.Since(readyStart).Round(time.Millisecond), slowestReady.Round(time.Millisecond))
	pubConn.Close()
	r.stop(t)
	assertNothingLeft(t, others, r.prefix)
	return a
}

// queueNode returns the node that holds the one queue (side queues aside) whose name starts with
// prefix, and its name, as the management API of nodes lists it; it waits
// for a queue held by another node than not (nil: any).
func queueNode(t *testing.T, nodes []*rabbittest.Node, prefix string, not *rabbittest.Node) (*rabbittest.Node, string) {
	t.Helper()
	var seen []rabbittest.Queue
	rabbittest.Poll(t, fmt.Sprintf("one queue under %s on a node other than %v", prefix, not), 60*time.Second, func() (bool, string) {
		seen = mainQueues(nodes[0].Queues(t, prefix))
		return len(seen) == 1 && (not == nil || seen[0].Node != not.Name), fmt.Sprintf("queues %v", seen)
	})
	for _, n := range nodes {
		if n.Name == seen[0].Node {
			return n, seen[0].Name
		}
	}
	t.Fatalf("queue %s on node %s, which is none of %d", seen[0].Name, seen[0].Node, len(nodes))
	return nil, ""
}

// assertNothingLeft checks that no node of nodes lists a queue under prefix,
// a binding to one, or a connection of the service; "" checks every queue
// named like a test's.
func assertNothingLeft(t *testing.T, nodes []*rabbittest.Node, prefix string) {
	t.Helper()
	if prefix == "" {
		prefix = "eventsproxy-test/"
	}
	for _, n := range nodes {
		rabbittest.Poll(t, "node "+n.Name+" lists nothing left", 60*time.Second, func() (bool, string) {
			var left []string
			for _, q := range n.Queues(t, prefix) {
				left = append(left, "queue "+q.Name+" on "+q.Node)
			}
			for _, bd := range n.Bindings(t) {
				if strings.HasPrefix(bd.Destination, prefix) {
					left = append(left, "binding "+bd.String())
				}
			}
			for _, c := range n.Connections(t) {
				if strings.HasPrefix(c.ClientProperties.ConnectionName, "eventsproxy test") {
					left = append(left, "connection "+c.ClientProperties.ConnectionName+" on "+c.Node)
				}
			}
			return len(left) == 0, fmt.Sprintf("it lists %v", left)
		})
	}
}

func without(nodes []*rabbittest.Node, n *rabbittest.Node) []*rabbittest.Node {
	var out []*rabbittest.Node
	for _, m := range nodes {
		if m != n {
			out = append(out, m)
		}
	}
	return out
}

// mainQueues returns the queues of qs that are not the side queues that a
// broker connection holds beside its queue.
func mainQueues(qs []rabbittest.Queue) []rabbittest.Queue {
	var out []rabbittest.Queue
	for _, q := range qs {
		if !broker.IsSideQueue(q.Name) {
			out = append(out, q)
		}
	}
	return out
}
