package broker

import (
	"context"
	"crypto/tls"
	"net"
	"net/url"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/testcert"
)

func TestRedactList(t *testing.T) {
	t.Parallel()
	got := Redact("amqp://u:hunter2@a:5672/, amqps://v:s3cret@b/vh,amqp://c/")
	if want := "amqp://u:xxxxx@a:5672/,amqps://v:xxxxx@b/vh,amqp://c/"; got != want {
		t.Fatalf("Redact = %q, want %q", got, want)
	}
}

// refusedURLs returns n amqp URLs of loopback ports that nothing listens
// on, each with a password.
func refusedURLs(t *testing.T, n int) []string {
	t.Helper()
	var urls []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		urls = append(urls, "amqp://guest:hunter2@"+ln.Addr().String()+"/")
		ln.Close()
	}
	return urls
}

// firstDialed returns the URL of urls that err names first.
func firstDialed(t *testing.T, err error, urls []string) string {
	t.Helper()
	text := err.Error()
	best, at := "", len(text)
	for _, u := range urls {
		if i := strings.Index(text, Redact(u)); i >= 0 && i < at {
			best, at = u, i
		}
	}
	if best == "" {
		t.Fatalf("the error names none of the nodes: %v", err)
	}
	return best
}

// TestDialTriesEveryNodeInTurn checks that one Dial tries each node once,
// that the next Dial starts with another node, that the error names every
// node without its password, and that replicas given the same list start
// with different nodes.
func TestDialTriesEveryNodeInTurn(t *testing.T) {
	t.Parallel()
	urls := refusedURLs(t, 3)
	d := AMQP(AMQPConfig{URL: strings.Join(urls, ",")})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	firsts := map[string]bool{}
	for range 3 {
		_, err := d.Dial(ctx)
		if err == nil {
			t.Fatal("Dial succeeded with no broker")
		}
		for _, u := range urls {
			if !strings.Contains(err.Error(), Redact(u)) {
				t.Fatalf("the error does not name %s: %v", Redact(u), err)
			}
		}
		if strings.Contains(err.Error(), "hunter2") {
			t.Fatalf("the error shows the password: %v", err)
		}
		firsts[firstDialed(t, err, urls)] = true
	}
	if len(firsts) != 3 {
		t.Fatalf("three dials started with %d different nodes, want 3", len(firsts))
	}
	if s := d.String(); strings.Contains(s, "hunter2") || strings.Count(s, "amqp://") != 3 {
		t.Fatalf("String before any connection = %q, want every node without the password", s)
	}

	starts := map[string]bool{}
	for range 40 {
		_, err := AMQP(AMQPConfig{URL: strings.Join(urls, ",")}).Dial(ctx)
		starts[firstDialed(t, err, urls)] = true
	}
	if len(starts) < 2 {
		t.Fatalf("40 dialers given the same list all started with the same node")
	}
}

// TestEndpointsAfterConnection checks that once a node has been connected
// to, the next dial (after that connection is lost) starts with another.
func TestEndpointsAfterConnection(t *testing.T) {
	t.Parallel()
	e := newEndpoints("amqp://a/,amqp://b/,amqp://c/")
	for range 6 {
		first := e.order()[0]
		e.connected(first)
		if next := e.order(); next[0] == first || next[len(next)-1] != first {
			t.Fatalf("after a connection to %s the next dial tries %v: the lost node must come last", first, next)
		}
		if e.String() != first {
			t.Fatalf("String = %q, want the connected node %q", e.String(), first)
		}
	}
}

// TestTLSServerNamePerNode checks that each amqps node is greeted with its
// own server name.
func TestTLSServerNamePerNode(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testcert.Write(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	names := make(chan string, 4)
	var urls []string
	for _, host := range []string{"node-a.example", "node-b.example"} {
		ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{cert},
			GetConfigForClient: func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
				names <- hello.ServerName
				return nil, nil
			},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				_ = c.(*tls.Conn).Handshake()
				c.Close()
			}
		}()
		urls = append(urls, "amqps://guest:guest@"+ln.Addr().String()+"/?server_name_indication="+host+"&cacertfile="+url.QueryEscape(certFile))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := AMQP(AMQPConfig{URL: strings.Join(urls, ",")}).Dial(ctx); err == nil {
		t.Fatal("Dial succeeded against listeners that are no broker")
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case n := <-names:
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatalf("only %v greeted", got)
		}
	}
	if !got["node-a.example"] || !got["node-b.example"] {
		t.Fatalf("server names sent: %v, want node-a.example and node-b.example", got)
	}
}
