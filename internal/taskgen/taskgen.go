package taskgen

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// exchangePrefix starts the name of every exchange of Taskcluster's queue.
const exchangePrefix = "exchange/taskcluster-queue/v1/"

// The exchanges the generator publishes on.
const (
	TaskDefined       = exchangePrefix + "task-defined"
	TaskPending       = exchangePrefix + "task-pending"
	TaskRunning       = exchangePrefix + "task-running"
	ArtifactCreated   = exchangePrefix + "artifact-created"
	TaskCompleted     = exchangePrefix + "task-completed"
	TaskFailed        = exchangePrefix + "task-failed"
	TaskException     = exchangePrefix + "task-exception"
	TaskGroupResolved = exchangePrefix + "task-group-resolved"
)

// Exchanges returns the names of the topic exchanges the generator
// publishes on, in lifecycle order; the caller may modify the slice.
func Exchanges() []string {
	return []string{
		TaskDefined, TaskPending, TaskRunning, ArtifactCreated,
		TaskCompleted, TaskFailed, TaskException, TaskGroupResolved,
	}
}

// Message is one generated message.
type Message struct {
	Exchange   string
	RoutingKey string
	// CC holds the CC routing keys: the task's routes, each prefixed with
	// "route.". Nil when the task has no routes.
	CC []string
	// Body is the JSON payload.
	Body []byte
}

// Run publishes generated messages through publish, about rate a second,
// until ctx is done; then it returns nil. A rate of zero publishes nothing.
// After a stall (a slow publish) it catches up by at most one second's
// worth of messages. When publish fails Run returns that error, wrapped.
// rnd is used by Run's goroutine only, and publish is called from it.
func Run(ctx context.Context, rate float64, rnd *rand.Rand, publish func(exchange, key string, cc []string, body []byte) error) error {
	if rate <= 0 {
		<-ctx.Done()
		return nil
	}
	g := NewGenerator(rnd)
	// Ticks every message at low rates, every 10ms at higher ones, with
	// as many messages as are due at each.
	tick := time.NewTicker(max(time.Duration(float64(time.Second)/rate), 10*time.Millisecond))
	defer tick.Stop()
	burst := max(1, int(rate))
	start := time.Now()
	sent := 0
	for {
		var now time.Time
		select {
		case <-ctx.Done():
			return nil
		case now = <-tick.C:
		}
		due := int(float64(now.Sub(start)) * rate / float64(time.Second))
		sent = max(sent, due-burst)
		for ; sent < due; sent++ {
			m := g.Next(now)
			if err := publish(m.Exchange, m.RoutingKey, m.CC, m.Body); err != nil {
				return fmt.Errorf("publish to %s: %w", m.Exchange, err)
			}
		}
	}
}
