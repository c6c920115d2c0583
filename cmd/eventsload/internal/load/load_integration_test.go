//go:build integration

package load

import (
	"context"
	"crypto/tls"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/server"
	"eventsproxy/internal/testcert"
)

// protocols are the ways the tool opens streams: its own HTTP/1.1, and
// Go's HTTP/2 client over TLS.
var protocols = []string{"HTTP1", "HTTP2"}

// startServer runs the service in-process on the real RabbitMQ until the
// test ends, as `eventsproxy serve` would with flags; for HTTP/2, over TLS.
func startServer(t *testing.T, proto string, flags ...string) Target {
	t.Helper()
	prefix := rabbittest.Unique("eventsload-test/") + "/"
	args := []string{"--listen", "127.0.0.1:0", "--amqp-url", rabbittest.URL(), "--queue-prefix", prefix, "--max-connections", "0"}
	args = append(args, flags...)
	var tlsConf *tls.Config
	if proto == "HTTP2" {
		certFile, keyFile, pool := testcert.Write(t)
		args = append(args, "--tls-cert", certFile, "--tls-key", keyFile)
		tlsConf = &tls.Config{RootCAs: pool}
	}
	cfg, err := config.Load(config.Serve, args, func(string) string { return "" })
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	d := broker.AMQP(broker.AMQPConfig{URL: cfg.AMQPURL, QueuePrefix: prefix, ConnectionName: "eventsload test " + t.Name()})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	ctx, cancel := context.WithCancel(context.Background())
	urls := make(chan string, 1)
	done := make(chan error, 1)
	go func() { done <- server.Run(ctx, cfg, d, ln, log, func(u string) { urls <- u }) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server: %v", err)
		}
	})
	select {
	case u := <-urls:
		return Target{URL: u, QueuePrefix: prefix, TLS: tlsConf}
	case err := <-done:
		t.Fatalf("server ended before serving: %v", err)
	case <-time.After(15 * time.Second):
		t.Fatal("server not serving within 15s")
	}
	return Target{}
}

func common() Common {
	return Common{AMQPURL: rabbittest.URL(), Mgmt: Management{URL: rabbittest.ManagementURL()}}
}

func metric(t *testing.T, r Run, name string) float64 {
	t.Helper()
	v, ok := r.Get(name)
	if !ok {
		t.Fatalf("run has no %q: %+v", name, r)
	}
	return v
}

// forProtocols runs test once per protocol, each with a server of its own
// and a context that ends after timeout.
func forProtocols(t *testing.T, timeout time.Duration, test func(ctx context.Context, t *testing.T, target Target)) {
	for _, proto := range protocols {
		t.Run(proto, func(t *testing.T) {
			target := startServer(t, proto)
			ctx, cancel := context.WithTimeout(context.Background(), timeout)
			defer cancel()
			test(ctx, t, target)
		})
	}
}

func TestCyclesSmoke(t *testing.T) {
	forProtocols(t, time.Minute, func(ctx context.Context, t *testing.T, target Target) {
		r, err := Cycles(ctx, target, CyclesConfig{Common: common(), Cycles: 50, Parallel: 5, BufSize: 4096})
		if err != nil {
			t.Fatal(err)
		}
		if got, failed := metric(t, r, "cycles"), metric(t, r, "failed"); got != 50 || failed != 0 {
			t.Errorf("%v cycles, %v failed (%v); want 50 and 0", got, failed, r.Notes)
		}
		if metric(t, r, "ready p99") <= 0 {
			t.Error("no ready latency recorded")
		}
	})
}

func TestFanoutSmoke(t *testing.T) {
	forProtocols(t, 2*time.Minute, func(ctx context.Context, t *testing.T, target Target) {
		r, err := Fanout(ctx, target, FanoutConfig{
			Common: common(), Streams: 10, Parallel: 10, Rate: 50, Size: 512,
			// Every message is due: a busy machine may stall deliveries
			// for seconds, and only a failing run waits the whole drain.
			Duration: 2 * time.Second, Drain: 45 * time.Second, Idle: 45 * time.Second, BufSize: 16384,
		})
		if err != nil {
			t.Fatal(err)
		}
		published, received := metric(t, r, "published"), metric(t, r, "received")
		if published != 100 || received != 10*published {
			t.Errorf("published %v, received %v; want 100 and 1000", published, received)
		}
		for _, name := range []string{"loss", "streams with loss", "dropped (overflow events)", "sequence gaps", "out of order"} {
			if v := metric(t, r, name); v != 0 {
				t.Errorf("%s = %v, want 0", name, v)
			}
		}
		if q := metric(t, r, "broker queues of the server"); q != broker.QueuesPerConnection {
			t.Errorf("the server has %v broker queues, want %d", q, broker.QueuesPerConnection)
		}
		// Recorded; how high it is depends on the machine's other work.
		if p99 := metric(t, r, "latency p99"); p99 <= 0 {
			t.Errorf("latency p99 %vms", p99)
		}
	})
}

