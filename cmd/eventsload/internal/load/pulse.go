package load

import (
	"context"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"eventsproxy/internal/taskgen"
)

// PulseConfig shapes the pulse scenario: Taskcluster task pages.
type PulseConfig struct {
	Common
	// Pages is how many task pages are open at once.
	Pages int
	// Churn is how many pages leave, and as many new ones arrive, per
	// second.
	Churn float64
	// Rate is messages per second, bursts included.
	Rate float64
	// Watched is the share of messages that are for tasks pages watch;
	// the rest are for tasks no page watches.
	Watched float64
	// GroupShare is the share of pages that also bind their task group on
	// task-group-resolved.
	GroupShare float64
	// Burst messages are published at once every BurstEvery, within Rate.
	Burst      int
	BurstEvery time.Duration
	// Duration is how long pages come and go while messages flow.
	Duration time.Duration
	// Parallel is how many pages open at a time during the ramp.
	Parallel int
	// Drain is how long a leaving page waits for the messages it is owed.
	Drain time.Duration
	// BufSize is the read buffer of each client stream.
	BufSize int
}

// pulseTaskExchanges are the exchanges a Taskcluster task page binds,
// each with primary.<taskId>.#.
var pulseTaskExchanges = []string{
	taskgen.TaskDefined, taskgen.TaskPending, taskgen.TaskRunning, taskgen.ArtifactCreated,
	taskgen.TaskCompleted, taskgen.TaskFailed, taskgen.TaskException,
}

// page is one task page: a stream on the seven task bindings of a task of
// its own, and perhaps its task group's.
type page struct {
	task, group string
	hasGroup    bool
	st          *stream
	done        chan struct{} // closed when its reader ends; nil if it never opened
	closing     atomic.Bool
	counted     atomic.Int64 // counted messages received

	mu       sync.Mutex
	live     bool  // ready and not leaving: messages for it are counted
	expected int64 // counted messages published for it
}

// pulseTotals is what the pages that left add up to.
type pulseTotals struct {
	expected, received, dups, lost, endedEarly, failed atomic.Int64
}

