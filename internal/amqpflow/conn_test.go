package amqpflow

import (
	"encoding/binary"
	"net"
	"testing"
	"time"
)

// frame returns one AMQP frame of type typ on channel 1 with payload.
func frame(typ byte, payload []byte) []byte {
	b := []byte{typ, 0, 1, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(b[3:], uint32(len(payload)))
	b = append(b, payload...)
	return append(b, 0xCE)
}

// method returns a method frame for class.method with some arguments.
func method(class, id uint16, args string) []byte {
	p := binary.BigEndian.AppendUint16(nil, class)
	p = binary.BigEndian.AppendUint16(p, id)
	return frame(frameMethod, append(p, args...))
}

// delivery is what the broker sends for one message: basic.deliver, the
// content header and the body.
func delivery(body string) []byte {
	b := method(classBasic, methodDeliver, "\x05ctag-\x00\x00\x00\x00\x00\x00\x00\x01\x00\x02ex\x01k")
	b = append(b, frame(2, []byte("\x00\x3c\x00\x00header"))...)
	return append(b, frame(3, []byte(body))...)
}

// stream is a connection's worth of frames with three deliveries among
// other methods, heartbeats, a body that looks like basic.deliver, and a
// method frame too short to have ids; the last delivery's body has size
// bytes.
func stream(size int) []byte {
	var b []byte
	b = append(b, method(10, 10, "connection.start")...)
	b = append(b, delivery(`{"a":1}`)...)
	b = append(b, frame(8, nil)...)
	b = append(b, method(classBasic, 80, "ack")...)
	b = append(b, delivery("\x00\x3c\x00\x3cnot a method")...)
	b = append(b, frame(frameMethod, []byte{0, 60})...)
	b = append(b, method(20, 10, "")...)
	b = append(b, delivery(string(make([]byte, size)))...)
	return b
}

func TestFrameScannerCountsDeliveries(t *testing.T) {
	t.Parallel()
	b := stream(70000)
	var whole frameScanner
	if got := whole.deliveries(b); got != 3 {
		t.Fatalf("in one read: %d deliveries, want 3", got)
	}
	// Every split into two reads, and a byte at a time.
	for i := range len(b) + 1 {
		if i > 200 && i < len(b)-200 && i%97 != 0 {
			continue
		}
		var s frameScanner
		if got := s.deliveries(b[:i]) + s.deliveries(b[i:]); got != 3 {
			t.Fatalf("split at %d: %d deliveries, want 3", i, got)
		}
	}
	var s frameScanner
	n := 0
	for i := range b {
		n += s.deliveries(b[i : i+1])
	}
	if n != 3 {
		t.Fatalf("a byte at a time: %d deliveries, want 3", n)
	}
}

// countWhole counts, in a byte stream read whole, the basic.deliver frames
// whose ids it holds: what frameScanner must find however the stream is
// split.
func countWhole(b []byte) (n int) {
	for len(b) >= frameHeaderSize {
		size := uint64(binary.BigEndian.Uint32(b[3:]))
		body := b[frameHeaderSize:]
		if b[0] == frameMethod && size >= 4 && len(body) >= 4 &&
			binary.BigEndian.Uint16(body) == classBasic && binary.BigEndian.Uint16(body[2:]) == methodDeliver {
			n++
		}
		if uint64(len(body)) < size+1 {
			break
		}
		b = body[size+1:]
	}
	return n
}

func FuzzFrameScanner(f *testing.F) {
	f.Add(stream(10), []byte{3, 200, 7})
	f.Add(delivery("x"), []byte{1})
	f.Add([]byte{1, 0, 0, 0, 0, 0, 2, 0, 60, 0xCE, 1, 0, 0, 0, 0, 0, 4, 0, 60, 0, 60, 0xCE}, []byte{5})
	f.Fuzz(func(t *testing.T, b []byte, splits []byte) {
		want := countWhole(b)
		var s frameScanner
		got := 0
		rest := b
		for i := 0; len(rest) > 0; i++ {
			k := len(rest)
			if len(splits) > 0 {
				k = min(k, int(splits[i%len(splits)])+1)
			}
			got += s.deliveries(rest[:k])
			rest = rest[k:]
		}
		if got != want {
			t.Fatalf("in reads of %v: %d deliveries, read whole: %d", splits, got, want)
		}
	})
}

// notifyWaits makes f send on the returned channel each time its Read
// starts waiting for the backlog to drain (unless 16 sends wait there).
func notifyWaits(f *Conn) <-chan struct{} {
	waits := make(chan struct{}, 16)
	f.NotifyWait(waits)
	return waits
}

// expectWait waits at most 10s for a value on waits.
func expectWait(t *testing.T, waits <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-waits:
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not within 10s", what)
	}
}

