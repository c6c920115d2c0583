package listen

import (
	"errors"
	"fmt"
)

// Exit codes of `eventsproxy listen`, for scripts; ExitCode maps Run's and
// Load's errors to them.
const (
	// ExitOK: interrupted, or Options.Count messages received.
	ExitOK = 0
	// ExitFailed: the server sent an `error` event, or the stream ended
	// without one.
	ExitFailed = 1
	// ExitUsage: a bad command line.
	ExitUsage = 2
	// ExitConnect: the server could not be reached or did not answer with
	// a 200 event stream.
	ExitConnect = 3
	// ExitTimeout: no `ready` within Options.Timeout.
	ExitTimeout = 4
)

// ErrStreamEnded means that the event stream ended, or broke, before the
// client was done with it, without the server saying why.
var ErrStreamEnded = errors.New("the stream ended unexpectedly")

// ErrReadyTimeout means that the stream was not ready within
// Options.Timeout.
var ErrReadyTimeout = errors.New("the stream was not ready in time")

// ServerError is the text of an `error` event: the server ended the stream
// for the reason it gives, e.g. a binding it refused.
type ServerError struct {
	// Text is the event's data: the JSON string decoded, or the data as it
	// came when it is not a JSON string.
	Text string
}

func (e *ServerError) Error() string {
	return "server error: " + e.Text
}

// ConnectError reports that no event stream could be opened: the server
// could not be reached (Err is set), or it answered with a status other
// than 200 or with something that is not an event stream.
type ConnectError struct {
	// URL is the URL asked for, without its query and password.
	URL string
	// Err is why no answer came; nil when one did.
	Err error
	// StatusCode and Status are the answer's, e.g. 503 and
	// "503 Service Unavailable".
	StatusCode int
	Status     string
	// Message is the "message" of the answer's JSON body, or what was
	// wrong with an answer of status 200; "" when there is none.
	Message string
	// RetryAfter is the answer's Retry-After header, "" when it had none.
	RetryAfter string
}

func (e *ConnectError) Error() string {
	if e.Err != nil {
		return fmt.Sprintf("cannot connect to %s: %v", e.URL, e.Err)
	}
	s := fmt.Sprintf("%s answered %s", e.URL, e.Status)
	if e.Message != "" {
		s += ": " + e.Message
	}
	if e.RetryAfter != "" {
		s += fmt.Sprintf(" (retry after %s s)", e.RetryAfter)
	}
	return s
}

func (e *ConnectError) Unwrap() error { return e.Err }

// ExitCode returns the exit code of `eventsproxy listen` for err, an error
// returned by Load or Run: ExitOK for nil, ExitUsage for a *UsageError,
// ExitConnect for a *ConnectError, ExitTimeout for ErrReadyTimeout, and
// ExitFailed for anything else.
func ExitCode(err error) int {
	switch {
	case err == nil:
		return ExitOK
	case isType[*UsageError](err):
		return ExitUsage
	case errors.Is(err, ErrReadyTimeout):
		return ExitTimeout
	case isType[*ConnectError](err):
		return ExitConnect
	default:
		return ExitFailed
	}
}

func isType[E error](err error) bool {
	_, ok := errors.AsType[E](err)
	return ok
}