func TestPulseSmoke(t *testing.T) {
	forProtocols(t, 2*time.Minute, func(ctx context.Context, t *testing.T, target Target) {
		r, err := Pulse(ctx, target, PulseConfig{
			Common: common(), Pages: 30, Churn: 10, Rate: 100, Watched: 0.5, GroupShare: 0.5,
			Burst: 20, BurstEvery: time.Second, Duration: 3 * time.Second, Parallel: 10,
			Drain: 30 * time.Second, BufSize: 4096,
		})
		if err != nil {
			t.Fatal(err)
		}
		if ready, failed := metric(t, r, "ramp: pages ready"), metric(t, r, "failed to open"); ready != 30 || failed != 0 {
			t.Errorf("%v pages ready, %v failed (%v); want 30 and 0", ready, failed, r.Notes)
		}
		owed, got := metric(t, r, "owed to pages (published while ready)"), metric(t, r, "received of those")
		if owed == 0 || got != owed {
			t.Errorf("pages were owed %v messages and got %v", owed, got)
		}
		for _, name := range []string{"loss", "duplicates or out of order", "streams ended early"} {
			if v := metric(t, r, name); v != 0 {
				t.Errorf("%s = %v, want 0", name, v)
			}
		}
		for _, name := range []string{"page arrivals while churning", "ready p99", "latency p99",
			"server: messages from the broker/s", "server: messages delivered/s"} {
			if v := metric(t, r, name); v <= 0 {
				t.Errorf("%s = %v, want more than 0", name, v)
			}
		}
		// Pages' patterns are bound on the broker or, once their exchange
		// is bound wide, served by the wide binding: which, and when,
		// depends on how the pages' arrivals fall.
		if own, wide := metric(t, r, "server: broker binds/s"), metric(t, r, "server: binds served by a wider binding/s"); own+wide <= 0 {
			t.Errorf("broker binds/s %v and binds served by a wider binding/s %v, want some", own, wide)
		}
	})
}

func TestResumeSmoke(t *testing.T) {
	forProtocols(t, 2*time.Minute, func(ctx context.Context, t *testing.T, target Target) {
		r, err := Resume(ctx, target, ResumeConfig{
			Common: common(), Streams: 20, Parallel: 10, Rate: 50, Size: 512,
			Duration: 4 * time.Second, CutEvery: time.Second, Reconnect: 100 * time.Millisecond,
			InQuery: strings.HasSuffix(t.Name(), "HTTP2"), Drain: 30 * time.Second, BufSize: 16384,
		})
		if err != nil {
			t.Fatal(err)
		}
		if ready := metric(t, r, "streams ready"); ready != 20 {
			t.Errorf("%v streams ready, want 20 (%v)", ready, r.Notes)
		}
		for _, name := range []string{"lost", "duplicates", "gap events", "reconnects that failed", "streams ended by the server", "server: resumes with gap"} {
			if v := metric(t, r, name); v != 0 {
				t.Errorf("%s = %v, want 0 (%v)", name, v, r.Notes)
			}
		}
		reconnects := metric(t, r, "reconnects")
		if reconnects == 0 || metric(t, r, "server: resumes ok") != reconnects {
			t.Errorf("%v reconnects, %v resumed by the server", reconnects, metric(t, r, "server: resumes ok"))
		}
		if metric(t, r, "reconnect to first replayed message p99") <= 0 {
			t.Error("no reconnect had a message to replay")
		}
		if n := metric(t, r, "server: lingering streams at the end"); n != 20 {
			t.Errorf("%v streams linger at the end, want 20", n)
		}
	})
}

// A window shorter than the wait before reconnecting loses what was
// published meanwhile, and the scenario sees it: gap events and loss.
func TestResumeSeesGaps(t *testing.T) {
	target := startServer(t, "HTTP1", "--resume-window", "50ms")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := Resume(ctx, target, ResumeConfig{
		Common: common(), Streams: 5, Parallel: 5, Rate: 50, Size: 512,
		Duration: 3 * time.Second, CutEvery: time.Second, Reconnect: 500 * time.Millisecond,
		Drain: 5 * time.Second, BufSize: 16384,
	})
	if err != nil {
		t.Fatal(err)
	}
	reconnects := metric(t, r, "reconnects")
	if reconnects == 0 || metric(t, r, "gap events") != reconnects || metric(t, r, "lost") == 0 {
		t.Errorf("%v reconnects, %v gap events, %v lost; want gaps on every reconnect, and loss",
			reconnects, metric(t, r, "gap events"), metric(t, r, "lost"))
	}
}