// TestConnStopsReading checks that a Conn stops reading once max
// deliveries wait, and reads again once the consumer has taken half.
func TestConnStopsReading(t *testing.T) {
	t.Parallel()
	const max = 10
	server, client := net.Pipe()
	f := New(client, max)
	defer f.Close()
	waits := notifyWaits(f)
	read := make(chan int, 100)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			n, err := f.Read(buf)
			if err != nil {
				close(read)
				return
			}
			read <- n
		}
	}()
	// net.Pipe's writes return once read: deliveries 1 to 10 are read,
	// then the reader waits and the 11th write with it.
	written := writeDeliveries(server, 3*max)
	for range max {
		<-written
	}
	expectWait(t, waits, "the reader waits for the backlog")
	select {
	case n := <-written:
		t.Fatalf("write %d went through with %d deliveries waiting", n, max)
	default:
	}
	// Reading resumes once the backlog is down to half (max/2 takes).
	for range max / 2 {
		f.Took()
	}
	select {
	case n := <-written:
		if n != max+1 {
			t.Fatalf("write %d after draining, want %d", n, max+1)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("reading did not resume once the backlog was down to half")
	}
	// Deliveries 12 to 15 fill the backlog again.
	for range max/2 - 1 {
		<-written
	}
	expectWait(t, waits, "the reader waits again")
	// Release lets the reader go, whatever the backlog: the rest is read.
	f.Release()
	for range 3*max - (max + max/2) {
		select {
		case <-written:
		case <-time.After(10 * time.Second):
			t.Fatal("writes still wait after release")
		}
	}
	_ = server.Close()
	for range read {
	}
}

// TestConnLends checks that a Lend lets the reader go on past the bound,
// counting what it reads, and that after Return the bound holds again.
func TestConnLends(t *testing.T) {
	t.Parallel()
	const max = 4
	server, client := net.Pipe()
	f := New(client, max)
	defer f.Close()
	waits := notifyWaits(f)
	go func() {
		buf := make([]byte, 64<<10)
		for {
			if _, err := f.Read(buf); err != nil {
				return
			}
		}
	}()
	written := writeDeliveries(server, 100)
	for range max {
		<-written
	}
	expectWait(t, waits, "the reader waits for the backlog")
	f.Lend()
	for range 2 * max {
		select {
		case <-written:
		case <-time.After(10 * time.Second):
			t.Fatal("writes wait though the bound is lent")
		}
	}
	f.Return()
	// The next read finds the backlog over the bound.
	expectWait(t, waits, "the reader waits again after Return")
	if b := f.Backlog(); b < 3*max {
		t.Fatalf("backlog %d, want the %d read while lent counted", b, 3*max)
	}
	_ = server.Close()
}

// writeDeliveries writes n deliveries to c, one at a time, and says the
// number of each once written.
func writeDeliveries(c net.Conn, n int) <-chan int {
	written := make(chan int, n)
	go func() {
		for i := range n {
			if _, err := c.Write(delivery("x")); err != nil {
				return
			}
			written <- i + 1
		}
	}()
	return written
}
