package load

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
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

// client opens streams on one server: with its own HTTP/1.1 requests on
// TCP connections of their own for http:// URLs, with Go's HTTP/2 client
// (many streams on each TLS connection, as a browser does) for https:// ones.
type client struct {
	base   *url.URL
	dialer *net.Dialer
	h2     *http.Client // nil: HTTP/1.1
	token  string       // sent as Authorization: Bearer when not empty
}

// newClient returns the client for t.
func newClient(t Target) (*client, error) {
	u, err := url.Parse(t.URL)
	if err != nil {
		return nil, err
	}
	// No TCP keep-alive: a stream's pings keep it alive, and the four
	// setsockopt calls would be a third of a connect cycle's system calls.
	c := &client{base: u, dialer: &net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1}, token: t.Token}
	switch u.Scheme {
	case "http":
	case "https":
		if t.TLS == nil {
			return nil, fmt.Errorf("%s: an https:// server needs the TLS configuration that trusts it", t.URL)
		}
		c.h2 = &http.Client{Transport: &http.Transport{
			TLSClientConfig:   t.TLS.Clone(),
			ForceAttemptHTTP2: true,
			DialContext:       c.dialer.DialContext,
		}}
	default:
		return nil, fmt.Errorf("%s: only http:// and https:// servers can be loaded", t.URL)
	}
	return c, nil
}

// close closes the client's idle HTTP/2 connections.
func (c *client) close() {
	if c.h2 != nil {
		c.h2.CloseIdleConnections()
	}
}

// request is what opens one stream: the bytes of an HTTP/1.1 request, or
// the URL of an HTTP/2 one.
type request struct {
	raw         []byte
	url         string
	token       string // of an HTTP/2 request
	lastEventID string // of an HTTP/2 request
}

// request returns the request that opens a stream with bs.
func (c *client) request(bs []Binding) (request, error) {
	return c.resumeRequest(bs, false, "", false)
}

