package load

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"
)

// BindRateConfig shapes the broker's bind+unbind ceiling measurement.
type BindRateConfig struct {
	Common
	// Pairs is how many bind+unbind pairs to make in all.
	Pairs int
	// Channels is how many channels make them at once, on one connection.
	Channels int
}

// BindRate measures how many bind+unbind pairs per second the broker takes
// for one queue, without eventsproxy: the ceiling of any design that asks
// the broker for a binding per stream.
func BindRate(ctx context.Context, cfg BindRateConfig) (Run, error) {
	run := Run{LoadAvg: LoadAvg()}
	pub, err := NewPublisher(cfg.AMQPURL, 512)
	if err != nil {
		return run, err
	}
	defer pub.Close()
	conn, err := amqp.DialConfig(cfg.AMQPURL, amqp.Config{
		Properties: amqp.Table{"connection_name": "eventsload bindrate"},
		Dial:       amqp.DefaultDial(10 * time.Second),
	})
	if err != nil {
		return run, err
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return run, err
	}
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		return run, err
	}
	channels := max(cfg.Channels, 1)
	var next, done atomic.Int64
	var wg sync.WaitGroup
	errs := make([]error, channels)
	cfg.progress("%d bind+unbind pairs on %d channels", cfg.Pairs, channels)
	start := time.Now()
	for c := range channels {
		cch, err := conn.Channel()
		if err != nil {
			return run, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				i := next.Add(1) - 1
				if i >= int64(cfg.Pairs) {
					return
				}
				key := fmt.Sprintf("primary.b%d.#", i)
				if err := cch.QueueBind(q.Name, key, pub.Exchange, false, nil); err != nil {
					errs[c] = err
					return
				}
				if err := cch.QueueUnbind(q.Name, key, pub.Exchange, nil); err != nil {
					errs[c] = err
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	for _, err := range errs {
		if err != nil {
			return run, err
		}
	}
	run.add("pairs", "", float64(done.Load()))
	run.add("bind+unbind pairs/s", "/s", float64(done.Load())/took.Seconds())
	return run, nil
}
