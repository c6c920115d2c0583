package load

import (
	"context"
	"fmt"
	"time"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/randomname"
)

// IdleConfig shapes the S1 scenario.
type IdleConfig struct {
	Common
	// Streams is how many streams to open, each with a binding of its own.
	Streams int
	// Parallel is how many streams are opening at any time during the ramp.
	Parallel int
	// Hold is how long the streams stay open, idle, once all are ready.
	Hold time.Duration
	// Verify is how many streams, spread over all, get one message each
	// at the end, to check that each gets its own message and no other.
	Verify int
	// BufSize is the read buffer of each client stream.
	BufSize int
}

// Idle runs S1: it opens cfg.Streams streams, each bound to a pattern of its
// own (primary.<id>.#), cfg.Parallel at a time, holds them, checks delivery
// on a sample, and measures the ramp, the server's RSS per stream and the
// number of broker queues and bindings.
func Idle(ctx context.Context, t Target, cfg IdleConfig) (Run, error) {
	run, c, pub, done, err := begin(t, cfg.AMQPURL, 512)
	if err != nil {
		return run, err
	}
	defer done()
	bpid := brokerPID()
	runID := randomname.New("")
	id := func(i int) string { return fmt.Sprintf("s%s%06d", runID, i) }
	bindings := func(i int) []Binding {
		return []Binding{{Exchange: pub.Exchange, RoutingKeyPattern: "primary." + id(i) + ".#"}}
	}

	rss0 := rssKB(t.PID)
	tool0 := selfMemKB()
	var tl tally
	cfg.progress("opening %d streams, %d at a time", cfg.Streams, cfg.Parallel)
	cfg.startProfile(t, &run)
	u0 := sampleUsage(t.PID, bpid)
	p, took, err := openAll(ctx, c, cfg.Streams, cfg.Parallel, cfg.BufSize, bindings, &tl)
	if err != nil {
		if p != nil {
			p.close()
		}
		return run, err
	}
	defer p.close()
	u1 := sampleUsage(t.PID, bpid)
	open := p.open()
	run.add("streams asked", "", float64(cfg.Streams))
	run.add("streams ready", "", float64(len(open)))
	run.add("failed", "", float64(tl.failed.Load()))
	run.add("connects/s (ramp)", "/s", float64(len(open))/took.Seconds())
	run.addMs("ready p50", tl.ready.Quantile(0.50))
	run.addMs("ready p99", tl.ready.Quantile(0.99))
	run.addMs("ready max", tl.ready.Max())
	if e := tl.firstError(); e != "" {
		run.note("first failure: %s", e)
	}
	run.addUsage(u0, u1, t.PID > 0)

	// Memory once the ramp's garbage had a chance to be collected.
	_ = sleep(ctx, 2*time.Second)
	cfg.stopProfile(t, &run, len(open))
	if rss := rssKB(t.PID); rss >= 0 && len(open) > 0 {
		run.add("server RSS before", "MiB", rss0/1024)
		run.add("server RSS with streams", "MiB", rss/1024)
		run.add("server RSS per stream", "KiB", (rss-rss0)/float64(len(open)))
	}
	if len(open) > 0 {
		run.add("tool memory per stream (heap+stack)", "KiB", (selfMemKB()-tool0)/float64(len(open)))
	}
	if n := cfg.Mgmt.Queues(t.QueuePrefix); n >= 0 {
		run.add("broker queues of the server", "", float64(n))
	}
	if n := cfg.Mgmt.Bindings(pub.Exchange); n >= 0 {
		run.add("broker bindings", "", float64(n))
	}

	cfg.progress("holding %d streams for %v", len(open), cfg.Hold)
	u2 := sampleUsage(t.PID, bpid)
	if err := sleep(ctx, cfg.Hold); err != nil {
		return run, err
	}
	u3 := sampleUsage(t.PID, bpid)
	if t.PID > 0 {
		s, _, _, _ := u2.cores(u3)
		run.add("server CPU while idle", "cores", s)
	}
	// Idle goroutine stacks shrink only at a collection, which an idle
	// process runs at least every 2 minutes: a long hold shows the RSS
	// that idle streams settle at.
	if rss := rssKB(t.PID); rss >= 0 && len(open) > 0 {
		run.add("server RSS per stream at end of hold", "KiB", (rss-rss0)/float64(len(open)))
	}
	if p.errs.Load() > 0 {
		run.note("%d streams ended while held", p.errs.Load())
	}
	run.add("streams lost while held", "", float64(p.errs.Load()))

	// Each sampled stream gets one message on its own routing key.
	verify := min(cfg.Verify, len(open))
	if verify > 0 {
		cfg.progress("publishing one message to each of %d streams", verify)
		chosen := make(map[*stream]bool, verify)
		for j := range verify {
			idx := j * cfg.Streams / verify
			for p.streams[idx] == nil && idx+1 < len(p.streams) {
				idx++
			}
			st := p.streams[idx]
			if st == nil || chosen[st] {
				continue
			}
			chosen[st] = true
			if err := pub.Publish(ctx, pulseKey(id(idx)), 0); err != nil {
				return run, err
			}
		}
		if err := pub.Barrier(); err != nil {
			return run, err
		}
		waitFor(ctx, 30*time.Second, func() bool { return tl.received.Load() >= int64(len(chosen)) })
		_ = sleep(ctx, 200*time.Millisecond) // a message too many would show now
		p.close()
		var got, unexpected int64
		for _, st := range open {
			if chosen[st] {
				got += min(st.received, 1)
				unexpected += max(st.received-1, 0)
			} else {
				unexpected += st.received
			}
		}
		run.add("verify: messages sent", "", float64(len(chosen)))
		run.add("verify: loss", "", float64(int64(len(chosen))-got))
		run.add("verify: misrouted", "", float64(unexpected))
		run.addMs("verify: latency p50", tl.latency.Quantile(0.50))
		run.addMs("verify: latency p99", tl.latency.Quantile(0.99))
	}
	if n := cfg.Mgmt.Queues(t.QueuePrefix); n >= 0 && n != broker.QueuesPerConnection {
		run.note("the server has %d broker queues", n)
	}
	return run, nil
}
