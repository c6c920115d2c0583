package listen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"time"

	"eventsproxy/internal/sse"
	"eventsproxy/internal/version"
)

// maxErrorBody bounds how much of a refusal's body Run reads for its
// message.
const maxErrorBody = 64 << 10

// Run opens the event stream that opts asks for and writes each message to
// stdout until ctx is done or opts.Count messages have been written; both
// return nil. Notes and warnings go to stderr as they happen. Any other end
// is an error for ExitCode: a *ServerError when the server sent an `error`
// event, ErrStreamEnded when the stream ended without one, a *ConnectError
// when no stream could be opened, ErrReadyTimeout when it was not ready
// within opts.Timeout, or the error of a write to stdout.
//
// With opts.Resume, a stream that breaks once it was ready is opened again,
// after a pause that grows from a second to half a minute while attempts
// fail, with the id of the last event written (Last-Event-ID): the server
// sends what the client missed, or a `gap`, which Run tells on stderr. Only
// the first connection's failures, an `error` event, a refusal that a retry
// cannot mend and a failed write end Run then.
//
// Run only reads opts, so it may be called concurrently with the same
// Options. It does not close stdout or stderr, and leaves no connection
// open behind it.
func Run(ctx context.Context, opts *Options, stdout, stderr io.Writer) error {
	target, err := ConnectURL(opts.URL, opts.Bindings)
	if err != nil {
		return err
	}
	if opts.Resume {
		target += "&resume=1"
	}
	if opts.Properties {
		target += "&properties=1"
	}
	l := &listener{opts: opts, stderr: stderr, w: newWriter(opts, stdout), target: target, shown: displayURL(target)}
	err = l.listen(ctx)
	pause := minReconnect
	for opts.Resume && l.ready && retryable(err) {
		if l.readyAgain {
			pause, l.readyAgain = minReconnect, false
		}
		wait := max(pause, retryAfter(err))
		fmt.Fprintf(stderr, "note: %v; reconnecting in %v\n", err, wait)
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		pause = min(2*pause, maxReconnect)
		err = l.listen(ctx)
	}
	return err
}

// The pause before a reconnection doubles from minReconnect (the `retry:`
// a resumable stream gives EventSource) up to maxReconnect while attempts
// fail.
const (
	minReconnect = time.Second
	maxReconnect = 30 * time.Second
)

// listener is Run's state across the connections of one stream.
type listener struct {
	opts          *Options
	stderr        io.Writer
	w             *writer
	target, shown string

	// ready: some connection got `ready`; readyAgain: one did since the
	// last reconnection pause.
	ready, readyAgain bool
	// lastID is the id of the last event handled, the token a
	// reconnection sends; "" or "-" when there is none.
	lastID   string
	received int
	tokens   bool // the server gave an event a token
}

// retryable reports whether a reconnection may mend err, the end of a
// connection of a stream that was ready once.
func retryable(err error) bool {
	if err == nil || errors.Is(err, ErrStreamEnded) || errors.Is(err, ErrReadyTimeout) {
		return err != nil
	}
	if serr, ok := errors.AsType[*ServerError](err); ok {
		// The texts that ask the client to come back (docs/api.md).
		return serr.Text == textUnavailable || serr.Text == textShutdown
	}
	if cerr, ok := errors.AsType[*ConnectError](err); ok {
		switch cerr.StatusCode {
		case 0:
			return cerr.Err != nil
		case http.StatusTooManyRequests, http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
			return true
		}
	}
	return false
}

// The server's `error` texts after which a client should reconnect.
const (
	textUnavailable = "The service is temporarily unavailable; please reconnect later."
	textShutdown    = "The server is shutting down; please reconnect."
)

// retryAfter returns the wait that a refusal's Retry-After asks for, or 0.
func retryAfter(err error) time.Duration {
	cerr, ok := errors.AsType[*ConnectError](err)
	if !ok {
		return 0
	}
	s, perr := strconv.Atoi(cerr.RetryAfter)
	if perr != nil || s <= 0 {
		return 0
	}
	return min(time.Duration(s)*time.Second, maxReconnect)
}

