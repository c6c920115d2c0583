//go:build integration

package broker_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/topic"
)

// BenchmarkPatternCost measures what one binding costs RabbitMQ per
// message, by pattern. Each pattern's normal form (what the service binds)
// binds a queue of its own, alone on an exchange of its own, and
// Taskcluster-shaped messages are published to each exchange in turn, a
// batch at a time with a window of them unconfirmed: RabbitMQ routes each
// message in the publishing channel's process before it confirms, so a
// pattern that costs the matcher more takes longer per batch. The broker
// and the machine are shared, so the batches of the patterns interleave
// (each round starts with another pattern) and each pattern's figure is
// the median of its batches; b.N is the number of rounds. It reports, per
// case (one pattern, or many on one queue), µs per message and the ratio
// to "#":
//
//	go test -tags integration -run '^$' -bench PatternCost -benchtime 60x ./internal/broker/
func BenchmarkPatternCost(b *testing.B) {
	conn := rabbittest.Dial(b, "eventsproxy bench "+b.Name())
	ch := rabbittest.Channel(b, conn)
	// A task-pending key: the worker fields are still "_", the word that
	// repeats most in Taskcluster's keys. The CC route has 13 words.
	key := "primary.fEp3Sx0gQp2mY4cYtWk3Qg.0._._.proj-releng.b-linux.gecko-level-3.Aa1Bb2Cc3Dd4Ee5Ff6Gg7H._"
	route := "route.index.gecko.v2.mozilla-central.revision.0123456789abcdef0123456789abcdef01234567.firefox.linux64-opt.build.public.logs.live"
	body := []byte(`{"status":{"taskId":"fEp3Sx0gQp2mY4cYtWk3Qg","provisionerId":"proj-releng","workerType":"b-linux","state":"pending","runs":[{"runId":0,"state":"pending","reasonCreated":"scheduled"}]},"runId":0,"version":1,"pad":"` + strings.Repeat("x", 700) + `"}`)

	// One stream may hold --max-bindings patterns: one #.w.# for each word
	// of the key and the route is what adds up most.
	var everyWord []string
	for _, w := range strings.Split(key+"."+route, ".") {
		if p := "#." + w + ".#"; !slices.Contains(everyWord, p) {
			everyWord = append(everyWord, p)
		}
	}
	patterns := []struct {
		name   string
		bind   []string
		routes bool // whether the message reaches the queue
	}{
		{"hash", []string{"#"}, true},
		// The worst a pattern with the default two # words can do to
		// this message: a literal that occurs three times between them.
		{"two-hashes-repeated-word", []string{"#._.#"}, true},
		{"two-hashes-first-word", []string{"#.primary.#"}, true},
		{"two-hashes-every-word", everyWord, true},
		// 253 bytes that cost RabbitMQ about 70 ms a message as given;
		// its normal form has one #, and needs 64 words.
		{"attack-normalized", []string{strings.Repeat("#.*.", 63) + "b"}, false},
		// Refused by default: three # words.
		{"three-hashes-refused", []string{"#._.#._.#"}, true},
	}
	exchanges := make([]string, len(patterns))
	for i, p := range patterns {
		ex := rabbittest.Exchange(b, ch, "eventsproxy-bench/x/")
		args := amqp.Table{"x-max-length": 100}
		q, err := ch.QueueDeclare("", false, true, true, false, args)
		if err != nil {
			b.Fatal(err)
		}
		for _, pattern := range p.bind {
			if err := ch.QueueBind(q.Name, topic.Normalize(pattern), ex, false, nil); err != nil {
				b.Fatal(err)
			}
		}
		// Patterns that route the message pay for the same enqueue.
		rabbittest.Publish(b, ch, ex, key, []string{route}, body)
		want := 0
		if p.routes {
			want = 1
		}
		if got, err := ch.QueueDeclarePassive(q.Name, false, true, true, false, args); err != nil || got.Messages != want {
			b.Fatalf("%q routes %d messages to its queue, want %d (%v)", p.bind, got.Messages, want, err)
		}
		exchanges[i] = ex
	}

	msg := amqp.Publishing{Body: body, ContentType: "application/json", Headers: amqp.Table{"CC": []any{route}}}
	ctx := context.Background()
	const batch, window = 200, 50
	pending := make([]*amqp.DeferredConfirmation, 0, window)
	wait := func() {
		for _, c := range pending {
			if ok, err := c.WaitContext(ctx); !ok || err != nil {
				b.Fatalf("not confirmed: %v", err)
			}
		}
		pending = pending[:0]
	}
	perMessage := make([][]float64, len(patterns)) // µs, per batch
	b.ResetTimer()
	for round := range b.N {
		for j := range patterns {
			i := (round + j) % len(patterns)
			start := time.Now()
			for range batch {
				c, err := ch.PublishWithDeferredConfirmWithContext(ctx, exchanges[i], key, false, false, msg)
				if err != nil {
					b.Fatal(err)
				}
				if pending = append(pending, c); len(pending) == window {
					wait()
				}
			}
			wait()
			perMessage[i] = append(perMessage[i], float64(time.Since(start).Microseconds())/batch)
		}
	}
	b.StopTimer()
	base := median(perMessage[0])
	for i, p := range patterns {
		m := median(perMessage[i])
		b.ReportMetric(m, p.name+"-µs/msg")
		b.ReportMetric(m/base, p.name+"-vs-hash")
	}
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	return s[len(s)/2]
}
