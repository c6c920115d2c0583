//go:build integration

package api_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/sse"
)

// TestChurnLeavesNothingBehind runs thousands of connect → ready →
// disconnect cycles while messages flow, some clients vanishing in the
// middle of a delivery, and then checks that the broker holds only the
// process's one queue with no binding, and that the process is back to the
// goroutines it had before.
func TestChurnLeavesNothingBehind(t *testing.T) {
	const cycles, parallel, patterns = 2000, 20, 40
	// On a machine busy enough, the broker has held binds back for over
	// 20 s: the waits are generous, since only what arrives is checked.
	p := startProxy(t, api.Config{ReadyTimeout: cycleTimeout}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	queue := p.Broker.QueueName()
	baseline := runtime.NumGoroutine()
	before := goleak.IgnoreCurrent()

	// A publisher keeps messages flowing to every pattern during the churn.
	pubCtx, stopPub := context.WithCancel(context.Background())
	pubDone := make(chan struct{})
	go func() {
		defer close(pubDone)
		pch, err := conn.Channel()
		if err != nil {
			t.Error(err)
			return
		}
		defer pch.Close()
		body := []byte(`{"pad":"` + strings.Repeat("x", 500) + `"}`)
		for i := 0; pubCtx.Err() == nil; i++ {
			if err := publishNoWait(pch, ex, fmt.Sprintf("k.%d", i%patterns), body); err != nil {
				t.Error(err)
				return
			}
			if i%100 == 99 {
				// Let the broker breathe: bounded at roughly 10k msg/s.
				select {
				case <-pubCtx.Done():
				case <-time.After(10 * time.Millisecond):
				}
			}
		}
	}()

	var next, vanished atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for range parallel {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := next.Add(1) - 1
				if i >= cycles || t.Failed() {
					return
				}
				bs := []binding.Binding{{Exchange: ex, RoutingKeyPattern: fmt.Sprintf("k.%d", i%patterns)}}
				if err := cycle(p.URL, bs, i%10 == 0); err != nil {
					t.Errorf("cycle %d: %v", i, err)
					return
				}
				if i%10 == 0 {
					vanished.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	stopPub()
	<-pubDone
	t.Logf("%d cycles (%d vanishing mid-delivery), %d at a time, in %v: %.0f cycles/s",
		cycles, vanished.Load(), parallel, elapsed.Round(time.Millisecond), float64(cycles)/elapsed.Seconds())

	waitNoBindings(t, p, queue)
	prefix := queue[:len(queue)-16]
	if qs := rabbittest.Queues(t, prefix); len(qs) != broker.QueuesPerConnection {
		t.Fatalf("queues of this process after churn: %d, want %d", len(qs), broker.QueuesPerConnection)
	}
	// Stream goroutines end once their handlers see the client gone;
	// VerifyNone retries for a while before it reports any.
	goleak.VerifyNone(t, before)
	t.Logf("after churn: 1 queue, 0 bindings, %d goroutines (%d before)", runtime.NumGoroutine(), baseline)
}

// cycle connects, waits for ready, and disconnects: at once, or, when
// vanish is set, after the first message has started to arrive, without
// reading the rest.
// cycleTimeout bounds one cycle, however busy the machine.
const cycleTimeout = 3 * time.Minute

func cycle(base string, bs []binding.Binding, vanish bool) error {
	ctx, cancel := context.WithTimeout(context.Background(), cycleTimeout)
	defer cancel()
	q := `{"bindings":[{"exchange":"` + bs[0].Exchange + `","routingKeyPattern":"` + bs[0].RoutingKeyPattern + `"}]}`
	req, err := newRequest(ctx, connectURL(base, q))
	if err != nil {
		return err
	}
	resp, err := httpClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	r := sse.NewReader(resp.Body)
	ev, err := r.Next()
	if err != nil {
		return fmt.Errorf("first event: %w", err)
	}
	if ev.Kind != "ready" {
		return fmt.Errorf("first event %q %s", ev.Kind, ev.Data)
	}
	if vanish {
		var one [1]byte
		if _, err := resp.Body.Read(one[:]); err != nil {
			return fmt.Errorf("waiting for a delivery: %w", err)
		}
	}
	return nil
}
