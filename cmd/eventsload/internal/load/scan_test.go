package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/sse"
)

// chunk frames b as one HTTP/1.1 chunk, as net/http does on each Flush.
func chunk(b []byte) []byte {
	return append(fmt.Appendf(nil, "%x\r\n", len(b)), append(b, "\r\n"...)...)
}

const head = "HTTP/1.1 200 OK\r\nCache-Control: no-cache\r\nContent-Type: text/event-stream\r\n" +
	"Date: Thu, 01 Jan 2026 00:00:00 GMT\r\nTransfer-Encoding: chunked\r\nX-Accel-Buffering: no\r\n\r\n"

// messageData is the data eventsproxy writes for a message from Publisher.
func messageData(sent, seq int64, size int) []byte {
	return fmt.Appendf(nil, `{"exchange":"eventsload/x","routingKey":"primary.a._","redelivered":false,"routes":["a"],"payload":%s}`,
		Body(sent, seq, size))
}

// response builds a chunked event stream: ready, n messages (in writes of
// up to batch events each), an overflow, a ping, and an error.
func response(n, batch, size int) []byte {
	var out []byte
	out = append(out, head...)
	out = append(out, chunk(sse.AppendEvent(nil, "ready", []byte("{}")))...)
	for i := 0; i < n; {
		var b []byte
		for j := 0; j < batch && i < n; j++ {
			b = sse.AppendEvent(b, "message", messageData(1_000_000_000+int64(i), int64(i), size))
			i++
		}
		out = append(out, chunk(b)...)
	}
	out = append(out, chunk(sse.AppendEvent(nil, "overflow", []byte(`{"dropped":7}`)))...)
	out = append(out, chunk(sse.AppendEvent(nil, "ping", []byte(`{"time":"2026-01-01T00:00:00.000Z"}`)))...)
	out = append(out, chunk(sse.AppendEvent(nil, "error", []byte(`"Unknown Internal Error"`)))...)
	return append(out, "0\r\n\r\n"...)
}

// splitReader returns the bytes in reads of random sizes from 1 to max.
type splitReader struct {
	b   []byte
	max int
	rnd *rand.Rand
}

func (r *splitReader) Read(p []byte) (int, error) {
	if len(r.b) == 0 {
		return 0, io.EOF
	}
	n := min(len(p), len(r.b), 1+r.rnd.IntN(r.max))
	copy(p, r.b[:n])
	r.b = r.b[n:]
	return n, nil
}

func scanAll(t *testing.T, sc *scanner, r io.Reader) ([]event, error) {
	t.Helper()
	var evs []event
	fn := func(ev *event) {
		e := *ev
		e.data = bytes.Clone(ev.data)
		e.id = bytes.Clone(ev.id)
		evs = append(evs, e)
	}
	for {
		err := sc.fill(r)
		if perr := sc.process(fn); perr != nil {
			return evs, perr
		}
		if err != nil {
			return evs, err
		}
	}
}

func TestScanner(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name            string
		n, batch, size  int
		bufSize, maxCut int
	}{
		{"one event per read", 50, 1, 512, 4096, 1 << 20},
		{"batched writes", 200, 7, 512, 4096, 1 << 20},
		{"byte by byte", 20, 3, 100, 4096, 1},
		{"small random reads", 100, 5, 512, 4096, 37},
		{"lines longer than the buffer", 30, 2, 20000, 256, 3000},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			src := response(tc.n, tc.batch, tc.size)
			sc := newScanner(tc.bufSize)
			evs, err := scanAll(t, sc, &splitReader{b: src, max: tc.maxCut, rnd: rand.New(rand.NewPCG(1, 2))})
			if !errors.Is(err, io.EOF) {
				t.Fatalf("scan ended with %v, want io.EOF at the last chunk", err)
			}
			if len(evs) != tc.n+4 {
				t.Fatalf("got %d events, want %d", len(evs), tc.n+4)
			}
			if evs[0].kind != kindReady {
				t.Errorf("first event kind %d, want ready", evs[0].kind)
			}
			for i := range tc.n {
				ev := evs[1+i]
				if ev.kind != kindMessage || ev.seq != int64(i) || ev.sent != 1_000_000_000+int64(i) {
					t.Fatalf("event %d = %+v, want message seq %d", 1+i, ev, i)
				}
			}
			if ev := evs[tc.n+1]; ev.kind != kindOverflow || ev.dropped != 7 {
				t.Errorf("overflow event = %+v", ev)
			}
			if ev := evs[tc.n+2]; ev.kind != kindPing {
				t.Errorf("ping event = %+v", ev)
			}
			if ev := evs[tc.n+3]; ev.kind != kindError || string(ev.data) != `"Unknown Internal Error"` {
				t.Errorf("error event = %+v %q", ev, ev.data)
			}
		})
	}
}

