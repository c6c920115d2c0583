package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Binding is one (exchange, pattern) pair of a stream's request.
type Binding struct {
	Exchange          string `json:"exchange"`
	RoutingKeyPattern string `json:"routingKeyPattern"`
}

// connectRequest returns the HTTP/1.1 request that opens a stream with bs
// on the server at base (http://host:port).
func connectRequest(base string, bs []Binding) ([]byte, string, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, "", err
	}
	if u.Scheme != "http" {
		return nil, "", fmt.Errorf("%s: only http:// servers can be loaded", base)
	}
	q, err := json.Marshal(map[string]any{"bindings": bs})
	if err != nil {
		return nil, "", err
	}
	path := strings.TrimSuffix(u.Path, "/") + "/api/events/v1/connect/?bindings=" + url.QueryEscape(string(q))
	req := "GET " + path + " HTTP/1.1\r\nHost: " + u.Host +
		"\r\nAccept: text/event-stream\r\nUser-Agent: eventsload\r\n\r\n"
	return []byte(req), u.Host, nil
}

// tally is what the streams of one run count together. Its methods may be
// called from any goroutine.
type tally struct {
	ready    Histogram // dial to `ready` parsed
	latency  Histogram // publish to `message` parsed
	received atomic.Int64
	failed   atomic.Int64

	errMu    sync.Mutex
	firstErr string
}

func (t *tally) fail(err error) {
	t.failed.Add(1)
	t.errMu.Lock()
	if t.firstErr == "" {
		t.firstErr = err.Error()
	}
	t.errMu.Unlock()
}

func (t *tally) firstError() string {
	t.errMu.Lock()
	defer t.errMu.Unlock()
	return t.firstErr
}

// stream is one client stream: a TCP connection, its scanner, and what it
// received. Its counters belong to the goroutine reading it; others read
// them only after that goroutine is done.
type stream struct {
	tally *tally
	conn  net.Conn
	sc    *scanner
	start time.Time
	now   int64 // UnixNano of the last read

	ready     bool
	received  int64
	dropped   int64 // as told by overflow events
	gaps      int64 // sequence numbers skipped
	reorder   int64 // sequence numbers that went back
	lastSeq   int64
	firstRecv int64 // UnixNano of the first message
	lastRecv  int64 // UnixNano of the last message
	errText   string
	handle    func(*event)
}

func newStream(t *tally, bufSize int) *stream {
	st := &stream{tally: t, sc: newScanner(bufSize), lastSeq: -1}
	st.handle = st.onEvent
	return st
}

func (st *stream) onEvent(ev *event) {
	switch ev.kind {
	case kindReady:
		st.ready = true
		st.tally.ready.Record(time.Duration(st.now - st.start.UnixNano()))
	case kindMessage:
		st.received++
		if st.received == 1 {
			st.firstRecv = st.now
		}
		st.lastRecv = st.now
		st.tally.received.Add(1)
		if ev.sent > 0 {
			st.tally.latency.Record(time.Duration(st.now - ev.sent))
		}
		if ev.seq >= 0 {
			switch {
			case st.lastSeq < 0 || ev.seq == st.lastSeq+1:
			case ev.seq > st.lastSeq:
				st.gaps += ev.seq - st.lastSeq - 1
			default:
				st.reorder++
			}
			st.lastSeq = ev.seq
		}
	case kindOverflow:
		st.dropped += ev.dropped
	case kindError:
		st.errText = string(ev.data)
	}
}

// open dials the server, sends req and reads until `ready`. On error the
// connection is closed.
func (st *stream) open(ctx context.Context, d *net.Dialer, host string, req []byte) error {
	st.sc.reset()
	st.ready, st.errText = false, ""
	st.start = time.Now()
	conn, err := d.DialContext(ctx, "tcp", host)
	if err != nil {
		return err
	}
	st.conn = conn
	if _, err := conn.Write(req); err != nil {
		conn.Close()
		return err
	}
	// A stream that is not ready within the context's time is a failure;
	// the deadline wakes the read.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetReadDeadline(dl)
	}
	for !st.ready {
		if err := st.readOnce(); err != nil {
			conn.Close()
			if st.errText != "" {
				return fmt.Errorf("error event before ready: %s", st.errText)
			}
			return err
		}
	}
	_ = conn.SetReadDeadline(time.Time{})
	return nil
}

// readOnce reads once and handles the events read.
func (st *stream) readOnce() error {
	err := st.sc.fill(st.conn)
	st.now = time.Now().UnixNano()
	if perr := st.sc.process(st.handle); perr != nil {
		return perr
	}
	if st.errText != "" {
		return fmt.Errorf("error event: %s", st.errText)
	}
	return err
}

// readLoop reads until the connection fails or is closed, and returns why;
// a close by us returns nil.
func (st *stream) readLoop() error {
	for {
		if err := st.readOnce(); err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			if errors.Is(err, io.EOF) {
				return errors.New("server ended the stream")
			}
			return err
		}
	}
}

// pool is a set of open streams, each read by a goroutine of its own.
type pool struct {
	tally   *tally
	streams []*stream
	wg      sync.WaitGroup
	errs    atomic.Int64 // streams whose read loop ended with an error

	ended   chan struct{}
	endOnce sync.Once
}

// openAll opens n streams with parallel of them opening at a time, each
// with the bindings bindings(i) returns, and starts reading each once it is
// ready. It returns once every stream is ready or has failed, with how
// long that took; failures are counted in the tally.
func openAll(ctx context.Context, base string, n, parallel, bufSize int, bindings func(i int) []Binding, t *tally) (*pool, time.Duration, error) {
	p := &pool{tally: t, streams: make([]*stream, n), ended: make(chan struct{})}
	d := &net.Dialer{Timeout: 10 * time.Second}
	var next atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	var setupErr error
	var setupOnce sync.Once
	for range max(parallel, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				req, h, err := connectRequest(base, bindings(i))
				if err != nil {
					setupOnce.Do(func() { setupErr = err })
					return
				}
				st := newStream(t, bufSize)
				octx, cancel := context.WithTimeout(ctx, 60*time.Second)
				err = st.open(octx, d, h, req)
				cancel()
				if err != nil {
					t.fail(err)
					continue
				}
				p.streams[i] = st
				p.wg.Add(1)
				go func() {
					defer p.wg.Done()
					if err := st.readLoop(); err != nil {
						select {
						case <-p.ended:
						default:
							p.errs.Add(1)
							t.fail(err)
						}
					}
				}()
			}
		}()
	}
	wg.Wait()
	took := time.Since(start)
	if setupErr != nil {
		p.close()
		return nil, took, setupErr
	}
	return p, took, ctx.Err()
}

// close closes every stream and waits for their readers.
func (p *pool) close() {
	p.endOnce.Do(func() { close(p.ended) })
	for _, st := range p.streams {
		if st != nil {
			st.conn.Close()
		}
	}
	p.wg.Wait()
}

// open returns the streams that opened.
func (p *pool) open() []*stream {
	var out []*stream
	for _, st := range p.streams {
		if st != nil {
			out = append(out, st)
		}
	}
	return out
}
