package load

import (
	"context"
	"fmt"
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// Common is what every scenario needs besides its target.
type Common struct {
	// AMQPURL is the broker the server uses; the tool publishes there.
	AMQPURL string
	// Mgmt counts queues and bindings; its zero value counts nothing.
	Mgmt Management
	// Progress receives a line per phase; nil for none.
	Progress io.Writer
	// ProfileName names the profiles of this run, when the target has a
	// Profiler.
	ProfileName string
}

func (c *Common) progress(format string, args ...any) {
	if c.Progress != nil {
		fmt.Fprintf(c.Progress, "  "+format+"\n", args...)
	}
}

// begin starts a run of a scenario: its Run, the client for t and a
// publisher of payloads of size bytes on an exchange of its own; done
// closes both.
func begin(t Target, amqpURL string, size int) (run Run, c *client, pub *Publisher, done func(), err error) {
	run = Run{LoadAvg: LoadAvg()}
	if c, err = newClient(t); err != nil {
		return run, nil, nil, nil, err
	}
	if pub, err = NewPublisher(amqpURL, size); err != nil {
		c.close()
		return run, nil, nil, nil, err
	}
	return run, c, pub, func() { pub.Close(); c.close() }, nil
}

// forEach calls fn(i) for every i below n, from workers goroutines, and
// returns once all calls have returned; once ctx is done it starts no more.
func forEach(ctx context.Context, n, workers int, fn func(i int)) {
	var next atomic.Int64
	var wg sync.WaitGroup
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				fn(i)
			}
		}()
	}
	wg.Wait()
}

// startProfile starts the target's profile, if any.
func (c *Common) startProfile(t Target, run *Run) {
	if t.Profiler == nil {
		return
	}
	if err := t.Profiler.StartProfile(); err != nil {
		run.note("start profile: %v", err)
	}
}

// stopProfile stops the target's profile, if any, and writes it. With
// streams > 0 it adds the server's goroutines and memory per stream.
func (c *Common) stopProfile(t Target, run *Run, streams int) {
	if t.Profiler == nil {
		return
	}
	stats, err := t.Profiler.StopProfile(c.ProfileName)
	if err != nil {
		run.note("stop profile: %v", err)
		return
	}
	run.add("server goroutines", "", stats["goroutines"])
	run.add("server heap in use", "MiB", stats["heap_inuse"]/(1<<20))
	run.add("server stacks in use", "MiB", stats["stack_inuse"]/(1<<20))
	if streams > 0 {
		run.add("server goroutines per stream", "", stats["goroutines"]/float64(streams))
		run.add("server heap in use per stream", "KiB", stats["heap_inuse"]/1024/float64(streams))
		run.add("server stacks per stream", "KiB", stats["stack_inuse"]/1024/float64(streams))
	}
}

// rssKB returns the RSS of pid in KiB, or -1 when pid is 0 or unreadable.
func rssKB(pid int) float64 {
	if pid <= 0 {
		return -1
	}
	b, err := RSS(pid)
	if err != nil {
		return -1
	}
	return float64(b) / 1024
}

// selfMemKB returns the tool's live heap and goroutine stacks in KiB, after
// a collection: what its streams cost it, without the garbage that RSS
// would count.
func selfMemKB() float64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return float64(ms.HeapAlloc+ms.StackInuse) / 1024
}

// sleep waits d or until ctx is done.
func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// waitFor polls cond every 10ms until it holds, ctx is done or timeout
// passes; it reports whether cond held. A load tool may poll: it watches
// counters that thousands of goroutines bump.
func waitFor(ctx context.Context, timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) || sleep(ctx, 10*time.Millisecond) != nil {
			return cond()
		}
	}
	return true
}

// brokerPID returns RabbitMQ's pid when it runs on this machine, else 0.
func brokerPID() int { return findProcess("beam.smp") }
