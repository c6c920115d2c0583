package load

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"time"
)

// FanoutConfig shapes the S2 scenario (and S2b, and the soak).
type FanoutConfig struct {
	Common
	// Streams is how many streams share the one binding.
	Streams int
	// Parallel is how many streams are opening at a time.
	Parallel int
	// Pattern is the binding's routing-key pattern; default "primary.#".
	Pattern string
	// Rate is messages per second; Size their payload's bytes.
	Rate float64
	Size int
	// Duration is how long to publish.
	Duration time.Duration
	// Drain is how long to wait after the last publish for every delivery.
	Drain time.Duration
	// Idle ends the wait sooner, once nothing arrived for this long (lost
	// messages never come); default a second.
	Idle time.Duration
	// RSSEvery samples the server's RSS this often while publishing, for
	// the soak; 0 samples only at the end.
	RSSEvery time.Duration
	// BufSize is the read buffer of each client stream.
	BufSize int
}

// Fanout runs S2: cfg.Streams streams on one binding, cfg.Rate messages per
// second of cfg.Size bytes for cfg.Duration, and measures deliveries per
// second, loss per stream and in total, and latency from publish to event
// parsed.
func Fanout(ctx context.Context, t Target, cfg FanoutConfig) (Run, error) {
	if cfg.Pattern == "" {
		cfg.Pattern = "primary.#"
	}
	run, c, pub, done, err := begin(t, cfg.AMQPURL, cfg.Size)
	if err != nil {
		return run, err
	}
	defer done()
	bpid := brokerPID()
	bs := []Binding{{Exchange: pub.Exchange, RoutingKeyPattern: cfg.Pattern}}

	rss0 := rssKB(t.PID)
	var tl tally
	cfg.progress("opening %d streams on %s", cfg.Streams, cfg.Pattern)
	p, took, err := openAll(ctx, c, cfg.Streams, cfg.Parallel, cfg.BufSize, func(int) []Binding { return bs }, &tl)
	if err != nil {
		if p != nil {
			p.close()
		}
		return run, err
	}
	defer p.close()
	open := p.open()
	run.add("streams ready", "", float64(len(open)))
	run.add("connects/s (ramp)", "/s", float64(len(open))/took.Seconds())
	run.addMs("ready p99", tl.ready.Quantile(0.99))
	if tl.failed.Load() > 0 {
		run.add("failed to open", "", float64(tl.failed.Load()))
		run.note("first failure: %s", tl.firstError())
	}

	// RSS samples while publishing, for the soak.
	var samples []float64
	sctx, stopSampling := context.WithCancel(ctx)
	var swg sync.WaitGroup
	if cfg.RSSEvery > 0 && t.PID > 0 {
		swg.Add(1)
		go func() {
			defer swg.Done()
			tick := time.NewTicker(cfg.RSSEvery)
			defer tick.Stop()
			for {
				select {
				case <-sctx.Done():
					return
				case <-tick.C:
					samples = append(samples, rssKB(t.PID))
				}
			}
		}()
	}

	cfg.progress("publishing %.0f msg/s of %d B for %v", cfg.Rate, cfg.Size, cfg.Duration)
	cfg.startProfile(t, &run)
	u0 := sampleUsage(t.PID, bpid)
	pubStart := time.Now().UnixNano()
	published, err := pub.Paced(ctx, cfg.Rate, cfg.Duration, func(int64) string { return pulseKey("YTpD5kiRQt2iJbUbA8sUvw") })
	pubEnd := time.Now()
	if err != nil {
		stopSampling()
		swg.Wait()
		return run, err
	}
	expected := published * int64(len(open))
	// Wait for every delivery, but not past cfg.Drain, nor longer than
	// cfg.Idle without progress. CPU is counted up to the last progress.
	idle := cfg.Idle
	if idle <= 0 {
		idle = time.Second
	}
	dctx, cancel := context.WithTimeout(ctx, cfg.Drain)
	u1 := waitIdle(dctx, idle, expected, tl.received.Load, t.PID, bpid)
	cancel()
	drained := time.Since(pubEnd)
	stopSampling()
	swg.Wait()
	rssEnd := rssKB(t.PID)
	cfg.stopProfile(t, &run, len(open))
	lostWhileRunning := p.errs.Load()
	p.close()

	var received, dropped, gaps, reorder, lossy, maxLoss, lastRecv int64
	for _, st := range open {
		received += st.received
		dropped += st.dropped
		gaps += st.gaps
		reorder += st.reorder
		if loss := published - st.received; loss > 0 {
			lossy++
			maxLoss = max(maxLoss, loss)
		}
		lastRecv = max(lastRecv, st.lastRecv)
	}
	run.add("published", "", float64(published))
	run.add("publish rate", "/s", float64(published)/pubEnd.Sub(time.Unix(0, pubStart)).Seconds())
	run.add("expected deliveries", "", float64(expected))
	run.add("received", "", float64(received))
	run.add("loss", "", float64(expected-received))
	run.add("streams with loss", "", float64(lossy))
	run.add("max loss of one stream", "", float64(maxLoss))
	run.add("dropped (overflow events)", "", float64(dropped))
	run.add("sequence gaps", "", float64(gaps))
	run.add("out of order", "", float64(reorder))
	run.add("streams ended early", "", float64(lostWhileRunning))
	if lastRecv > pubStart {
		run.add("deliveries/s", "/s", float64(received)/(float64(lastRecv-pubStart)/1e9))
	}
	run.add("drain after last publish", "s", drained.Seconds())
	run.addMs("latency p50", tl.latency.Quantile(0.50))
	run.addMs("latency p99", tl.latency.Quantile(0.99))
	run.addMs("latency max", tl.latency.Max())
	run.addUsage(u0, u1, t.PID > 0)
	if t.PID > 0 && received > 0 {
		// Per delivery, from the process's own counts: on a shared
		// machine these move less than rates do.
		run.add("server CPU per delivery", "µs", float64((u1.server-u0.server).Microseconds())/float64(received))
		if u0.serverWrites >= 0 && u1.serverWrites >= 0 {
			run.add("server writes per delivery", "", float64(u1.serverWrites-u0.serverWrites)/float64(received))
		}
	}
	if rssEnd >= 0 && len(open) > 0 {
		run.add("server RSS at end", "MiB", rssEnd/1024)
		run.add("server RSS per stream", "KiB", (rssEnd-rss0)/float64(len(open)))
	}
	if len(samples) > 0 {
		// Warm-up is the first tenth of the run.
		warm := samples[len(samples)/10]
		peak := warm
		for _, s := range samples[len(samples)/10:] {
			peak = max(peak, s)
		}
		run.add("server RSS after warm-up", "MiB", warm/1024)
		run.add("server RSS peak after warm-up", "MiB", peak/1024)
		run.add("server RSS growth after warm-up", "MiB", (samples[len(samples)-1]-warm)/1024)
		series := make([]string, len(samples))
		for i, s := range samples {
			series[i] = strconv.FormatFloat(s/1024, 'f', 1, 64)
		}
		run.note("server RSS every %v, MiB: %s", cfg.RSSEvery, strings.Join(series, " "))
	}
	if n := cfg.Mgmt.Queues(t.QueuePrefix); n >= 0 {
		run.add("broker queues of the server", "", float64(n))
	}
	// The server's own view: from taking a message off the broker to
	// having written it (per write, oldest message of the write).
	if bs, err := scrapeHistogram(t, "eventsproxy_delivery_latency_seconds"); err == nil && len(bs) > 0 {
		run.addMs("server: receive to written p50", histogramQuantile(0.50, bs))
		run.addMs("server: receive to written p99", histogramQuantile(0.99, bs))
	}
	if e := tl.firstError(); e != "" && tl.failed.Load() == 0 {
		run.note("stream error: %s", e)
	}
	return run, nil
}
