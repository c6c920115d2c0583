package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// ThroughputConfig shapes the single-stream throughput scenario.
type ThroughputConfig struct {
	Common
	// Count is how many messages each phase publishes, flat out.
	Count int
	// Size is the payload's bytes.
	Size int
	// Publishers is how many connections publish at once, so that the
	// broker, not the publisher, is the limit.
	Publishers int
	// Idle ends a phase once nothing arrived for this long.
	Idle time.Duration
	// BufSize is the read buffer of the client stream.
	BufSize int
}

// Throughput measures, in one run, the rate at which a plain amqp091-go
// auto-ack consumer on a queue of its own gets messages published flat
// out, and then the rate at which one eventsproxy stream gets the same,
// and their ratio.
func Throughput(ctx context.Context, t Target, cfg ThroughputConfig) (Run, error) {
	run := Run{LoadAvg: LoadAvg()}
	c, err := newClient(t)
	if err != nil {
		return run, err
	}
	defer c.close()
	pubs := make([]*Publisher, max(cfg.Publishers, 1))
	ex := ""
	for i := range pubs {
		p, err := newPublisher(cfg.AMQPURL, cfg.Size, ex)
		if err != nil {
			return run, err
		}
		defer p.Close()
		pubs[i], ex = p, p.Exchange
	}
	bpid := brokerPID()

	// Phase 1: the plain consumer.
	cfg.progress("plain auto-ack consumer: %d messages of %d B", cfg.Count, cfg.Size)
	plain, err := plainConsume(ctx, cfg, pubs, bpid, &run)
	if err != nil {
		return run, err
	}

	// Phase 2: one eventsproxy stream.
	cfg.progress("one eventsproxy stream: %d messages of %d B", cfg.Count, cfg.Size)
	var tl tally
	p, _, err := openAll(ctx, c, 1, 1, cfg.BufSize, func(int) []Binding {
		return []Binding{{Exchange: ex, RoutingKeyPattern: "#"}}
	}, &tl)
	if err != nil {
		return run, err
	}
	defer p.close()
	if len(p.open()) != 1 {
		return run, fmt.Errorf("stream did not open: %s", tl.firstError())
	}
	st := p.open()[0]
	cfg.startProfile(t, &run)
	u0 := sampleUsage(t.PID, bpid)
	start := time.Now()
	if err := publishFlatOut(ctx, pubs, cfg.Count); err != nil {
		return run, err
	}
	pubTook := time.Since(start)
	u1 := waitIdle(ctx, cfg.Idle, int64(cfg.Count), tl.received.Load, t.PID, bpid)
	cfg.stopProfile(t, &run, 0)
	p.close()
	proxyRate := 0.0
	if st.received > 1 && st.lastRecv > st.firstRecv {
		proxyRate = float64(st.received-1) / (float64(st.lastRecv-st.firstRecv) / 1e9)
	}
	run.add("proxy: publish rate", "/s", float64(cfg.Count)/pubTook.Seconds())
	run.add("proxy: received", "", float64(st.received))
	run.add("proxy: loss", "", float64(int64(cfg.Count)-st.received))
	run.add("proxy: dropped (overflow events)", "", float64(st.dropped))
	run.add("proxy: rate", "/s", proxyRate)
	run.addMs("proxy: latency p50", tl.latency.Quantile(0.50))
	run.addMs("proxy: latency p99", tl.latency.Quantile(0.99))
	server, tool, broker, others := u0.cores(u1)
	if t.PID > 0 {
		run.add("proxy: server CPU", "cores", server)
		if st.received > 0 {
			// From the process's own counts, which a shared machine
			// moves less than rates.
			run.add("proxy: server CPU per delivery", "µs", float64((u1.server-u0.server).Microseconds())/float64(st.received))
		}
	}
	run.add("proxy: tool CPU", "cores", tool)
	run.add("proxy: RabbitMQ CPU", "cores", broker)
	run.add("proxy: other CPU", "cores", others)
	if plain > 0 {
		run.add("proxy rate / plain rate", "%", 100*proxyRate/plain)
	}
	return run, nil
}

// plainConsume runs the plain consumer's phase and returns its rate.
func plainConsume(ctx context.Context, cfg ThroughputConfig, pubs []*Publisher, bpid int, run *Run) (float64, error) {
	conn, err := amqp.DialConfig(cfg.AMQPURL, amqp.Config{
		Properties: amqp.Table{"connection_name": "eventsload plain consumer"},
		Dial:       amqp.DefaultDial(10 * time.Second),
	})
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return 0, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return 0, err
	}
	if err := ch.QueueBind(q.Name, "#", pubs[0].Exchange, false, nil); err != nil {
		return 0, err
	}
	deliveries, err := ch.Consume(q.Name, "", true, true, false, false, nil)
	if err != nil {
		return 0, err
	}
	var (
		lat         Histogram
		n           atomic.Int64
		first, last int64
		wg          sync.WaitGroup
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		for d := range deliveries {
			now := time.Now().UnixNano()
			if n.Load() == 0 {
				first = now
			}
			last = now
			if sent, _ := parseInt(d.Body[min(5, len(d.Body)):]); sent > 0 {
				lat.Record(time.Duration(now - sent))
			}
			n.Add(1)
		}
	}()
	u0 := sampleUsage(0, bpid)
	start := time.Now()
	if err := publishFlatOut(ctx, pubs, cfg.Count); err != nil {
		return 0, err
	}
	pubTook := time.Since(start)
	u1 := waitIdle(ctx, cfg.Idle, int64(cfg.Count), n.Load, 0, bpid)
	_ = ch.Close()
	wg.Wait()
	rate := 0.0
	if got := n.Load(); got > 1 && last > first {
		rate = float64(got-1) / (float64(last-first) / 1e9)
	}
	run.add("plain: publish rate", "/s", float64(cfg.Count)/pubTook.Seconds())
	run.add("plain: received", "", float64(n.Load()))
	run.add("plain: rate", "/s", rate)
	run.addMs("plain: latency p50", lat.Quantile(0.50))
	run.addMs("plain: latency p99", lat.Quantile(0.99))
	_, tool, broker, others := u0.cores(u1)
	run.add("plain: tool CPU", "cores", tool)
	run.add("plain: RabbitMQ CPU", "cores", broker)
	run.add("plain: other CPU", "cores", others)
	return rate, nil
}

// publishFlatOut publishes count messages as fast as the publishers go,
// split between them.
func publishFlatOut(ctx context.Context, pubs []*Publisher, count int) error {
	var wg sync.WaitGroup
	errs := make([]error, len(pubs))
	var seq atomic.Int64
	for i, p := range pubs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				s := seq.Add(1) - 1
				if s >= int64(count) {
					errs[i] = p.Barrier()
					return
				}
				if err := p.Publish(ctx, pulseKey("YTpD5kiRQt2iJbUbA8sUvw"), s); err != nil {
					errs[i] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// waitIdle waits until got() reaches want, or nothing new arrived for
// idle. It returns the CPU usage sampled when the last progress was seen,
// so that the idle wait does not dilute the phase's CPU figures.
func waitIdle(ctx context.Context, idle time.Duration, want int64, got func() int64, serverPID, brokerPID int) usage {
	last, since := got(), time.Now()
	u := sampleUsage(serverPID, brokerPID)
	for ctx.Err() == nil {
		n := got()
		if n != last {
			last, since = n, time.Now()
			u = sampleUsage(serverPID, brokerPID)
		}
		if n >= want || time.Since(since) > idle {
			break
		}
		_ = sleep(ctx, 10*time.Millisecond)
	}
	return u
}
