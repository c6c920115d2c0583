package api_test

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
)

// BenchmarkFanoutStreams is the fan-out of the load tool's fanout scenario
// without RabbitMQ: streams on one binding over loopback HTTP/1.1, fed by
// the in-process broker at a steady rate (one op is one message, to every
// stream). It reports, per delivery, the process's CPU time (the streams'
// and the clients' reads, which follow the writes) and its write system
// calls; ns/op is the publishing interval.
func BenchmarkFanoutStreams(b *testing.B) {
	for _, tc := range []struct{ streams, rate int }{{1000, 200}, {1000, 20}} {
		b.Run(fmt.Sprintf("streams=%d/rate=%d", tc.streams, tc.rate), func(b *testing.B) {
			benchFanout(b, tc.streams, tc.rate)
		})
	}
}

func benchFanout(b *testing.B, streams, rate int) {
	mb := membroker.New()
	mb.DeclareExchange("ex")
	br := brokertest.Start(b, mb, broker.Config{})
	h := api.NewHandler(api.Config{}, api.FromBroker(br), slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	b.Cleanup(func() { closeServer(b, h, srv) })

	var delivered atomic.Int64
	ready := make(chan struct{}, streams)
	var wg sync.WaitGroup
	b.Cleanup(wg.Wait)
	req := "GET " + connectURL("", `{"bindings":[{"exchange":"ex","routingKeyPattern":"primary.#"}]}`) + " HTTP/1.1\r\nHost: proxy\r\n\r\n"
	for range streams {
		conn, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		if _, err := io.WriteString(conn, req); err != nil {
			b.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			countEvents(conn, ready, &delivered)
		}()
	}
	for range streams {
		select {
		case <-ready:
		case <-time.After(time.Minute):
			b.Fatal("streams not ready after a minute")
		}
	}
	body := []byte(`{"p":"` + strings.Repeat("x", 500) + `"}`)
	key := "primary.YTpD5kiRQt2iJbUbA8sUvw.0.us-east-1.i-0c4d1e2f3a4b5c6d7.aws-provisioner-v1.gecko-t-linux-large.gecko-level-3.VrvpkJeBQ9mfez0-ezFBPw._"
	cc := []string{"route.index.gecko.v2.mozilla-central.latest.firefox.linux64-opt"}

	cpu0, writes0 := api.SelfUsage()
	tick := time.NewTicker(time.Second / time.Duration(rate))
	defer tick.Stop()
	b.ResetTimer()
	for range b.N {
		<-tick.C
		if err := mb.Publish("ex", key, cc, body); err != nil {
			b.Fatal(err)
		}
	}
	want := int64(b.N) * int64(streams)
	deadline := time.Now().Add(time.Minute)
	for delivered.Load() < want {
		if time.Now().After(deadline) {
			b.Fatalf("%d of %d deliveries after a minute", delivered.Load(), want)
		}
		time.Sleep(time.Millisecond)
	}
	b.StopTimer()
	cpu1, writes1 := api.SelfUsage()
	b.ReportMetric(float64(cpu1-cpu0)/float64(want), "cpu-ns/delivery")
	b.ReportMetric(float64(writes1-writes0)/float64(want), "writes/delivery")
}

// countEvents reads a stream, signals ready once it has its `ready`
// event, and counts its messages into delivered.
func countEvents(conn net.Conn, ready chan<- struct{}, delivered *atomic.Int64) {
	r := bufio.NewReaderSize(conn, 16<<10)
	readyLine, messageLine := []byte("event: ready\n"), []byte("event: message\n")
	for {
		line, err := r.ReadSlice('\n')
		if err != nil {
			return
		}
		switch {
		case bytes.Equal(line, messageLine):
			delivered.Add(1)
		case bytes.Equal(line, readyLine):
			ready <- struct{}{}
		}
	}
}
