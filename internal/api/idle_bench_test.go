package api_test

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/metrics"
)

// BenchmarkIdleStreams is the load tool's S1 without RabbitMQ: idleStreams
// streams over loopback HTTP/1.1, each bound to a pattern of its own on
// the in-process broker (wide bindings as `serve` has them by default),
// opened one after another and left idle: not resumable, before any ping
// and once each has written one (pinged), and resumable (resume=1). One op
// opens them all (ns/stream is the time to ready of one), measures them
// and closes them. Per stream, once a collection has run, it reports what
// the held streams cost the process: heap-B/stream (live heap bytes;
// goroutine descriptors, about 480 B each, are not in it: the runtime
// keeps them once made, so they are made before the baseline),
// objects/stream, stack-B/stream (goroutine stacks), goroutines/stream
// and rss-B/stream.
//
// The clients are raw sockets read with system calls, so that the figures
// are the server's alone. Two descriptors per stream: the process needs an
// open-file limit above 2 × idleStreams.
func BenchmarkIdleStreams(b *testing.B) {
	for _, tc := range []struct{ resume, pinged bool }{{false, false}, {false, true}, {true, false}} {
		b.Run(fmt.Sprintf("resume=%v/pinged=%v", tc.resume, tc.pinged), func(b *testing.B) {
			benchIdle(b, tc.resume, tc.pinged)
		})
	}
}

// idleStreams is how many streams BenchmarkIdleStreams holds at once.
const idleStreams = 5000

func benchIdle(b *testing.B, resume, pinged bool) {
	mb := membroker.New()
	mb.DeclareExchange("ex")
	m := metrics.New(prometheus.NewRegistry())
	br := brokertest.Start(b, mb, broker.Config{
		Wide:    broker.WidePolicy{Keys: broker.DefaultWideKeys, MaxUnwanted: broker.DefaultWideMaxUnwanted},
		Metrics: m,
	})
	ping := time.Hour
	if pinged {
		ping = 5 * time.Second
	}
	h := api.NewHandler(api.Config{Metrics: m, PingInterval: ping}, api.FromBroker(br), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	b.Cleanup(func() { closeServer(b, h, srv) })
	addr := srv.Listener.Addr().(*net.TCPAddr)

	fds := make([]int, 0, idleStreams)
	closeAll := func() {
		for _, fd := range fds {
			_ = syscall.Close(fd)
		}
		fds = fds[:0]
	}
	defer closeAll()
	makeGoroutines(2*idleStreams + 1000)
	var heap, objects, stack, goroutines, rss int64
	b.ResetTimer()
	for op := range b.N {
		b.StopTimer()
		g0, ms0, rss0 := settled()
		b.StartTimer()
		for i := range idleStreams {
			u := connectURL("", fmt.Sprintf(`{"bindings":[{"exchange":"ex","routingKeyPattern":"primary.s%d-%06d.#"}]}`, op, i))
			if resume {
				u += "&resume=1"
			}
			fd, err := openIdle(addr, "GET "+u+" HTTP/1.1\r\nHost: proxy\r\n\r\n")
			if fd >= 0 {
				fds = append(fds, fd)
			}
			if err != nil {
				b.Fatalf("stream %d: %v", i, err)
			}
		}
		b.StopTimer()
		if pinged {
			for i, fd := range fds {
				if err := readTo(fd, "event: ping\n"); err != nil {
					b.Fatalf("stream %d: %v", i, err)
				}
			}
		}
		g1, ms1, rss1 := settled()
		heap += int64(ms1.HeapAlloc) - int64(ms0.HeapAlloc)
		objects += int64(ms1.HeapObjects) - int64(ms0.HeapObjects)
		stack += int64(ms1.StackInuse) - int64(ms0.StackInuse)
		goroutines += int64(g1 - g0)
		rss += rss1 - rss0
		// The next op starts once the streams' goroutines have ended
		// (but for idle runners, which end on their own); resumable
		// streams linger, so each op's have patterns of their own.
		closeAll()
		for deadline := time.Now().Add(time.Minute); runtime.NumGoroutine() > g0+100; {
			if time.Now().After(deadline) {
				b.Fatalf("%d goroutines a minute after the streams closed, %d before", runtime.NumGoroutine(), g0)
			}
			time.Sleep(10 * time.Millisecond)
		}
		b.StartTimer()
	}
	n := float64(b.N * idleStreams)
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/n, "ns/stream")
	b.ReportMetric(float64(heap)/n, "heap-B/stream")
	b.ReportMetric(float64(objects)/n, "objects/stream")
	b.ReportMetric(float64(stack)/n, "stack-B/stream")
	b.ReportMetric(float64(goroutines)/n, "goroutines/stream")
	b.ReportMetric(float64(rss)/n, "rss-B/stream")
}

// makeGoroutines starts n goroutines and waits until they have ended, so
// that the runtime has their descriptors for the goroutines to come.
func makeGoroutines(n int) {
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range n {
		wg.Go(func() { <-release })
	}
	close(release)
	wg.Wait()
}

// openIdle opens a stream on a blocking socket of its own and reads until
// its `ready` event; it returns the socket, which the caller closes.
func openIdle(addr *net.TCPAddr, req string) (int, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	tv := syscall.Timeval{Sec: 60}
	if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
		return fd, err
	}
	sa := &syscall.SockaddrInet4{Port: addr.Port}
	copy(sa.Addr[:], addr.IP.To4())
	err = syscall.Connect(fd, sa)
	for err == syscall.EINTR {
		// The connection goes on being made; wait until it is.
		_, err = syscall.Write(fd, nil)
		if err == syscall.ENOTCONN {
			err = syscall.EINTR
		}
	}
	if err != nil {
		return fd, err
	}
	for b := []byte(req); len(b) > 0; {
		n, err := syscall.Write(fd, b)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fd, err
		}
		b = b[n:]
	}
	return fd, readTo(fd, "event: ready\n")
}

// readTo reads fd until what it read holds want.
func readTo(fd int, want string) error {
	var got []byte
	buf := make([]byte, 4096)
	for !bytes.Contains(got, []byte(want)) {
		n, err := syscall.Read(fd, buf)
		if err == syscall.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("reading to %q: %w (got %q)", want, err, got)
		}
		if n == 0 {
			return fmt.Errorf("closed before %q: %q", want, got)
		}
		got = append(got, buf[:n]...)
	}
	return nil
}

// settled waits until the process's goroutines stop coming and going (the
// streams' handlers end once they handed their connections over), runs
// the collector and returns the goroutines, the memory statistics and the
// resident set in bytes.
func settled() (goroutines int, ms runtime.MemStats, rss int64) {
	last, same := runtime.NumGoroutine(), 0
	for deadline := time.Now().Add(10 * time.Second); same < 20 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
		if g := runtime.NumGoroutine(); g == last {
			same++
		} else {
			last, same = g, 0
		}
	}
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&ms)
	return runtime.NumGoroutine(), ms, vmRSS()
}

// vmRSS is this process's resident set in bytes, from /proc (0 where it
// cannot be read).
func vmRSS() int64 {
	b, _ := os.ReadFile("/proc/self/status")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb << 10
		}
	}
	return 0
}
