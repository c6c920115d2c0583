package api

import (
	"runtime"
	"sync/atomic"
	"time"
)

// A stream's write costs about the same whatever it carries: a wake-up of
// its goroutine, a system call, and a wake-up of the client. When many
// streams are busy (the 200 k deliveries/s fan-out: 1,000 streams that
// each get a message every 5 ms), one write per message is most of the
// process's CPU. So a stream whose messages come faster than the pace
// writes at most once per pace, carrying what gathered in between, and the
// pace grows with the number of streams that write: the process then makes
// about its budget of writes a second at most, however many streams are
// busy, for at most maxPace of latency. A stream whose messages are
// further apart than the pace writes each as it comes. The pace follows
// the streams that write, not the writes: a process that cannot keep up
// (its CPU taken by others) writes little, yet needs the pace most.
const (
	// paceWindow is how often the pace is worked out again, from the
	// streams that wrote in the last window.
	paceWindow = 100 * time.Millisecond
	// minPace is the pace of a process with few busy streams: a burst to
	// one stream leaves in writes 1 ms apart.
	minPace = time.Millisecond
	// maxPace bounds the latency that pacing adds.
	maxPace = 25 * time.Millisecond
	// writesPerCore is the budget: the writes a second per core
	// (GOMAXPROCS) that the pace aims to stay under when every stream
	// that writes is busy.
	writesPerCore = 25_000
)

// pacer works out the pace from the streams that write. Its methods are
// safe for concurrent use; a stream calls wrote after each write.
type pacer struct {
	// budget is the writes a second that the process aims at.
	budget int64
	// window is the number of the current window (Unix time divided by
	// paceWindow), writers the streams that wrote in it so far.
	window  atomic.Int64
	writers atomic.Int64
	// pace is the current pace, in nanoseconds.
	pace atomic.Int64
}

func newPacer() *pacer {
	p := &pacer{budget: int64(writesPerCore * runtime.GOMAXPROCS(0))}
	p.pace.Store(int64(minPace))
	return p
}

// current returns the time a busy stream leaves between its writes.
func (p *pacer) current() time.Duration { return time.Duration(p.pace.Load()) }

// wrote counts a stream's write at now; *last is the stream's own record
// of the window it last counted itself in. The first write of a window
// works out the pace from the writers of the window before it (a stream
// that writes in the moment between two windows may be missed: the pace
// is an estimate).
func (p *pacer) wrote(now time.Time, last *int64) {
	w := now.UnixNano() / int64(paceWindow)
	if *last == w {
		return
	}
	*last = w
	if cur := p.window.Load(); cur != w && p.window.CompareAndSwap(cur, w) {
		n := p.writers.Swap(0)
		if w != cur+1 {
			// Nothing was written in the window before this one.
			n = 0
		}
		p.pace.Store(int64(paceFor(n, p.budget)))
	}
	p.writers.Add(1)
}

// paceFor is the pace at which n streams that are all busy make budget
// writes a second, within [minPace, maxPace].
func paceFor(n, budget int64) time.Duration {
	d := time.Duration(n * int64(time.Second) / budget)
	return min(max(d, minPace), maxPace)
}
