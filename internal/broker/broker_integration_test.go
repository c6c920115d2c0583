//go:build integration

package broker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/rabbittest"
)

// randomPattern returns a pattern of 0 to 4 words from a small alphabet with
// wildcards, so that patterns and keys collide often.
func randomPattern(r *rand.Rand) string {
	words := []string{"a", "b", "c", "", "*", "#", "*", "#"}
	n := r.IntN(5)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[r.IntN(len(words))]
	}
	return strings.Join(ws, ".")
}

func randomKey(r *rand.Rand) string {
	words := []string{"a", "b", "c", ""}
	n := r.IntN(5)
	ws := make([]string, n)
	for i := range ws {
		ws[i] = words[r.IntN(len(words))]
	}
	return strings.Join(ws, ".")
}

// TestRoutingAgreesWithRabbitMQ checks that every subscription receives
// exactly what a plain queue bound with the same patterns receives from
// RabbitMQ, in the same order, across exchanges and CC keys.
func TestRoutingAgreesWithRabbitMQ(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	r := rand.New(rand.NewPCG(seed, 42))

	b := startBroker(t, Config{ClientBuffer: 100000})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	exchanges := []string{
		rabbittest.Exchange(t, ch, "eventsproxy-test/x1/"),
		rabbittest.Exchange(t, ch, "eventsproxy-test/x2/"),
		rabbittest.Exchange(t, ch, "eventsproxy-test/x3/"),
	}
	end := rabbittest.Exchange(t, ch, "eventsproxy-test/end/")

	const clients = 16
	type client struct {
		bindings []binding.Binding
		queue    string
		sub      *Subscription
	}
	cs := make([]*client, clients)
	for i := range cs {
		c := &client{}
		q, err := ch.QueueDeclare("", false, true, true, false, nil)
		if err != nil {
			t.Fatal(err)
		}
		c.queue = q.Name
		seen := map[binding.Binding]bool{}
		for range 1 + r.IntN(4) {
			bd := binding.Binding{Exchange: exchanges[r.IntN(len(exchanges))], RoutingKeyPattern: randomPattern(r)}
			if seen[bd] {
				continue
			}
			seen[bd] = true
			c.bindings = append(c.bindings, bd)
		}
		c.bindings = append(c.bindings, binding.Binding{Exchange: end, RoutingKeyPattern: "end"})
		for _, bd := range c.bindings {
			if err := ch.QueueBind(q.Name, bd.RoutingKeyPattern, bd.Exchange, false, nil); err != nil {
				t.Fatal(err)
			}
		}
		c.sub = subscribe(t, b, c.bindings...)
		cs[i] = c
	}

	const messages = 400
	for n := range messages {
		var cc []string
		for range r.IntN(3) {
			cc = append(cc, randomKey(r))
		}
		ex := exchanges[r.IntN(len(exchanges))]
		rabbittest.Publish(t, ch, ex, randomKey(r), cc, mustJSON(t, testBody{N: n}))
	}
	rabbittest.Publish(t, ch, end, "end", nil, mustJSON(t, testBody{End: true}))

	for i, c := range cs {
		want := consumeUntilEnd(t, conn, c.queue)
		got, dropped := takeUntilEnd(t, c.sub, 10*time.Second)
		if dropped != 0 {
			t.Errorf("client %d dropped %d", i, dropped)
		}
		if !slices.Equal(got, want) {
			t.Errorf("client %d with bindings %q:\n got %v\nwant %v", i, c.bindings, got, want)
		}
	}
}

// consumeUntilEnd reads a plain queue until the end message.
func consumeUntilEnd(t *testing.T, conn *amqp.Connection, queue string) []int {
	t.Helper()
	ch, err := conn.Channel()
	if err != nil {
		t.Fatal(err)
	}
	defer ch.Close()
	deliveries, err := ch.Consume(queue, "", true, true, false, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	var ns []int
	timeout := time.After(10 * time.Second)
	for {
		select {
		case d := <-deliveries:
			var body testBody
			if err := json.Unmarshal(d.Body, &body); err != nil {
				t.Fatal(err)
			}
			if body.End {
				return ns
			}
			ns = append(ns, body.N)
		case <-timeout:
			t.Fatalf("reference queue %s: no end message within 10s", queue)
		}
	}
}

// TestBindingsFollowSubscriptions checks that a broker binding exists while
// some subscription needs it and goes with its last user.
func TestBindingsFollowSubscriptions(t *testing.T) {
	b := startBroker(t, Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	queue := b.QueueName()

	bindingKeys := func() []string {
		var keys []string
		for _, bd := range rabbittest.QueueBindings(t, queue) {
			if bd.Source != ex {
				t.Errorf("unexpected binding %v", bd)
			}
			keys = append(keys, bd.RoutingKey)
		}
		sort.Strings(keys)
		return keys
	}

	ctx := context.Background()
	a, err := b.Subscribe(ctx, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "a.#"}, {Exchange: ex, RoutingKeyPattern: "shared"}})
	if err != nil {
		t.Fatal(err)
	}
	c, err := b.Subscribe(ctx, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "shared"}, {Exchange: ex, RoutingKeyPattern: "*.c"}})
	if err != nil {
		t.Fatal(err)
	}
	if got, want := bindingKeys(), []string{"*.c", "a.#", "shared"}; !slices.Equal(got, want) {
		t.Fatalf("bindings with two subscriptions: got %q, want %q", got, want)
	}
	a.Close()
	a.Close() // idempotent
	syncBroker(t, b)
	if got, want := bindingKeys(), []string{"*.c", "shared"}; !slices.Equal(got, want) {
		t.Fatalf("bindings after the first closed: got %q, want %q", got, want)
	}
	// The shared binding still serves the other subscription.
	rabbittest.Publish(t, ch, ex, "shared", nil, mustJSON(t, testBody{N: 1}))
	rabbittest.Publish(t, ch, ex, "x", nil, mustJSON(t, testBody{End: true}))
	// "x" matches nothing of c's; publish the end where c listens.
	rabbittest.Publish(t, ch, ex, "end.c", nil, mustJSON(t, testBody{End: true}))
	got, _ := takeUntilEnd(t, c, 10*time.Second)
	if !slices.Equal(got, []int{1}) {
		t.Fatalf("second subscription got %v, want [1]", got)
	}
	c.Close()
	syncBroker(t, b)
	if got := bindingKeys(); len(got) != 0 {
		t.Fatalf("bindings after all closed: %q", got)
	}
	if qs := rabbittest.Queues(t, queue); len(qs) != 1 || !qs[0].Exclusive {
		t.Fatalf("want our one exclusive queue, got %+v", qs)
	}
}

