package api

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
)

// benchStream runs fn inside a real connect-like handler on a loopback
// HTTP/1.1 server whose client reads and discards everything, so that fn
// pays for what a stream pays for: the hijacked connection, chunk framing,
// write deadlines and the system calls. The timer runs only around fn.
func benchStream(b *testing.B, fn func(st *stream)) {
	b.Helper()
	h := NewHandler(Config{Metrics: metrics.New(prometheus.NewRegistry())}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	start := make(chan struct{})
	done := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		conn, _, err := http.NewResponseController(w).Hijack()
		if err != nil {
			b.Error(err)
			return
		}
		defer conn.Close()
		out := &http1Writer{
			conn: conn, chunked: true,
			stopClose: func() bool { return true }, cancel: func() {}, done: func() {},
			deadline: deadline{timeout: h.cfg.WriteTimeout, set: conn.SetWriteDeadline},
		}
		st := &stream{h: h, out: out, start: time.Now()}
		if err := out.writeHeader(http.Header{"Content-Type": {"text/event-stream"}}); err != nil {
			b.Error(err)
			return
		}
		<-start
		b.ResetTimer()
		fn(st)
		b.StopTimer()
	}))
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	read := make(chan error, 1)
	go func() {
		_, err := io.Copy(io.Discard, resp.Body)
		read <- err
	}()
	b.ReportAllocs()
	close(start)
	<-done
	resp.Body.Close()
	<-read
}

// benchMessage is a message whose event data is about 700 bytes (a 512-byte
// payload, as the load tool sends), encoded already, as it is once the first
// stream has sent it.
func benchMessage() *broker.Message {
	m := &broker.Message{
		Exchange:   "exchange/taskcluster-queue/v1/task-completed",
		RoutingKey: "primary.YTpD5kiRQt2iJbUbA8sUvw.0.us-east-1.i-0c4d1e2f3a4b5c6d7.aws-provisioner-v1.gecko-t-linux-large.gecko-level-3.VrvpkJeBQ9mfez0-ezFBPw._",
		CC:         []string{"route.index.gecko.v2.mozilla-central.latest.firefox.linux64-opt"},
		Body:       []byte(`{"t":1767225600000000000,"s":12345,"p":"` + strings.Repeat("x", 512-42) + `"}`),
		Received:   time.Now(),
	}
	messageEvent(m)
	return m
}

// BenchmarkSendMessages is the stream's write path for one message
// (sendMessages: encode the event, frame the chunk, write),
// with the messages a wake-up takes written one at a time (batch=1) or ten
// per flush (batch=10). ns/op is per message.
func BenchmarkSendMessages(b *testing.B) {
	for _, batch := range []int{1, 10} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			msgs := make([]*broker.Message, batch)
			for i := range msgs {
				msgs[i] = benchMessage()
			}
			b.SetBytes(int64(len(msgs[0].Data())))
			var cpu time.Duration
			benchStream(b, func(st *stream) {
				cpu0, _ := selfUsage()
				for i := 0; i < b.N; i += batch {
					if _, err := st.sendMessages(msgs[:min(batch, b.N-i)], 0, false); err != nil {
						b.Error(err)
						return
					}
				}
				cpu1, _ := selfUsage()
				cpu = cpu1 - cpu0
			})
			// Both ends: the client's reads follow the writes.
			b.ReportMetric(float64(cpu)/float64(b.N), "cpu-ns/op")
		})
	}
}

// BenchmarkWriteDeadline is what setting the write deadline before each
// write costs by itself.
func BenchmarkWriteDeadline(b *testing.B) {
	benchStream(b, func(st *stream) {
		for range b.N {
			_ = st.out.(*http1Writer).conn.SetWriteDeadline(time.Now().Add(30 * time.Second))
		}
	})
}

// selfUsage returns the CPU time this process has used and its write
// system calls (from /proc/self/io; 0 where it cannot be read).
func selfUsage() (cpu time.Duration, writes int64) {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	cpu = time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	b, _ := os.ReadFile("/proc/self/io")
	for line := range strings.Lines(string(b)) {
		if v, ok := strings.CutPrefix(line, "syscw:"); ok {
			writes, _ = strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		}
	}
	return cpu, writes
}
