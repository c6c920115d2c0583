package broker

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"testing"
	"time"

	"eventsproxy/internal/metrics"
)

// route routes a message with key through s, as its connection would; the
// fake connections never deliver, so the test is the router.
func route(s *session, key string) {
	s.router.route(&Message{Exchange: testExchange, RoutingKey: key})
}

// keysOf returns the routing keys of msgs.
func keysOf(msgs []*Message) []string {
	var ks []string
	for _, m := range msgs {
		ks = append(ks, m.RoutingKey)
	}
	return ks
}

// TestAdoptedWaitsForItsBindings checks that a surviving subscription
// adopted by a new session gets nothing there until every one of its
// bindings is confirmed, then a gap after what it held from the lost
// session, then the new session's messages.
func TestAdoptedWaitsForItsBindings(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lost := startSession(newOpConn(), Limits{ClientBuffer: 10}.withDefaults(), intervals{}, metrics.Discard(), log)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sub, err := lost.subscribe(ctx, bindings("a.#", "b.*"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	plain := subscribeTest(t, lost, "#")
	route(lost, "a.old")
	survivors := lost.end(ErrConnectionLost)
	if len(survivors) != 1 || survivors[0] != sub {
		t.Fatalf("survivors %v, want the surviving subscription alone", survivors)
	}
	if sub.isDone() || !plain.isDone() || !errors.Is(plain.Err(), ErrConnectionLost) {
		t.Fatalf("after the loss: surviving done %v, plain done %v (%v)", sub.isDone(), plain.isDone(), plain.Err())
	}

	c := newOpConn()
	held, release := c.holdAt("bind b.*")
	s := testSession(t, c)
	s.adopt(survivors)
	waitHeld(t, held)
	if !c.isBound("a.#") {
		t.Fatal("a.# not bound again")
	}
	route(s, "a.lost") // a.# is bound, but b.* not yet
	if msgs, _ := sub.Take(nil); len(keysOf(msgs)) != 1 || msgs[0].RoutingKey != "a.old" {
		t.Fatalf("before its bindings are back: got %q, want [a.old]", keysOf(msgs))
	}
	if sub.TakeGap() {
		t.Fatal("a gap before the bindings are back")
	}
	close(release)
	deadline := time.After(testTimeout)
	for !sub.TakeGap() {
		select {
		case <-sub.Notify():
		case <-deadline:
			t.Fatal("no gap once the bindings are back")
		}
	}
	route(s, "b.new")
	route(s, "a.new")
	if msgs, _ := sub.Take(nil); len(msgs) != 2 || msgs[0].RoutingKey != "b.new" || msgs[1].RoutingKey != "a.new" {
		t.Fatalf("after the gap: got %q, want [b.new a.new]", keysOf(msgs))
	}
}

// TestGapAfterHeldMessages checks that a gap sits after the messages the
// buffer held when it came: they are taken first, and drops of them move
// the gap forward.
func TestGapAfterHeldMessages(t *testing.T) {
	t.Parallel()
	sub, _ := limitedSubscription(Limits{ClientBuffer: 3})
	sub.push(sized(0, 1))
	sub.push(sized(1, 1))
	sub.markGap()
	sub.markGap() // one gap for both
	sub.push(sized(2, 1))
	sub.push(sized(3, 1)) // drops 0
	if sub.TakeGap() {
		t.Fatal("gap taken before the messages that came before it")
	}
	msgs, dropped := sub.TakeUpTo(nil, 1<<20)
	if got := keysOf(msgs); len(got) != 1 || got[0] != "b" || dropped != 1 {
		t.Fatalf("before the gap: %q dropped %d, want [b] dropped 1", got, dropped)
	}
	select {
	case <-sub.Notify():
	default:
		t.Fatal("no notification for the gap left")
	}
	if msgs, _ := sub.Take(nil); len(msgs) != 0 {
		t.Fatalf("a take before TakeGap got %q", keysOf(msgs))
	}
	if !sub.TakeGap() || sub.TakeGap() {
		t.Fatal("TakeGap: want true once")
	}
	if msgs, _ := sub.Take(nil); len(msgs) != 2 || msgs[0].RoutingKey != "c" || msgs[1].RoutingKey != "d" {
		t.Fatalf("after the gap: %q, want [c d]", keysOf(msgs))
	}
}

// opDialer dials opConns and hands each to the test.
type opDialer struct{ conns chan *opConn }

func (d opDialer) Dial(context.Context) (Conn, error) {
	c := newOpConn()
	d.conns <- c
	return c, nil
}

func (opDialer) String() string { return "test" }

// TestSurvivorsEndWithRun checks that the Broker carries a surviving
// subscription to its next connection, and that the subscription is done,
// with ErrClosed, once Run returns.
func TestSurvivorsEndWithRun(t *testing.T) {
	t.Parallel()
	d := opDialer{make(chan *opConn, 2)}
	b := New(d, Config{MinBackoff: time.Millisecond, MaxBackoff: time.Millisecond}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	first := <-d.conns
	<-b.Attempted()
	sctx, scancel := context.WithTimeout(context.Background(), testTimeout)
	defer scancel()
	sub, err := b.SubscribeSurviving(sctx, bindings("a"))
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Close()
	first.Close()
	var second *opConn
	select {
	case second = <-d.conns:
	case <-time.After(testTimeout):
		t.Fatal("no second connection")
	}
	deadline := time.After(testTimeout)
	for !sub.TakeGap() {
		select {
		case <-sub.Notify():
		case <-sub.Done():
			t.Fatalf("surviving subscription done: %v", sub.Err())
		case <-deadline:
			t.Fatal("no gap on the second connection")
		}
	}
	if !second.isBound("a") {
		t.Fatal("binding not on the second connection at the gap")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Run: %v", err)
	}
	select {
	case <-sub.Done():
	default:
		t.Fatal("surviving subscription not done after Run returned")
	}
	if !errors.Is(sub.Err(), ErrClosed) {
		t.Fatalf("Err %v, want ErrClosed", sub.Err())
	}
}

// TestAdoptedAfterAClosedOne checks that a surviving subscription closed
// while its bindings are pending on the new session does not hold back
// the ones adopted after it: they get their gap once their own bindings
// are confirmed.
func TestAdoptedAfterAClosedOne(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lost := startSession(newOpConn(), Limits{ClientBuffer: 10}.withDefaults(), intervals{}, metrics.Discard(), log)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	first, err := lost.subscribe(ctx, bindings("x"), true)
	if err != nil {
		t.Fatal(err)
	}
	second, err := lost.subscribe(ctx, bindings("y"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(second.Close)
	survivors := lost.end(ErrConnectionLost)
	if len(survivors) != 2 {
		t.Fatalf("survivors %v, want both", survivors)
	}
	// The one adopted first is closed; the other must not wait for it.
	closing := "x"
	if survivors[0] != first {
		first, second, closing = second, first, "y"
	}

	c := newOpConn()
	held, release := c.holdAt("bind " + closing)
	s := testSession(t, c)
	s.adopt(survivors)
	waitHeld(t, held)
	first.Close()
	close(release)
	deadline := time.After(testTimeout)
	for !second.TakeGap() {
		select {
		case <-second.Notify():
		case <-deadline:
			t.Fatal("no gap for a subscription adopted after one closed while its bind was pending")
		}
	}
	route(s, "x")
	route(s, "y")
	if msgs, _ := second.Take(nil); len(msgs) != 1 || msgs[0].RoutingKey == closing {
		t.Fatalf("after the gap: got %q, want the key other than %s", keysOf(msgs), closing)
	}
}

// TestAdoptedSurvivesBindLostTwice checks that a surviving subscription
// whose bindings a new session is binding again survives that session's
// loss too: a bind that fails because the connection dropped, before the
// session ends or while it ends, does not end it, and it is carried on.
func TestAdoptedSurvivesBindLostTwice(t *testing.T) {
	t.Parallel()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	lost := startSession(newOpConn(), Limits{ClientBuffer: 10}.withDefaults(), intervals{}, metrics.Discard(), log)
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	sub, err := lost.subscribe(ctx, bindings("a.#", "b.*"), true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sub.Close)
	survivors := lost.end(ErrConnectionLost)
	if len(survivors) != 1 || survivors[0] != sub {
		t.Fatalf("survivors %v, want the surviving subscription alone", survivors)
	}

	c := newOpConn()
	c.fail = map[string]error{"bind a.#": ErrConnectionLost}
	held, _ := c.holdAt("bind b.*") // let go by the connection's close
	s := startSession(c, Limits{ClientBuffer: 10}.withDefaults(), intervals{}, metrics.Discard(), log)
	s.adopt(survivors)
	waitHeld(t, held) // a.# failed before: the worker binds in order
	if sub.isDone() {
		t.Fatalf("done after a bind lost with the connection: %v", sub.Err())
	}
	survivors = s.end(ErrConnectionLost) // b.* fails while the session ends
	if len(survivors) != 1 || survivors[0] != sub {
		t.Fatalf("survivors %v, want the adopted subscription (done %v, %v)", survivors, sub.isDone(), sub.Err())
	}
	if sub.isDone() {
		t.Fatalf("adopted subscription done after its session's loss: %v", sub.Err())
	}
}
