package listen

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/topic"
)

// Help is the text of `eventsproxy listen --help`.
const Help = `Usage: eventsproxy listen --url URL --bind EXCHANGE=PATTERN [--bind ...] [flags]

Connect to a running eventsproxy and print every message that matches the
bindings, as it arrives, until interrupted.

When stdout is not a terminal (a pipe, a file), or with --json, each message
is one line of JSON: the data of the server's "message" event, as sent,
  {"exchange":"...","routingKey":"...","redelivered":false,"routes":[...],"payload":...}
with --properties also "properties" and "headers" (the AMQP properties and
headers table) after "payload".
On a terminal, each message is a one-line summary instead: the time it
arrived, the exchange (shortened: exchange/taskcluster-queue/v1/task-completed
shows as queue/task-completed), the routing key, the number of routes and the
start of the payload, in colour unless --no-color or NO_COLOR is set.

Notes go to stderr: "listening: N bindings" once every binding is in place
(anything published from then on is received), and a warning with the count
when the server dropped messages because this client fell behind; with
--resume, a note for each reconnection.

Flags:
  --url URL                the service's base URL, e.g. http://127.0.0.1:8080
                           or https://tc.example.com; a full
                           .../api/events/v1/connect/ URL works too
  --bind EXCHANGE=PATTERN  an exchange and a routing-key pattern (* is one word,
                           # zero or more words); split at the first "=".
                           Repeat for more bindings; at least one is required
  --token TOKEN            a token (JWT) for a service with access control,
                           sent as Authorization: Bearer; EVENTSPROXY_TOKEN
                           does the same and keeps it out of the process list
                           (eventsproxy token mints one)
  --json                   print JSON lines even on a terminal
  --no-color               no colours on a terminal (NO_COLOR=1 does the same)
  --count N                exit 0 after N messages (default 0: no limit)
  --timeout D              exit 4 unless the stream is ready within D
                           (default 30s; 0 waits for ever)
  --resume                 ask for a resumable stream and reconnect by itself
                           when it breaks once it was ready (a network
                           failure, a server restart), from the last event
                           received: nothing is missed, or a warning on stderr
                           says "messages may be missing here (gap: REASON)"
  --properties             ask for each message's AMQP properties and headers
                           (properties=1): in the JSON lines, and on a
                           terminal the content type after the routes

Exit codes:
  0  interrupted (Ctrl-C, SIGTERM), or --count messages received
  1  the server sent an error event (its text is printed), or the stream
     ended unexpectedly
  2  bad command line
  3  cannot connect, or the server answered with another status than 200
     (the status and the server's message are printed)
  4  the stream was not ready within --timeout

Examples:
  eventsproxy listen --url http://127.0.0.1:8080 --bind 'amq.topic=#'

  eventsproxy listen --url https://tc.example.com \
      --bind 'exchange/taskcluster-queue/v1/task-completed=primary.#' \
      --bind 'exchange/taskcluster-queue/v1/task-failed=primary.#' |
    jq -r '.payload.status.taskId'

  # wait for one message, for a script
  eventsproxy listen --url http://127.0.0.1:8080 --bind 'amq.topic=build.*.done' \
      --count 1 --timeout 10s > message.json
`

// connectPath is the path of the stream endpoint under the service's root.
const connectPath = "/api/events/v1/connect/"

// DefaultTimeout is the Timeout that Load sets when --timeout is absent.
const DefaultTimeout = 30 * time.Second

// Options says what Run connects to and how it writes what it reads.
type Options struct {
	// URL is the service's base URL, or its full connect URL; see
	// ConnectURL.
	URL string
	// Bindings are what the stream asks for; at least one.
	Bindings []binding.Binding
	// JSON writes JSON lines even when Terminal is set.
	JSON bool
	// NoColor leaves colours out of the terminal summary.
	NoColor bool
	// Terminal says that stdout is a terminal: Run then writes summaries
	// rather than JSON lines, unless JSON is set. Load leaves it false; the
	// caller, which holds stdout, sets it.
	Terminal bool
	// Token, when not empty, is sent as Authorization: Bearer.
	Token string
	// Count ends Run after that many messages; zero means no limit.
	Count int
	// Timeout is how long Run waits for the stream's `ready` event, from
	// the start of each request; zero waits for ever.
	Timeout time.Duration
	// Resume opts in to a resumable stream, which Run reconnects by itself
	// (see Run).
	Resume bool
	// Properties asks for messages' properties and headers
	// (properties=1).
	Properties bool
	// Client makes the request; nil means a client of Run's own that keeps
	// no idle connections and honours the HTTP(S)_PROXY variables.
	Client *http.Client

	// now returns the time a message arrived; nil means time.Now.
	now func() time.Time
}

// UsageError reports a bad command line. Its text names the flags at
// fault, one problem a line.
type UsageError struct {
	msg string
}

func (e *UsageError) Error() string { return e.msg }

func usageErrorf(format string, args ...any) *UsageError {
	return &UsageError{msg: fmt.Sprintf(format, args...)}
}

// repeated collects the values of a flag that may be given more than once.
type repeated []string

