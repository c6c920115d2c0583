package load

import (
	"context"
	"io"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"
)

// ResumeConfig shapes the resume scenario.
type ResumeConfig struct {
	Common
	// Streams is how many resumable streams share the one binding.
	Streams int
	// Parallel is how many streams are opening at a time.
	Parallel int
	// Rate is messages per second; Size their payload's bytes.
	Rate float64
	Size int
	// Duration is how long messages flow and connections are cut.
	Duration time.Duration
	// CutEvery is how long a connection lives, on average: each is cut
	// after between half and one and a half times it, at random.
	CutEvery time.Duration
	// Reconnect is how long a stream waits after a cut before it
	// reconnects, as EventSource waits the `retry` the server sent.
	Reconnect time.Duration
	// InQuery sends the last event id as the lastEventId query parameter
	// instead of the Last-Event-ID header.
	InQuery bool
	// Drain is how long to wait after the last publish for every stream to
	// have every message.
	Drain time.Duration
	// BufSize is the read buffer of each client stream.
	BufSize int
}

// resumer is one resumable stream and what it counted. Its fields belong
// to its goroutine, but for lastSeq and those under mu.
type resumer struct {
	st      *stream
	mu      sync.Mutex
	body    io.Closer // the connection open now, for the end to close
	ending  bool      // the end has closed body: no reconnecting
	lastID  []byte    // the id of the last event processed
	lastSeq atomic.Int64
	// reconnected is set from a reconnect's request until its first new
	// message: whether that message was replayed.
	reconnected                   bool
	dups, lost, gaps, dropped     int64
	reconnects, failed, nothingUp int64
	endedEarly                    int64
}

// resumeTally is what the resumers record together.
type resumeTally struct {
	reconnReady Histogram // reconnect request to `ready`
	replay      Histogram // reconnect request to the first replayed message
}

