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
// Run only reads opts, so it may be called concurrently with the same
// Options. It does not close stdout or stderr, and leaves no connection
// open behind it.
func Run(ctx context.Context, opts *Options, stdout, stderr io.Writer) error {
	target, err := ConnectURL(opts.URL, opts.Bindings)
	if err != nil {
		return err
	}
	shown := displayURL(target)

	// The ready timer cancels the request with a cause of its own, so that
	// a stream that is slow to bind and a server that does not answer at
	// all both end as a timeout, told apart from an interrupt.
	reqCtx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	timedOut := fmt.Errorf("%s did not send ready within %v (--timeout): %w", shown, opts.Timeout, ErrReadyTimeout)
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

	resp, err := open(reqCtx, opts, target)
	if err != nil {
		if cerr, ok := errors.AsType[*ConnectError](err); ok {
			cerr.URL = shown
			if cerr.Err == nil {
				return cerr // an answer came, whatever the context did since
			}
		}
		return ended(err)
	}
	defer resp.Body.Close()

	w := newWriter(opts, stdout)
	r := sse.NewReader(resp.Body)
	ready, received := false, 0
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
			fmt.Fprintf(stderr, "listening: %d %s\n", len(opts.Bindings), plural(len(opts.Bindings), "binding", "bindings"))
		case "message":
			if err := w.message(ev.Data); err != nil {
				if ctx.Err() != nil {
					return nil
				}
				return fmt.Errorf("write output: %w", err)
			}
			received++
			if opts.Count > 0 && received >= opts.Count {
				return nil
			}
		case "overflow":
			fmt.Fprintf(stderr, "warning: %s\n", overflowText(ev.Data))
		case "error":
			return &ServerError{Text: errorText(ev.Data)}
		}
		// `ping` and kinds a later server may add are ignored.
	}
}

// open sends the request and checks that the answer is an event stream.
// Its errors are *ConnectError, without their URL.
func open(ctx context.Context, opts *Options, target string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, target, nil)
	if err != nil {
		return nil, &ConnectError{Err: err}
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
// {"dropped": N}.
func overflowText(data []byte) string {
	var v struct {
		Dropped int `json:"dropped"`
	}
	if json.Unmarshal(data, &v) != nil {
		return "the server dropped messages because this client fell behind: " + clean(string(data), 200)
	}
	return fmt.Sprintf("the server dropped %d %s because this client fell behind",
		v.Dropped, plural(v.Dropped, "message", "messages"))
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
