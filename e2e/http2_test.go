//go:build integration

package e2e

import (
	"context"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
)

// manyTabs is more streams than the six HTTP/1.1 connections a browser
// opens to one origin.
const manyTabs = 12

// TestManyStreamsOnOneConnection opens more streams than a browser's six
// HTTP/1.1 connections through each proxy of docs/operations.md, from one
// client over HTTP/2: they share one TCP connection, and every one of them
// gets a message published after they are all ready.
func TestManyStreamsOnOneConnection(t *testing.T) {
	for _, kind := range edgeKinds {
		t.Run(kind.name, func(t *testing.T) {
			e := startEdge(t, kind, startReplicas(t), false)
			ex := newExchange(t)
			u := connectURL(t, e.URL, binding{Exchange: ex.Name, RoutingKeyPattern: "tabs.#"})

			c := e.client(t, newAddrs().next())
			tr := c.Transport.(*http.Transport)
			var dials atomic.Int32
			dial := tr.DialContext
			tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
				dials.Add(1)
				return dial(ctx, network, addr)
			}

			streams := make([]*stream, manyTabs)
			for i := range streams {
				streams[i] = openStream(t, c, u)
				if streams[i].proto != 2 {
					t.Fatalf("stream %d through %s: HTTP/%d, want HTTP/2", i, e.Name, streams[i].proto)
				}
			}
			if n := dials.Load(); n != 1 {
				t.Errorf("%d streams through %s took %d connections, want 1", manyTabs, e.Name, n)
			}
			ex.publish(t, "tabs.all", jsonMessage(t, map[string]int{"n": 0}))
			for _, s := range streams {
				s.nextMessage(t, 0)
			}
		})
	}
}