// Resume runs the resume scenario: cfg.Streams streams opt in to resume
// on one binding and get a numbered flow of cfg.Rate messages a second for
// cfg.Duration; each stream's connection is cut (the tool closes it, with
// whatever the server had written that it had not read) every
// cfg.CutEvery or so, and reconnects after cfg.Reconnect with the id of the
// last event it processed, as EventSource does. Every stream must end with
// every message, once, in order, and no `gap`. It measures lost and
// duplicated messages, `gap` events, the time from a reconnect's request
// to its first replayed message, and the server's RSS with the streams
// open and lingering once they all left.
func Resume(ctx context.Context, t Target, cfg ResumeConfig) (Run, error) {
	run, c, pub, done, err := begin(t, cfg.AMQPURL, cfg.Size)
	if err != nil {
		return run, err
	}
	defer done()
	bs := []Binding{{Exchange: pub.Exchange, RoutingKeyPattern: "primary.#"}}
	bpid := brokerPID()
	var tl tally
	var rt resumeTally

	rss0 := rssKB(t.PID)
	cfg.progress("opening %d resumable streams", cfg.Streams)
	rs := make([]*resumer, cfg.Streams)
	start := time.Now()
	forEach(ctx, cfg.Streams, cfg.Parallel, func(i int) {
		r := &resumer{st: newStream(&tl, cfg.BufSize)}
		r.lastSeq.Store(-1)
		r.st.handle = func(ev *event) { r.onEvent(ev, &rt) }
		req, err := c.resumeRequest(bs, true, "", false)
		if err == nil {
			octx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = r.st.open(octx, c, req)
			cancel()
		}
		if err != nil {
			tl.fail(err)
			return
		}
		r.body = r.st.body
		rs[i] = r
	})
	took := time.Since(start)
	var open []*resumer
	for _, r := range rs {
		if r != nil {
			open = append(open, r)
		}
	}
	var wg sync.WaitGroup
	closeAll := func() {
		for _, r := range open {
			r.mu.Lock()
			r.ending = true
			r.body.Close()
			r.mu.Unlock()
		}
		wg.Wait()
	}
	defer closeAll()
	if err := ctx.Err(); err != nil {
		return run, err
	}
	run.add("streams ready", "", float64(len(open)))
	run.add("connects/s (ramp)", "/s", float64(len(open))/took.Seconds())
	run.add("failed to open", "", float64(tl.failed.Load()))
	rssOpen := rssKB(t.PID)

	cfg.progress("%.0f msg/s for %v, every connection cut every %v or so, reconnecting after %v", cfg.Rate, cfg.Duration, cfg.CutEvery, cfg.Reconnect)
	cutEnd := time.Now().Add(cfg.Duration)
	for _, r := range open {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.loop(ctx, c, bs, cfg, cutEnd)
		}()
	}
	m0, _ := scrapeCounters(t)
	cfg.startProfile(t, &run)
	u0 := sampleUsage(t.PID, bpid)
	published, err := pub.Paced(ctx, cfg.Rate, cfg.Duration, func(int64) string { return pulseKey("YTpD5kiRQt2iJbUbA8sUvw") })
	if err != nil {
		return run, err
	}
	u1 := sampleUsage(t.PID, bpid)
	rssCut := rssKB(t.PID)
	cfg.stopProfile(t, &run, len(open))
	// Every stream gets to the last message, or the drain ends.
	waitFor(ctx, cfg.Drain, func() bool {
		for _, r := range open {
			if r.lastSeq.Load() < published-1 {
				return false
			}
		}
		return true
	})
	m1, _ := scrapeCounters(t)

	// All leave: their subscriptions linger for the resume window.
	closeAll()
	_ = sleep(ctx, 2*time.Second)
	rssLinger := rssKB(t.PID)
	m2, _ := scrapeCounters(t)

	var lost, late, dropped, dups, gaps, reconnects, failed, nothing, ended int64
	for _, r := range open {
		lost += r.lost
		late += max(published-1-r.lastSeq.Load(), 0)
		dropped += r.dropped
		dups += r.dups
		gaps += r.gaps
		reconnects += r.reconnects
		failed += r.failed
		nothing += r.nothingUp
		ended += r.endedEarly
	}
	for _, m := range []struct {
		name string
		v    int64
	}{
		{"published", published}, {"expected deliveries", published * int64(len(open))},
		{"lost", lost + late}, {"lost: skipped in the sequence", lost}, {"lost: announced by overflow events", dropped},
		{"lost: not there by the end of the drain", late}, {"duplicates", dups}, {"gap events", gaps},
		{"reconnects", reconnects}, {"reconnects that failed", failed},
		{"streams ended by the server", ended}, {"reconnects with nothing to replay", nothing},
	} {
		run.add(m.name, "", float64(m.v))
	}
	run.addMs("reconnect to ready p50", rt.reconnReady.Quantile(0.50))
	run.addMs("reconnect to ready p99", rt.reconnReady.Quantile(0.99))
	run.addMs("reconnect to first replayed message p50", rt.replay.Quantile(0.50))
	run.addMs("reconnect to first replayed message p99", rt.replay.Quantile(0.99))
	run.addMs("reconnect to first replayed message max", rt.replay.Max())
	run.addMs("live latency p50", tl.latency.Quantile(0.50))
	run.addMs("live latency p99", tl.latency.Quantile(0.99))
	run.addUsage(u0, u1, t.PID > 0)
	if rss0 >= 0 && len(open) > 0 {
		run.add("server RSS before", "MiB", rss0/1024)
		run.add("server RSS with the streams", "MiB", rssOpen/1024)
		run.add("server RSS at the end of the cuts", "MiB", rssCut/1024)
		run.add("server RSS with the streams lingering", "MiB", rssLinger/1024)
		run.add("server RSS per lingering stream", "KiB", (rssLinger-rss0)/float64(len(open)))
	}
	if len(m1) > 0 {
		run.add("server: resumes ok", "", m1.sum("eventsproxy_resumes_total", `result="ok"`)-m0.sum("eventsproxy_resumes_total", `result="ok"`))
		run.add("server: resumes with gap", "", m1.sum("eventsproxy_resumes_total", `result="gap"`)-m0.sum("eventsproxy_resumes_total", `result="gap"`))
		run.add("server: messages dropped (overflow)", "", m1.sum("eventsproxy_messages_dropped_total", "")-m0.sum("eventsproxy_messages_dropped_total", ""))
		run.add("server: lingering streams at the end", "", m2.sum("eventsproxy_resume_lingering_streams", ""))
		run.add("server: bytes pinned by lingering streams", "KiB", m2.sum("eventsproxy_resume_pinned_bytes", "")/1024)
	}
	if e := tl.firstError(); e != "" {
		run.note("first failure: %s", e)
	}
	return run, nil
}

