//go:build integration

package e2e

import (
	"io"
	"math/rand/v2"
	"net"
	"sync"
	"testing"
	"time"
)

// cutter is a TCP proxy of the test's own between clients and a server,
// which plays a flaky network: it cuts each connection after a number of
// bytes from the server, in the middle of an event as often as not, holds
// new connections back, or sends them to another server, as a load
// balancer that lost a client's replica would. Its methods may be called
// from any goroutine; it is closed at the end of the test, after the
// clients that a test starts after it.
type cutter struct {
	// Addr is where clients connect: 127.0.0.1:PORT.
	Addr string

	ln    net.Listener
	local *net.TCPAddr // the address it dials from; nil: any

	mu       sync.Mutex
	upstream string
	min, max int           // cut after [min, max) bytes from the server; 0: never
	held     chan struct{} // non-nil: new connections wait until it is closed
	conns    map[*cutConn]bool
	cuts     int
	accepted int
	closed   bool

	wg sync.WaitGroup
}

// cutConn is one client connection and its connection to the server.
type cutConn struct {
	client, server net.Conn
	once           sync.Once
}

func (c *cutConn) close() {
	c.once.Do(func() {
		c.client.Close()
		if c.server != nil {
			c.server.Close()
		}
	})
}

// startCutter listens on a free loopback port and passes connections on to
// upstream (HOST:PORT), dialling from local when it is not empty.
func startCutter(t testing.TB, upstream, local string) *cutter {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c := &cutter{Addr: ln.Addr().String(), ln: ln, upstream: upstream, conns: map[*cutConn]bool{}}
	if local != "" {
		c.local = &net.TCPAddr{IP: net.ParseIP(local)}
	}
	c.wg.Add(1)
	go c.accept()
	t.Cleanup(c.close)
	return c
}

// cutEvery makes the cutter cut each connection, open or new, after a
// random number of bytes from the server in [min, max); 0 stops cutting.
func (c *cutter) cutEvery(min, max int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.min, c.max = min, max
}

// setUpstream sends new connections to upstream.
func (c *cutter) setUpstream(upstream string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.upstream = upstream
}

// hold makes new connections wait, connected to nobody, until release.
func (c *cutter) hold() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held == nil {
		c.held = make(chan struct{})
	}
}

// release lets the held connections through to the upstream.
func (c *cutter) release() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.held != nil {
		close(c.held)
		c.held = nil
	}
}

// cutAll cuts every open connection now, and returns how many there were.
func (c *cutter) cutAll() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	n := len(c.conns)
	for cc := range c.conns {
		// Under c.mu, which guards cc.server; and forgotten, so that a
		// held one is never passed on.
		cc.close()
		delete(c.conns, cc)
	}
	c.cuts += n
	return n
}

// counts returns how many connections the cutter cut and accepted.
func (c *cutter) counts() (cuts, accepted int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.cuts, c.accepted
}

// close stops listening, closes every connection and waits for the
// cutter's goroutines.
func (c *cutter) close() {
	c.mu.Lock()
	c.closed = true
	if c.held != nil {
		close(c.held)
		c.held = nil
	}
	conns := c.conns
	c.conns = map[*cutConn]bool{}
	c.mu.Unlock()
	c.ln.Close()
	for cc := range conns {
		cc.close()
	}
	c.wg.Wait()
}

func (c *cutter) accept() {
	defer c.wg.Done()
	for {
		conn, err := c.ln.Accept()
		if err != nil {
			return
		}
		cc := &cutConn{client: conn}
		c.mu.Lock()
		if c.closed {
			c.mu.Unlock()
			conn.Close()
			return
		}
		c.accepted++
		c.conns[cc] = true
		held := c.held
		c.mu.Unlock()
		c.wg.Add(1)
		go c.serve(cc, held)
	}
}

// serve passes one connection on, cutting it when its byte count from the
// server reaches its limit.
func (c *cutter) serve(cc *cutConn, held chan struct{}) {
	defer c.wg.Done()
	defer func() {
		cc.close()
		c.mu.Lock()
		delete(c.conns, cc)
		c.mu.Unlock()
	}()
	if held != nil {
		// Read nothing meanwhile; a client that gives up closes it.
		<-held
	}
	c.mu.Lock()
	upstream, closed := c.upstream, c.closed
	c.mu.Unlock()
	if closed {
		return
	}
	dialer := net.Dialer{LocalAddr: c.local, Timeout: 10 * time.Second}
	server, err := dialer.Dial("tcp", upstream)
	if err != nil {
		return
	}
	c.mu.Lock()
	if c.closed || !c.conns[cc] {
		c.mu.Unlock()
		server.Close()
		return
	}
	cc.server = server
	c.mu.Unlock()

	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		_, _ = io.Copy(server, cc.client)
		cc.close()
	}()

	buf := make([]byte, 32<<10)
	sent, limit := 0, c.limit()
	for {
		n, err := server.Read(buf)
		if n > 0 {
			if limit > 0 && sent+n >= limit {
				_, _ = cc.client.Write(buf[:limit-sent])
				c.mu.Lock()
				c.cuts++
				c.mu.Unlock()
				return
			}
			if _, werr := cc.client.Write(buf[:n]); werr != nil {
				return
			}
			sent += n
		}
		if err != nil {
			return
		}
		if limit == 0 {
			// Cutting may have been turned on since.
			if limit = c.limit(); limit > 0 && limit <= sent {
				limit = sent + 1
			}
		}
	}
}

// limit returns a byte count for a connection to be cut at, or 0.
func (c *cutter) limit() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.max <= c.min || c.min <= 0 {
		return 0
	}
	return c.min + rand.IntN(c.max-c.min)
}