// resumeRequest returns the request that opens a stream with bs; with
// resume, one that opts in with resume=1 and, when lastID is not empty,
// continues after it: in a Last-Event-ID header as EventSource sends it,
// or with inQuery in the lastEventId query parameter.
func (c *client) resumeRequest(bs []Binding, resume bool, lastID string, inQuery bool) (request, error) {
	q, err := json.Marshal(map[string]any{"bindings": bs})
	if err != nil {
		return request{}, err
	}
	path := strings.TrimSuffix(c.base.Path, "/") + "/api/events/v1/connect/?bindings=" + url.QueryEscape(string(q))
	header := ""
	if resume {
		path += "&resume=1"
		switch {
		case lastID == "":
		case inQuery:
			path += "&lastEventId=" + url.QueryEscape(lastID)
		default:
			header = lastID
		}
	}
	if c.h2 != nil {
		return request{url: c.base.Scheme + "://" + c.base.Host + path, token: c.token, lastEventID: header}, nil
	}
	raw := "GET " + path + " HTTP/1.1\r\nHost: " + c.base.Host +
		"\r\nAccept: text/event-stream\r\nUser-Agent: eventsload\r\n"
	if c.token != "" {
		raw += "Authorization: Bearer " + c.token + "\r\n"
	}
	if header != "" {
		raw += "Last-Event-ID: " + header + "\r\n"
	}
	return request{raw: []byte(raw + "\r\n")}, nil
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

// stream is one client stream: its body (a TCP connection of its own, or
// an HTTP/2 response body), its scanner, and what it received. Its
// counters belong to the goroutine reading it; others read them only after
// that goroutine is done.
type stream struct {
	tally *tally
	body  io.ReadCloser
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

// open opens the stream with req and reads until `ready`, which must come
// before ctx ends. On error the stream is closed.
func (st *stream) open(ctx context.Context, c *client, req request) error {
	dl, _ := ctx.Deadline()
	return st.openBy(ctx, c, req, dl)
}

// openBy is open with a deadline for `ready` of its own (zero: none but
// ctx's), for a caller that would otherwise make a context per stream for
// it: over HTTP/1.1, ctx then only cancels the dial.
func (st *stream) openBy(ctx context.Context, c *client, req request, dl time.Time) error {
	st.sc.reset()
	st.ready, st.errText = false, ""
	st.start = time.Now()
	if c.h2 != nil {
		if !dl.IsZero() {
			var cancel context.CancelFunc
			ctx, cancel = context.WithDeadline(ctx, dl)
			defer cancel()
		}
		return st.openH2(ctx, c.h2, req)
	}
	conn, err := c.dialer.DialContext(ctx, "tcp", c.base.Host)
	if err != nil {
		return err
	}
	st.body = conn
	if _, err := conn.Write(req.raw); err != nil {
		conn.Close()
		return err
	}
	// A stream that is not ready by the deadline is a failure; the
	// deadline wakes the read.
	if d, ok := ctx.Deadline(); ok && (dl.IsZero() || d.Before(dl)) {
		dl = d
	}
	if !dl.IsZero() {
		_ = conn.SetReadDeadline(dl)
	}
	if err := st.readUntilReady(); err != nil {
		return err
	}
	if !dl.IsZero() {
		_ = conn.SetReadDeadline(time.Time{})
	}
	return nil
}

// openH2 opens the stream as an HTTP/2 request. The request outlives ctx,
// which only bounds the wait for `ready`.
func (st *stream) openH2(ctx context.Context, hc *http.Client, r request) error {
	rctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	stop := context.AfterFunc(ctx, cancel)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, r.url, nil)
	if err != nil {
		cancel()
		return err
	}
	req.Header.Set("Accept", "text/event-stream")
	if r.token != "" {
		req.Header.Set("Authorization", "Bearer "+r.token)
	}
	if r.lastEventID != "" {
		req.Header.Set("Last-Event-ID", r.lastEventID)
	}
	resp, err := hc.Do(req)
	if err != nil {
		cancel()
		return err
	}
	st.sc.resetBody()
	st.body = &h2Body{ReadCloser: resp.Body, cancel: cancel}
	if resp.ProtoMajor != 2 {
		st.body.Close()
		return fmt.Errorf("the server answered over %s, not HTTP/2", resp.Proto)
	}
	if resp.StatusCode != http.StatusOK {
		st.body.Close()
		return &StatusError{Code: resp.StatusCode}
	}
	if err := st.readUntilReady(); err != nil {
		return err
	}
	if !stop() {
		st.body.Close()
		return fmt.Errorf("ready, but too late: %w", ctx.Err())
	}
	return nil
}

// readUntilReady reads until `ready`; on error it closes the stream.
func (st *stream) readUntilReady() error {
	for !st.ready {
		if err := st.readOnce(); err != nil {
			st.body.Close()
			if st.errText != "" {
				return fmt.Errorf("error event before ready: %s", st.errText)
			}
			return err
		}
	}
	return nil
}

// h2Body is an HTTP/2 response body whose reads, once we closed it, fail
// with net.ErrClosed, as a closed connection's do.
type h2Body struct {
	io.ReadCloser
	cancel func()
	closed atomic.Bool
}

func (b *h2Body) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if err != nil && b.closed.Load() {
		err = net.ErrClosed
	}
	return n, err
}

func (b *h2Body) Close() error {
	b.closed.Store(true)
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

// readOnce reads once and handles the events read.
func (st *stream) readOnce() error {
	err := st.sc.fill(st.body)
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
func openAll(ctx context.Context, c *client, n, parallel, bufSize int, bindings func(i int) []Binding, t *tally) (*pool, time.Duration, error) {
	p := &pool{tally: t, streams: make([]*stream, n), ended: make(chan struct{})}
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
				req, err := c.request(bindings(i))
				if err != nil {
					setupOnce.Do(func() { setupErr = err })
					return
				}
				st := newStream(t, bufSize)
				octx, cancel := context.WithTimeout(ctx, 60*time.Second)
				err = st.open(octx, c, req)
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
			st.body.Close()
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