// listen serves one connection of the stream, as Run describes.
func (l *listener) listen(ctx context.Context) error {
	opts, stderr := l.opts, l.stderr
	// The ready timer cancels the request with a cause of its own, so that
	// a stream that is slow to bind and a server that does not answer at
	// all both end as a timeout, told apart from an interrupt.
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timedOut := fmt.Errorf("%s did not send ready within %v (--timeout): %w", l.shown, opts.Timeout, ErrReadyTimeout)
	var readyTimer *time.Timer
	if opts.Timeout > 0 {
		readyTimer = time.AfterFunc(opts.Timeout, func() { cancel(timedOut) })
		defer readyTimer.Stop()
	}
	// ended turns the error that ended a read into Run's result.
	ended := func(err error) error {
		switch {
		case ctx.Err() != nil:
			return nil
		case errors.Is(context.Cause(reqCtx), ErrReadyTimeout):
			return timedOut
		}
		return err
	}

	resp, err := open(reqCtx, opts, l.target, l.token())
	if err != nil {
		if cerr, ok := errors.AsType[*ConnectError](err); ok {
			cerr.URL = l.shown
			if cerr.Err == nil {
				return cerr // an answer came, whatever the context did since
			}
		}
		return ended(err)
	}
	defer resp.Body.Close()

	r := sse.NewReader(resp.Body)
	ready := false
	for {
		ev, err := r.Next()
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				return ended(fmt.Errorf("%w: the server closed it without an error event", ErrStreamEnded))
			}
			return ended(fmt.Errorf("%w: %v", ErrStreamEnded, err))
		}
		switch ev.Kind {
		case "ready":
			if ready {
				continue
			}
			ready = true
			if readyTimer != nil && !readyTimer.Stop() {
				// The timer fired as ready arrived: the request is
				// cancelled already.
				return ended(timedOut)
			}
			n := len(opts.Bindings)
			switch {
			case !l.ready:
				fmt.Fprintf(stderr, "listening: %d %s\n", n, plural(n, "binding", "bindings"))
			case l.tokens:
				fmt.Fprintf(stderr, "listening again: %d %s\n", n, plural(n, "binding", "bindings"))
			default:
				fmt.Fprintf(stderr, "warning: listening again without a token (the server does not resume streams): messages may be missing here\n")
			}
			l.ready, l.readyAgain = true, true
		case "message":
			if err := l.w.message(ev.Data); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("write output: %w", err)
			}
			l.received++
			if opts.Count > 0 && l.received >= opts.Count {
				return nil
			}
		case "overflow":
			fmt.Fprintf(stderr, "warning: %s\n", overflowText(ev.Data))
		case "gap":
			fmt.Fprintf(stderr, "warning: %s\n", gapText(ev.Data))
		case "error":
			return &ServerError{Text: errorText(ev.Data)}
		}
		// `ping` and kinds a later server may add are ignored.
		// The event is handled: a reconnection goes on after it.
		if ev.ID != "" {
			l.lastID = ev.ID
			l.tokens = l.tokens || ev.ID != "-"
		}
	}
}

// token returns the Last-Event-ID of the next connection, or "".
func (l *listener) token() string {
	if l.lastID == "-" {
		return ""
	}
	return l.lastID
}

// open sends the request and checks that the answer is an event stream.
// Its errors are *ConnectError, without their URL.
// A lastID that is not "" goes as Last-Event-ID.
func open(ctx context.Context, opts *Options, target, lastID string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, &ConnectError{Err: err}
	}
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	req.Header.Set("Accept", "text/event-stream")
	req.Header.Set("Cache-Control", "no-cache")
	if opts.Token != "" {
		req.Header.Set("Authorization", "Bearer "+opts.Token)
	}
	req.Header.Set("User-Agent", "eventsproxy-listen/"+version.Get().Version)
	client := opts.Client
	if client == nil {
		client = newClient()
	}
	resp, err := client.Do(req)
	if err != nil {
		// The *url.Error repeats the whole URL, bindings and all.
		if uerr, ok := errors.AsType[*url.Error](err); ok {
			err = uerr.Err
		}
		return nil, &ConnectError{Err: err}
	}
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, &ConnectError{
			StatusCode: resp.StatusCode,
			Status:     resp.Status,
			Message:    bodyMessage(resp.Body),
			RetryAfter: resp.Header.Get("Retry-After"),
		}
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "text/event-stream" {
		resp.Body.Close()
		return nil, &ConnectError{
			StatusCode: resp.StatusCode,
			Status:     resp.Status,
			Message:    fmt.Sprintf("not an event stream but %q; is --url an eventsproxy?", resp.Header.Get("Content-Type")),
		}
	}
	return resp, nil
}

// newClient returns the client Run uses when Options has none. A listen
// makes one request, so it keeps no idle connection (and no goroutine)
// behind.
func newClient() *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	t.DisableKeepAlives = true
	return &http.Client{Transport: t}
}

// bodyMessage returns the "message" of a JSON error body, or the start of
// a body that is not JSON, on one line.
func bodyMessage(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, maxErrorBody))
	var v struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &v) == nil && v.Message != "" {
		return clean(v.Message, 500)
	}
	return clean(string(b), 200)
}

// errorText returns the text of an `error` event's data, a JSON string.
func errorText(data []byte) string {
	var s string
	if json.Unmarshal(data, &s) != nil {
		s = string(data)
	}
	return clean(s, 2000)
}

// overflowText returns the warning for an `overflow` event's data,
// {"dropped": N}, or {"dropped": N, "uncounted": true} when the service
// itself fell behind and cannot tell how many were lost.
func overflowText(data []byte) string {
	var v struct {
		Dropped   int  `json:"dropped"`
		Uncounted bool `json:"uncounted"`
	}
	if json.Unmarshal(data, &v) != nil {
		return "the server dropped messages because this client fell behind: " + clean(string(data), 200)
	}
	if v.Uncounted {
		return "messages may be missing: the service fell behind the broker and cannot tell how many"
	}
	return fmt.Sprintf("the server dropped %d %s because this client fell behind",
		v.Dropped, plural(v.Dropped, "message", "messages"))
}

// gapText returns the warning for a `gap` event's data, {"reason": "..."}.
func gapText(data []byte) string {
	var v struct {
		Reason string `json:"reason"`
	}
	reason := clean(string(data), 200)
	if json.Unmarshal(data, &v) == nil && v.Reason != "" {
		reason = clean(v.Reason, 100)
	}
	return "messages may be missing here (gap: " + reason + ")"
}

// displayURL returns target without its query (the long, encoded
// bindings) and password, for messages.
func displayURL(target string) string {
	u, err := url.Parse(target)
	if err != nil {
		return "the server"
	}
	u.RawQuery = ""
	return u.Redacted()
}

func plural(n int, one, many string) string {
	if n == 1 {
		return one
	}
	return many
}