func (r *repeated) String() string     { return strings.Join(*r, ", ") }
func (r *repeated) Set(s string) error { *r = append(*r, s); return nil }

// Load reads the arguments of `eventsproxy listen` (without the command
// name) and the environment, read through getenv, into Options. It returns
// flag.ErrHelp when the arguments ask for help, which the caller prints
// (Help), and a *UsageError listing everything wrong with them. Load
// writes nothing and may be called concurrently.
func Load(args []string, getenv func(string) string) (*Options, error) {
	o := &Options{}
	fs := flag.NewFlagSet("eventsproxy listen", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var binds repeated
	fs.StringVar(&o.URL, "url", "", "")
	fs.Var(&binds, "bind", "")
	fs.StringVar(&o.Token, "token", getenv("EVENTSPROXY_TOKEN"), "")
	fs.BoolVar(&o.JSON, "json", false, "")
	fs.BoolVar(&o.NoColor, "no-color", false, "")
	fs.IntVar(&o.Count, "count", 0, "")
	fs.BoolVar(&o.Resume, "resume", false, "")
	fs.BoolVar(&o.Properties, "properties", false, "")
	fs.DurationVar(&o.Timeout, "timeout", DefaultTimeout, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &UsageError{msg: err.Error()}
	}
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if fs.NArg() > 0 {
		bad("unexpected arguments %q; every binding needs its own --bind", fs.Args())
	}
	if o.URL == "" {
		bad("--url is required, e.g. --url http://127.0.0.1:8080")
	}
	if len(binds) == 0 {
		bad("at least one --bind EXCHANGE=PATTERN is required, e.g. --bind 'amq.topic=#'")
	}
	seen := map[binding.Binding]bool{}
	for _, s := range binds {
		b, err := ParseBinding(s)
		if err != nil {
			bad("%v", err)
			continue
		}
		// The server counts a repeated binding once; so does the note
		// that says how many are in place.
		if !seen[b] {
			seen[b] = true
			o.Bindings = append(o.Bindings, b)
		}
	}
	if o.URL != "" && len(o.Bindings) > 0 {
		if _, err := ConnectURL(o.URL, o.Bindings); err != nil {
			bad("%v", err)
		}
	}
	if strings.ContainsAny(o.Token, " \t\r\n") {
		bad("--token holds white space; give the token alone")
	}
	if o.Count < 0 {
		bad("--count %d must not be negative", o.Count)
	}
	if o.Timeout < 0 {
		bad("--timeout %v must not be negative", o.Timeout)
	}
	if len(problems) > 0 {
		return nil, &UsageError{msg: strings.Join(problems, "\n")}
	}
	// https://no-color.org: set and not empty. A dumb terminal has no
	// colours either.
	if getenv("NO_COLOR") != "" || getenv("TERM") == "dumb" {
		o.NoColor = true
	}
	return o, nil
}

// ParseBinding reads the value of one --bind flag, EXCHANGE=PATTERN. It
// splits at the first '=': exchange names may hold '/' and other
// punctuation, while a routing-key pattern never holds '='. The pattern is
// checked as the server will check it (topic.Validate); the exchange only
// for being there, since the server alone knows which exchanges exist.
// The error is a *UsageError. ParseBinding may be called concurrently.
func ParseBinding(s string) (binding.Binding, error) {
	exchange, pattern, ok := strings.Cut(s, "=")
	switch {
	case !ok:
		return binding.Binding{}, usageErrorf("--bind %q has no '='; write EXCHANGE=PATTERN, e.g. --bind '%s=#'", s, s)
	case exchange == "":
		return binding.Binding{}, usageErrorf("--bind %q has no exchange before the '='", s)
	}
	if err := topic.Validate(pattern); err != nil {
		return binding.Binding{}, usageErrorf("--bind %q: %v", s, err)
	}
	return binding.Binding{Exchange: exchange, RoutingKeyPattern: pattern}, nil
}

// ConnectURL returns the URL of the event stream of the service at base
// with the bindings bs: base's path followed by /api/events/v1/connect/,
// unless base already ends with that path (with or without the final
// slash), and the query parameter bindings set to the URL-encoded
// {"bindings": [...]} JSON. Other query parameters of base are kept. base
// must be an http:// or https:// URL; the error is a *UsageError.
// ConnectURL may be called concurrently.
func ConnectURL(base string, bs []binding.Binding) (string, error) {
	u, err := url.Parse(base)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", usageErrorf("--url %q is not an http:// or https:// URL, e.g. http://127.0.0.1:8080", base)
	}
	path := strings.TrimSuffix(u.Path, "/")
	if !strings.HasSuffix(path, strings.TrimSuffix(connectPath, "/")) {
		path += strings.TrimSuffix(connectPath, "/")
	}
	u.Path, u.RawPath = path+"/", ""
	u.Fragment, u.RawFragment = "", ""
	q, err := json.Marshal(struct {
		Bindings []binding.Binding `json:"bindings"`
	}{bs})
	if err != nil {
		return "", fmt.Errorf("encode bindings: %w", err)
	}
	values := u.Query()
	values.Set("bindings", string(q))
	u.RawQuery = values.Encode()
	return u.String(), nil
}
