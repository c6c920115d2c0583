package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"eventsproxy/internal/randomname"
)

// CyclesConfig shapes the S3 scenario.
type CyclesConfig struct {
	Common
	// Cycles is how many connect→ready→close cycles to run in all.
	Cycles int
	// Parallel is how many cycles run at a time.
	Parallel int
	// Shared makes every cycle bind the same pattern (primary.#); else
	// each binds one of its own, which the broker must bind and unbind.
	Shared bool
	// Cover, when set, is the pattern of one stream that stays open
	// during the cycles, so that a server that serves covered patterns
	// from a wider binding (primary.# covers primary.<id>.#) needs no
	// broker binding per cycle.
	Cover string
	// BufSize is the read buffer of each client stream.
	BufSize int
}

// Cycles runs S3: cfg.Cycles times, open a stream, wait for `ready`, close
// it, with cfg.Parallel at a time. It measures cycles per second and time
// to ready, and how long the server's broker bindings take to go after
// the last close.
func Cycles(ctx context.Context, t Target, cfg CyclesConfig) (Run, error) {
	run, c, pub, done, err := begin(t, cfg.AMQPURL, 512)
	if err != nil {
		return run, err
	}
	defer done()
	bpid := brokerPID()
	runID := randomname.New("")
	reqs := make([]request, cfg.Cycles)
	for i := range reqs {
		pattern := "primary.#"
		if !cfg.Shared {
			pattern = fmt.Sprintf("primary.c%s%06d.#", runID, i)
		}
		reqs[i], err = c.request([]Binding{{Exchange: pub.Exchange, RoutingKeyPattern: pattern}})
		if err != nil {
			return run, err
		}
	}

	var tl tally
	if cfg.Cover != "" {
		var ctl tally
		cover, _, err := openAll(ctx, c, 1, 1, cfg.BufSize, func(int) []Binding {
			return []Binding{{Exchange: pub.Exchange, RoutingKeyPattern: cfg.Cover}}
		}, &ctl)
		if err != nil {
			return run, err
		}
		defer cover.close()
		if len(cover.open()) != 1 {
			return run, fmt.Errorf("covering stream did not open: %s", ctl.firstError())
		}
	}
	var next, ok atomic.Int64
	var wg sync.WaitGroup
	cfg.progress("%d cycles, %d at a time", cfg.Cycles, cfg.Parallel)
	cfg.startProfile(t, &run)
	m0, _ := scrapeCounters(t)
	u0 := sampleUsage(t.PID, bpid)
	start := time.Now()
	for range max(cfg.Parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			st := newStream(&tl, cfg.BufSize)
			for {
				i := int(next.Add(1) - 1)
				if i >= cfg.Cycles || ctx.Err() != nil {
					return
				}
				err := st.openBy(ctx, c, reqs[i], time.Now().Add(30*time.Second))
				if err != nil {
					tl.fail(err)
					continue
				}
				st.body.Close()
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	u1 := sampleUsage(t.PID, bpid)
	m1, _ := scrapeCounters(t)
	cfg.stopProfile(t, &run, 0)
	if err := ctx.Err(); err != nil {
		return run, err
	}
	run.add("cycles", "", float64(ok.Load()))
	run.add("failed", "", float64(tl.failed.Load()))
	run.add("cycles/s", "/s", float64(ok.Load())/took.Seconds())
	run.addMs("ready p50", tl.ready.Quantile(0.50))
	run.addMs("ready p99", tl.ready.Quantile(0.99))
	run.addMs("ready max", tl.ready.Max())
	run.addUsage(u0, u1, t.PID > 0)
	// CPU time per cycle: what a shared machine disturbs less than the
	// rate, and what the rate on two free cores follows from.
	if n := ok.Load(); n > 0 {
		perCycle := func(d time.Duration) float64 { return float64(d.Microseconds()) / float64(n) }
		if t.PID > 0 {
			run.add("server CPU per cycle", "µs", perCycle(u1.server-u0.server))
			if u0.serverWrites >= 0 && u1.serverWrites >= 0 {
				run.add("server writes per cycle", "", float64(u1.serverWrites-u0.serverWrites)/float64(n))
			}
		}
		run.add("tool CPU per cycle", "µs", perCycle(u1.tool-u0.tool))
		if bpid > 0 {
			run.add("RabbitMQ CPU per cycle", "µs", perCycle(u1.broker-u0.broker))
		}
	}
	run.addBrokerCost(m0, m1, took)
	if e := tl.firstError(); e != "" {
		run.note("first failure: %s", e)
	}
	// The unbinds of closed streams run after their close: how many are
	// left, and how long until the broker has none.
	want := 0 // bindings once every cycle's are gone
	if cfg.Cover != "" {
		want = 1
	}
	if n := cfg.Mgmt.Bindings(pub.Exchange); n >= 0 {
		run.add("bindings left at the end", "", float64(n-want))
		end := time.Now()
		if waitFor(ctx, 60*time.Second, func() bool { return cfg.Mgmt.Bindings(pub.Exchange) <= want }) {
			run.add("bindings gone after", "s", time.Since(end).Seconds())
		} else {
			run.note("bindings still on the broker 60s after the last close")
		}
	}
	return run, nil
}