func TestScannerNotChunked(t *testing.T) {
	t.Parallel()
	src := "HTTP/1.0 200 OK\r\nContent-Type: text/event-stream\r\n\r\n" +
		string(sse.AppendEvent(nil, "ready", []byte("{}"))) +
		string(sse.AppendEvent(nil, "message", messageData(5, 0, 64)))
	evs, err := scanAll(t, newScanner(64), strings.NewReader(src))
	if !errors.Is(err, io.EOF) || len(evs) != 2 || evs[1].sent != 5 || evs[1].seq != 0 {
		t.Fatalf("got %+v, %v", evs, err)
	}
}

// An HTTP/2 response's body is the bare event stream, and a scanner that
// was used for an HTTP/1.1 response and reset for a body parses it whole.
func TestScannerBody(t *testing.T) {
	t.Parallel()
	body := string(sse.AppendEvent(nil, "ready", []byte("{}"))) +
		string(sse.AppendEvent(nil, "message", messageData(5, 0, 64)))
	sc := newScanner(64)
	if _, err := scanAll(t, sc, strings.NewReader("HTTP/1.0 200 OK\r\n\r\n")); !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	sc.resetBody()
	evs, err := scanAll(t, sc, &splitReader{b: []byte(body), max: 7, rnd: rand.New(rand.NewPCG(1, 2))})
	if !errors.Is(err, io.EOF) || len(evs) != 2 || evs[0].kind != kindReady || evs[1].sent != 5 || evs[1].seq != 0 {
		t.Fatalf("got %+v, %v", evs, err)
	}
}

// A resumable stream's events carry tokens as ids, and a gap its reason;
// an id belongs to the event it is in.
func TestScannerIDAndGap(t *testing.T) {
	t.Parallel()
	src := "HTTP/1.0 200 OK\r\n\r\nretry: 1000\nevent: ready\ndata: {}\nid: tok1\n\n" +
		"event: gap\ndata: {\"reason\": \"expired\"}\nid: tok2\n\n" +
		"event: message\ndata: " + string(messageData(5, 3, 64)) + "\n\n"
	evs, err := scanAll(t, newScanner(32), &splitReader{b: []byte(src), max: 5, rnd: rand.New(rand.NewPCG(3, 4))})
	if !errors.Is(err, io.EOF) || len(evs) != 3 {
		t.Fatalf("got %+v, %v", evs, err)
	}
	if string(evs[0].id) != "tok1" || evs[1].kind != kindGap || string(evs[1].id) != "tok2" ||
		string(evs[1].data) != `{"reason": "expired"}` || len(evs[2].id) != 0 || evs[2].seq != 3 {
		t.Fatalf("got %+v", evs)
	}
}

func TestScannerRefusal(t *testing.T) {
	t.Parallel()
	src := "HTTP/1.1 503 Service Unavailable\r\nRetry-After: 5\r\nContent-Length: 2\r\n\r\n{}"
	_, err := scanAll(t, newScanner(4096), strings.NewReader(src))
	var se *StatusError
	if !errors.As(err, &se) || se.Code != 503 {
		t.Fatalf("got %v, want a StatusError 503", err)
	}
}

func TestParseStamp(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		data      string
		sent, seq int64
	}{
		{string(messageData(1700000000123456789, 42, 512)), 1700000000123456789, 42},
		{`{"exchange":"x","payload":{"t":12}}`, 12, -1},
		{`{"exchange":"x","payload":{"other":1}}`, 0, -1},
		{`{"exchange":"x","payload":"text"}`, 0, -1},
	} {
		sent, seq := parseStamp([]byte(tc.data))
		if sent != tc.sent || seq != tc.seq {
			t.Errorf("parseStamp(%.60q) = %d, %d; want %d, %d", tc.data, sent, seq, tc.sent, tc.seq)
		}
	}
}