// TestMissingExchange checks that a refused bind fails only the subscription
// that asked, and that everything else goes on.
func TestMissingExchange(t *testing.T) {
	b := startBroker(t, Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	missing := rabbittest.Unique("eventsproxy-test/missing/")

	ok := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "#"})
	for i := range 3 {
		_, err := b.Subscribe(context.Background(), []binding.Binding{
			{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("only.mine.%d", i)},
			{Exchange: missing, RoutingKeyPattern: "#"},
		})
		var berr *BindError
		if !errors.As(err, &berr) || !errors.Is(err, ErrExchangeNotFound) || berr.Binding.Exchange != missing {
			t.Fatalf("subscribe with a missing exchange: got %v, want BindError for %q with ErrExchangeNotFound", err, missing)
		}
		rabbittest.Publish(t, ch, ex, "k", nil, mustJSON(t, testBody{N: i}))
	}
	rabbittest.Publish(t, ch, ex, "k", nil, mustJSON(t, testBody{End: true}))
	got, dropped := takeUntilEnd(t, ok, 10*time.Second)
	if !slices.Equal(got, []int{0, 1, 2}) || dropped != 0 {
		t.Fatalf("the other subscription got %v (dropped %d), want [0 1 2]", got, dropped)
	}
	if !b.Connected() {
		t.Fatal("broker connection went down after a refused bind")
	}
	// New subscriptions are served after the control channel was reopened,
	// and the failed subscriptions' valid bindings are gone.
	later := subscribe(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: "later"})
	syncBroker(t, b)
	var keys []string
	for _, bd := range rabbittest.QueueBindings(t, b.QueueName()) {
		keys = append(keys, bd.RoutingKey)
	}
	sort.Strings(keys)
	if want := []string{"#", "later"}; !slices.Equal(keys, want) {
		t.Fatalf("bindings: got %q, want %q", keys, want)
	}
	rabbittest.Publish(t, ch, ex, "later", nil, mustJSON(t, testBody{End: true}))
	if got, _ := takeUntilEnd(t, later, 10*time.Second); len(got) != 0 {
		t.Fatalf("later subscription got %v", got)
	}
}

// TestChurnNeverMissesAfterReady subscribes and closes the same few keys
// from many goroutines at once, so that binds and unbinds of one key race;
// each subscription must get a message published right after it is ready,
// and no binding may remain once all are closed.
func TestChurnNeverMissesAfterReady(t *testing.T) {
	b := startBroker(t, Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	setup := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, setup, "eventsproxy-test/x/")

	const workers, rounds = 16, 40
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ch, err := conn.Channel()
			if err != nil {
				errs <- err
				return
			}
			defer ch.Close()
			if err := ch.Confirm(false); err != nil {
				errs <- err
				return
			}
			for i := range rounds {
				key := fmt.Sprintf("k%d", (w+i)%3)
				sub, err := b.Subscribe(context.Background(), []binding.Binding{{Exchange: ex, RoutingKeyPattern: key}})
				if err != nil {
					errs <- err
					return
				}
				tag := fmt.Sprintf("%d-%d", w, i)
				if err := publishConfirmed(ch, ex, key, []byte(tag)); err != nil {
					sub.Close()
					errs <- err
					return
				}
				err = waitForBody(sub, tag, 10*time.Second)
				sub.Close()
				if err != nil {
					errs <- fmt.Errorf("worker %d round %d key %s: %w", w, i, key, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	syncBroker(t, b)
	if bs := rabbittest.QueueBindings(t, b.QueueName()); len(bs) != 0 {
		t.Fatalf("bindings left after churn: %v", bs)
	}
}

func publishConfirmed(ch *amqp.Channel, ex, key string, body []byte) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, ex, key, false, false, amqp.Publishing{Body: body})
	if err != nil {
		return err
	}
	if ok, err := conf.WaitContext(ctx); err != nil || !ok {
		return fmt.Errorf("publish not confirmed: %v", err)
	}
	return nil
}

// waitForBody waits until sub gets a message with body; other messages
// (published by other workers on the same key) are skipped.
func waitForBody(sub *Subscription, body string, deadline time.Duration) error {
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	var msgs []*Message
	for {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			return sub.Err()
		case <-timer.C:
			return fmt.Errorf("message %q not received within %v", body, deadline)
		}
		msgs, _ = sub.Take(msgs[:0])
		for _, m := range msgs {
			if string(m.Body) == body {
				return nil
			}
		}
	}
}