// onEvent counts one event of r's stream.
func (r *resumer) onEvent(ev *event, rt *resumeTally) {
	st := r.st
	if len(ev.id) > 0 {
		r.lastID = append(r.lastID[:0], ev.id...)
	}
	switch ev.kind {
	case kindReady:
		st.ready = true
		if r.reconnects == 0 {
			st.tally.ready.Record(time.Duration(st.now - st.start.UnixNano()))
		} else {
			rt.reconnReady.Record(time.Duration(st.now - st.start.UnixNano()))
		}
	case kindMessage:
		st.tally.received.Add(1)
		if ev.sent > st.start.UnixNano() {
			st.tally.latency.Record(time.Duration(st.now - ev.sent))
		}
		last := r.lastSeq.Load()
		if ev.seq <= last {
			r.dups++
			return
		}
		r.lost += ev.seq - last - 1
		r.lastSeq.Store(ev.seq)
		if r.reconnected {
			r.reconnected = false
			if ev.sent < st.start.UnixNano() {
				rt.replay.Record(time.Duration(st.now - st.start.UnixNano()))
			} else {
				r.nothingUp++
			}
		}
	case kindGap:
		r.gaps++
	case kindOverflow:
		r.dropped += ev.dropped
	case kindError:
		st.errText = string(ev.data)
	}
}

// isEnding reports whether the end has come for r.
func (r *resumer) isEnding() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.ending
}

// loop reads r's stream, cutting its connection at random times until
// cutEnd and reconnecting after each cut, until the end closes it.
func (r *resumer) loop(ctx context.Context, c *client, bs []Binding, cfg ResumeConfig, cutEnd time.Time) {
	for {
		life := time.Duration((0.5 + rand.Float64()) * float64(cfg.CutEvery))
		var cut *time.Timer
		if time.Now().Add(life).Before(cutEnd) {
			body := r.st.body
			cut = time.AfterFunc(life, func() { body.Close() })
		}
		err := r.st.readLoop()
		if cut != nil {
			cut.Stop()
		}
		if r.isEnding() || ctx.Err() != nil {
			return
		}
		if err != nil {
			// The server ended it; EventSource would reconnect too.
			r.endedEarly++
			r.st.tally.fail(err)
		}
		for {
			if sleep(ctx, cfg.Reconnect) != nil || r.isEnding() {
				return
			}
			req, err := c.resumeRequest(bs, true, string(r.lastID), cfg.InQuery)
			if err != nil {
				r.st.tally.fail(err)
				return
			}
			r.reconnects++
			r.reconnected = true
			octx, cancel := context.WithTimeout(ctx, 60*time.Second)
			err = r.st.open(octx, c, req)
			cancel()
			if err != nil {
				r.failed++
				r.st.tally.fail(err)
				continue
			}
			r.mu.Lock()
			r.body = r.st.body
			if r.ending {
				r.body.Close()
			}
			r.mu.Unlock()
			break
		}
	}
}