func TestBodySize(t *testing.T) {
	t.Parallel()
	for _, size := range []int{64, 512, 4096} {
		if b := Body(time.Now().UnixNano(), 123456, size); len(b) != size {
			t.Errorf("Body(…, %d) is %d bytes", size, len(b))
		}
	}
}

// TestStreamAccounting checks what a stream counts: latency from the
// payload's send time to the read, loss as gaps in the sequence, drops
// from overflow events.
func TestStreamAccounting(t *testing.T) {
	t.Parallel()
	var tl tally
	st := newStream(&tl, 4096)
	st.start = time.Unix(0, 0)
	now := int64(10 * time.Second)
	st.now = now
	st.onEvent(&event{kind: kindReady, seq: -1})
	// Messages 0..9 sent 5 ms before now, 10..14 lost, 15..19 sent 50 ms
	// before now.
	for i := range int64(20) {
		if i >= 10 && i < 15 {
			continue
		}
		lat := 5 * time.Millisecond
		if i >= 15 {
			lat = 50 * time.Millisecond
		}
		st.onEvent(&event{kind: kindMessage, sent: now - int64(lat), seq: i})
	}
	st.onEvent(&event{kind: kindOverflow, dropped: 5, seq: -1})
	st.onEvent(&event{kind: kindMessage, sent: now, seq: 3}) // went back

	if !st.ready || tl.ready.Count() != 1 || tl.ready.Quantile(0.5) < 9900*time.Millisecond {
		t.Errorf("ready: %v, %d recorded, p50 %v", st.ready, tl.ready.Count(), tl.ready.Quantile(0.5))
	}
	if st.received != 16 || tl.received.Load() != 16 {
		t.Errorf("received %d (tally %d), want 16", st.received, tl.received.Load())
	}
	if st.gaps != 5 || st.reorder != 1 || st.dropped != 5 {
		t.Errorf("gaps %d, reorder %d, dropped %d; want 5, 1, 5", st.gaps, st.reorder, st.dropped)
	}
	if p50 := tl.latency.Quantile(0.5); p50 < 4800*time.Microsecond || p50 > 5200*time.Microsecond {
		t.Errorf("latency p50 %v, want about 5ms", p50)
	}
	if p99 := tl.latency.Quantile(0.99); p99 < 48*time.Millisecond || p99 > 52*time.Millisecond {
		t.Errorf("latency p99 %v, want about 50ms", p99)
	}
}

func TestHistogram(t *testing.T) {
	t.Parallel()
	var h Histogram
	if h.Quantile(0.5) != 0 {
		t.Fatal("empty histogram has a median")
	}
	// 1..10000 µs: quantile q is about q×10ms, within the buckets' 3 %.
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	h.Record(-time.Second) // a clock that went back counts as 0
	for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999} {
		want := time.Duration(q * float64(10*time.Millisecond))
		got := h.Quantile(q)
		if d := got - want; d < -want/25 || d > want/25 {
			t.Errorf("Quantile(%v) = %v, want %v ± 4%%", q, got, want)
		}
	}
	if h.Max() != 10*time.Millisecond || h.Count() != 10001 {
		t.Errorf("max %v, count %d", h.Max(), h.Count())
	}
	for _, d := range []time.Duration{time.Hour, 1000 * time.Hour, 1 << 62} {
		h.Record(d) // the largest buckets exist
	}
}

func BenchmarkScanner(b *testing.B) {
	src := response(1000, 1, 512)
	sc := newScanner(16384)
	r := bytes.NewReader(nil)
	n := 0
	fn := func(*event) { n++ }
	b.SetBytes(int64(len(src)))
	b.ReportAllocs()
	for b.Loop() {
		r.Reset(src)
		sc.reset()
		for {
			err := sc.fill(r)
			if perr := sc.process(fn); perr != nil {
				break
			}
			if err != nil {
				break
			}
		}
	}
}

func TestHistogramQuantile(t *testing.T) {
	t.Parallel()
	bs := []bucket{{0.001, 10}, {0.01, 60}, {0.1, 100}, {math.Inf(1), 100}}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{
		{0.05, 500 * time.Microsecond},
		{0.35, 5500 * time.Microsecond},
		{0.80, 55 * time.Millisecond},
		{1, 100 * time.Millisecond},
	} {
		if got := histogramQuantile(tc.q, bs); got < tc.want-time.Microsecond || got > tc.want+time.Microsecond {
			t.Errorf("histogramQuantile(%v) = %v, want %v", tc.q, got, tc.want)
		}
	}
}