// Pulse runs the pulse scenario: cfg.Pages task pages, each on the seven
// task exchanges with primary.<taskId>.# for a task of its own (and a
// share on task-group-resolved with primary.<taskGroupId>.#), open at once;
// cfg.Churn a second leave and are replaced by pages for new tasks, for
// cfg.Duration, while Taskcluster-like messages (package taskgen's
// exchanges, keys, CC routes and bodies, with bursts) flow at cfg.Rate, a
// share cfg.Watched of them for the tasks of the pages. It measures ready,
// delivery latency, loss (every message published for a page between its
// ready and its leaving must reach it, once), the server's CPU and RSS,
// and the server's broker operations and messages received from the broker
// against messages delivered.
func Pulse(ctx context.Context, t Target, cfg PulseConfig) (Run, error) {
	run, c, pub, done, err := begin(t, cfg.AMQPURL, 0)
	if err != nil {
		return run, err
	}
	defer done()
	// The exchanges are the tool's own, named after Taskcluster's, so that
	// runs beside each other on one broker do not mix.
	exchange := func(name string) string { return pub.Exchange + "/" + name }
	for _, name := range taskgen.Exchanges() {
		if err := pub.declare(exchange(name)); err != nil {
			return run, err
		}
	}
	bpid := brokerPID()
	seed := uint64(time.Now().UnixNano())
	rnd := rand.New(rand.NewPCG(seed, seed>>1))
	newPage := func() *page {
		return &page{task: taskgen.SlugID(rnd), group: taskgen.SlugID(rnd), hasGroup: rnd.Float64() < cfg.GroupShare}
	}
	var rndMu sync.Mutex // rnd is shared by the ramp and the churn

	var tl tally
	var tot pulseTotals
	slots := make([]atomic.Pointer[page], cfg.Pages)
	// open opens pg's stream and, once it is ready, counts messages for it.
	open := func(pg *page) (time.Duration, error) {
		var bs []Binding
		for _, ex := range pulseTaskExchanges {
			bs = append(bs, Binding{Exchange: exchange(ex), RoutingKeyPattern: "primary." + pg.task + ".#"})
		}
		if pg.hasGroup {
			bs = append(bs, Binding{Exchange: exchange(taskgen.TaskGroupResolved), RoutingKeyPattern: "primary." + pg.group + ".#"})
		}
		req, err := c.request(bs)
		if err != nil {
			return 0, err
		}
		st := newStream(&tl, cfg.BufSize)
		st.handle = func(ev *event) {
			st.onEvent(ev)
			if ev.kind == kindMessage && ev.seq >= 0 {
				pg.counted.Add(1)
			}
		}
		octx, cancel := context.WithTimeout(ctx, 60*time.Second)
		start := time.Now()
		err = st.open(octx, c, req)
		took := time.Since(start)
		cancel()
		if err != nil {
			tot.failed.Add(1)
			tl.fail(err)
			return took, err
		}
		pg.st, pg.done = st, make(chan struct{})
		pg.mu.Lock()
		pg.live = true
		pg.mu.Unlock()
		go func() {
			defer close(pg.done)
			if err := st.readLoop(); err != nil && !pg.closing.Load() {
				tot.endedEarly.Add(1)
				tl.fail(err)
			}
		}()
		return took, nil
	}
	// leave stops counting for pg, waits up to cfg.Drain for what it is
	// owed, closes it and adds up what it got.
	leave := func(pg *page) {
		if pg == nil {
			return
		}
		pg.mu.Lock()
		pg.live = false
		exp := pg.expected
		pg.mu.Unlock()
		if pg.done == nil {
			return
		}
		waitFor(ctx, cfg.Drain, func() bool { return pg.counted.Load() >= exp })
		pg.closing.Store(true)
		pg.st.body.Close()
		<-pg.done
		got := pg.counted.Load()
		tot.expected.Add(exp)
		tot.received.Add(got)
		tot.dups.Add(pg.st.reorder)
		tot.lost.Add(max(exp-(got-pg.st.reorder), 0))
	}

	// Ramp: every slot gets a page.
	rss0 := rssKB(t.PID)
	cfg.progress("opening %d task pages (%d bindings each, %d with their task group's too), %d at a time",
		cfg.Pages, len(pulseTaskExchanges), int(float64(cfg.Pages)*cfg.GroupShare), cfg.Parallel)
	rampStart := time.Now()
	forEach(ctx, cfg.Pages, cfg.Parallel, func(i int) {
		rndMu.Lock()
		pg := newPage()
		rndMu.Unlock()
		slots[i].Store(pg)
		_, _ = open(pg)
	})
	rampTook := time.Since(rampStart)
	defer func() {
		// Whatever is still open when the run fails.
		for i := range slots {
			if pg := slots[i].Load(); pg != nil && pg.done != nil && !pg.closing.Load() {
				pg.closing.Store(true)
				pg.st.body.Close()
				<-pg.done
			}
		}
	}()
	if err := ctx.Err(); err != nil {
		return run, err
	}
	opened := int64(cfg.Pages) - tot.failed.Load()
	run.add("pages", "", float64(cfg.Pages))
	run.add("bindings per page", "", float64(len(pulseTaskExchanges)))
	run.add("ramp: pages ready", "", float64(opened))
	run.add("ramp: pages/s", "/s", float64(opened)/rampTook.Seconds())
	run.addMs("ramp: ready p99", tl.ready.Quantile(0.99))
	rssRamp := rssKB(t.PID)

	// Churn and traffic.
	cfg.progress("%.0f pages/s leaving and arriving, %.0f msg/s (%.0f %% for watched tasks, bursts of %d every %v) for %v",
		cfg.Churn, cfg.Rate, 100*cfg.Watched, cfg.Burst, cfg.BurstEvery, cfg.Duration)
	m0, _ := scrapeCounters(t)
	cfg.startProfile(t, &run)
	u0 := sampleUsage(t.PID, bpid)
	phaseStart := time.Now()
	pctx, stopPhase := context.WithTimeout(ctx, cfg.Duration)
	defer stopPhase()

	var churnReady Histogram
	var arrivals atomic.Int64
	var churnWG sync.WaitGroup
	churnWG.Add(1)
	go func() {
		defer churnWG.Done()
		if cfg.Churn <= 0 || cfg.Pages == 0 {
			return
		}
		tick := time.NewTicker(time.Duration(float64(time.Second) / cfg.Churn))
		defer tick.Stop()
		for k := 0; ; k++ {
			select {
			case <-pctx.Done():
				return
			case <-tick.C:
			}
			slot := &slots[k%cfg.Pages]
			churnWG.Add(1)
			go func() {
				defer churnWG.Done()
				leave(slot.Load())
				rndMu.Lock()
				pg := newPage()
				rndMu.Unlock()
				slot.Store(pg)
				if took, err := open(pg); err == nil {
					churnReady.Record(took)
					arrivals.Add(1)
				}
			}()
		}
	}()

	published, watchedPub, err := publishPulse(pctx, pub, cfg, rnd, slots, exchange, &rndMu)
	pubEnd := time.Now()
	churnWG.Wait()
	if err == nil {
		err = pub.Barrier()
	}
	if err != nil {
		return run, err
	}
	m1, _ := scrapeCounters(t)
	u1 := sampleUsage(t.PID, bpid)
	phase := pubEnd.Sub(phaseStart).Seconds()
	rssEnd := rssKB(t.PID)
	cfg.stopProfile(t, &run, cfg.Pages)

	// Every page leaves, getting what it is owed first.
	cfg.progress("closing the %d pages", cfg.Pages)
	var lwg sync.WaitGroup
	for i := range slots {
		lwg.Add(1)
		go func() {
			defer lwg.Done()
			leave(slots[i].Load())
		}()
	}
	lwg.Wait()
	for i := range slots {
		slots[i].Store(nil)
	}

	run.add("page arrivals while churning", "", float64(arrivals.Load()))
	run.add("failed to open", "", float64(tot.failed.Load()))
	run.addMs("ready p50", churnReady.Quantile(0.50))
	run.addMs("ready p99", churnReady.Quantile(0.99))
	run.addMs("ready max", churnReady.Max())
	run.add("published", "", float64(published))
	run.add("publish rate", "/s", float64(published)/phase)
	run.add("published for open pages", "", float64(watchedPub))
	run.add("owed to pages (published while ready)", "", float64(tot.expected.Load()))
	run.add("received of those", "", float64(tot.received.Load()))
	run.add("loss", "", float64(tot.lost.Load()))
	run.add("duplicates or out of order", "", float64(tot.dups.Load()))
	run.add("streams ended early", "", float64(tot.endedEarly.Load()))
	run.add("tool: messages received/s", "/s", float64(tl.received.Load())/phase)
	run.addMs("latency p50", tl.latency.Quantile(0.50))
	run.addMs("latency p99", tl.latency.Quantile(0.99))
	run.addMs("latency max", tl.latency.Max())
	run.addUsage(u0, u1, t.PID > 0)
	if rssEnd >= 0 && rss0 >= 0 {
		run.add("server RSS after the ramp", "MiB", rssRamp/1024)
		run.add("server RSS at end", "MiB", rssEnd/1024)
		run.add("server RSS per page", "KiB", (rssEnd-rss0)/float64(cfg.Pages))
	}
	if len(m1) > 0 {
		rate := func(name, label string) float64 { return (m1.sum(name, label) - m0.sum(name, label)) / phase }
		const ops = "eventsproxy_broker_bind_operations_total"
		covered := rate(ops, `op="bind",result="covered"`)
		run.add("server: broker binds/s", "/s", rate(ops, `op="bind"`)-covered)
		run.add("server: broker unbinds/s", "/s", rate(ops, `op="unbind"`))
		run.add("server: broker re-binds/s", "/s", rate(ops, `op="rebind"`))
		run.add("server: binds served by a wider binding/s", "/s", covered)
		run.add("server: bindings held at end", "", m1.sum("eventsproxy_broker_bindings", ""))
		run.add("server: messages from the broker/s", "/s", rate("eventsproxy_messages_received_total", ""))
		run.add("server: messages unrouted/s", "/s", rate("eventsproxy_messages_unrouted_total", ""))
		run.add("server: messages delivered/s", "/s", rate("eventsproxy_messages_delivered_total", ""))
		run.add("server: messages dropped (overflow)", "", m1.sum("eventsproxy_messages_dropped_total", ""))
	}
	if e := tl.firstError(); e != "" {
		run.note("first failure: %s", e)
	}
	return run, nil
}

