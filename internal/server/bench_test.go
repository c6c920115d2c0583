package server_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"eventsproxy/internal/config"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/server"
)

// BenchmarkConnectCycle is S3 without RabbitMQ: the service as `serve`
// wires it, on an in-process broker, and one cycle at a time a new TCP
// connection opens a stream, reads until `ready` and closes. own gives each
// cycle a pattern of its own (the wide-binding policy soon serves them all
// from one binding); shared gives every cycle the same one. allocs/op and
// cpu-ns/op count both ends (the client is a raw socket, which costs
// little besides its system calls).
func BenchmarkConnectCycle(b *testing.B) {
	for _, mode := range []string{"own", "shared"} {
		b.Run(mode, func(b *testing.B) {
			mb := membroker.New()
			mb.DeclareExchange("x")
			cfg, err := config.Load(config.Dev, []string{"--listen", "127.0.0.1:0", "--max-connections", "0", "--log-format", "text"}, func(string) string { return "" })
			if err != nil {
				b.Fatal(err)
			}
			ln, err := net.Listen("tcp", cfg.Listen)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			ready := make(chan string, 1)
			done := make(chan error, 1)
			go func() {
				done <- server.Run(ctx, cfg, mb, ln, server.NewLogger(cfg, io.Discard), func(u string) { ready <- u })
			}()
			defer func() {
				cancel()
				if err := <-done; err != nil {
					b.Errorf("server.Run: %v", err)
				}
			}()
			var base string
			select {
			case base = <-ready:
			case err := <-done:
				b.Fatalf("server.Run ended: %v", err)
			}
			u, _ := url.Parse(base)
			request := func(i int) []byte {
				pattern := "primary.shared.#"
				if mode == "own" {
					pattern = fmt.Sprintf("primary.c%08d.#", i)
				}
				q := fmt.Sprintf(`{"bindings":[{"exchange":"x","routingKeyPattern":%q}]}`, pattern)
				return []byte("GET /api/events/v1/connect/?bindings=" + url.QueryEscape(q) + " HTTP/1.1\r\nHost: " + u.Host +
					"\r\nAccept: text/event-stream\r\nUser-Agent: bench\r\n\r\n")
			}
			reqs := make([][]byte, b.N+100)
			for i := range reqs {
				reqs[i] = request(i)
			}
			buf := make([]byte, 4096)
			cycle := func(req []byte) {
				c, err := net.Dial("tcp", u.Host)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				if _, err := c.Write(req); err != nil {
					b.Fatal(err)
				}
				n := 0
				for !bytes.Contains(buf[:n], []byte("event: ready\n")) {
					m, err := c.Read(buf[n:])
					if err != nil {
						b.Fatalf("before ready: %v (read %q)", err, buf[:n])
					}
					n += m
				}
				if !strings.HasPrefix(string(buf[:n]), "HTTP/1.1 200 ") {
					b.Fatalf("answer %q", buf[:n])
				}
				c.Close()
			}
			// Past the widening, into the steady state.
			for i := range 100 {
				cycle(reqs[b.N+i])
			}
			b.ReportAllocs()
			cpu0 := cpuTime()
			b.ResetTimer()
			for i := range b.N {
				cycle(reqs[i])
			}
			b.StopTimer()
			b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime returns the CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