// publishPulse publishes taskgen's messages at cfg.Rate (bursts included)
// until ctx is done, each either for the task of a random open page
// (share cfg.Watched) or for a task of the generator's own. A message for
// a page that is live is counted: it carries the page's next sequence
// number. It returns how many it published, and how many of those were
// for pages.
func publishPulse(ctx context.Context, pub *Publisher, cfg PulseConfig, rnd *rand.Rand, slots []atomic.Pointer[page],
	exchange func(string) string, rndMu *sync.Mutex) (published, forPages int64, err error) {
	gen := taskgen.NewGenerator(rand.New(rand.NewPCG(rnd.Uint64(), rnd.Uint64())))
	burstRate := 0.0
	if cfg.Burst > 0 && cfg.BurstEvery > 0 {
		burstRate = float64(cfg.Burst) / cfg.BurstEvery.Seconds()
	}
	base := max(cfg.Rate-burstRate, 0)
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	start := time.Now()
	var body []byte
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return published, forPages, nil
		case now = <-tick.C:
		}
		el := now.Sub(start)
		due := int64(el.Seconds() * base)
		if burstRate > 0 {
			// The first burst comes half a period in.
			due += int64(cfg.Burst) * int64((el+cfg.BurstEvery/2)/cfg.BurstEvery)
		}
		for ; published < due && ctx.Err() == nil; published++ {
			m := gen.Next(now)
			words := strings.Split(m.RoutingKey, ".")
			seq := int64(-1)
			rndMu.Lock()
			watched := rnd.Float64() < cfg.Watched
			var pg *page
			if watched && len(slots) > 0 {
				pg = slots[rnd.IntN(len(slots))].Load()
			}
			rndMu.Unlock()
			if pg != nil && (m.Exchange != taskgen.TaskGroupResolved || pg.hasGroup) {
				forPages++
				if m.Exchange == taskgen.TaskGroupResolved {
					words[1] = pg.group
				} else {
					words[1] = pg.task
					if len(words) > 8 {
						words[8] = pg.group
					}
				}
				pg.mu.Lock()
				if pg.live {
					seq = pg.expected
					pg.expected++
				}
				pg.mu.Unlock()
			}
			body = stampBody(body[:0], time.Now().UnixNano(), seq, m.Body)
			// ctx ends the phase, not a publish under way.
			if err := pub.publishTo(context.WithoutCancel(ctx), exchange(m.Exchange), strings.Join(words, "."), m.CC, body); err != nil {
				return published, forPages, err
			}
		}
	}
}

// stampBody appends the JSON object b with the send time and, when seq >=
// 0, the sequence number first: {"t":<sent>,"s":<seq>,...b's fields}.
func stampBody(dst []byte, sent, seq int64, b []byte) []byte {
	dst = append(dst, `{"t":`...)
	dst = strconv.AppendInt(dst, sent, 10)
	if seq >= 0 {
		dst = append(dst, `,"s":`...)
		dst = strconv.AppendInt(dst, seq, 10)
	}
	if len(b) > 2 {
		dst = append(dst, ',')
	}
	return append(dst, b[1:]...)
}
