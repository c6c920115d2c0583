package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/broker"
)

const publishHelp = `Usage: eventsproxy publish (--amqp-url URL | --dev-url URL) --exchange EXCHANGE --routing-key KEY [flags] [BODY | -]

Publish one message to an exchange, for trying eventsproxy out and for
tests: to RabbitMQ (--amqp-url), waiting until the broker confirms it, or
into a running "eventsproxy dev" (--dev-url), whose in-process broker has
the generator's exchanges and amq.topic. The body is BODY, or stdin when
BODY is "-" or absent (put -- before a BODY that starts with "-").

Flags:
  --amqp-url URL       the broker, amqp:// or amqps:// (env AMQP_URL)
  --dev-url URL        instead of a broker: the base URL of a running
                       "eventsproxy dev", e.g. http://127.0.0.1:8080
  --exchange NAME      the exchange to publish to; it must exist
  --routing-key KEY    the message's routing key; required ("" is allowed)
  --cc KEY             a CC routing key: RabbitMQ routes the message by it too,
                       and eventsproxy lists those that start with "route." as
                       the message's routes; repeat for more
  --content-type TYPE  the message's content type (default application/json)
  --header NAME=VALUE  a header of the message, a string (split at the first
                       "="); streams that ask with properties=1 see it;
                       repeat for more
  --timeout D          give up unless connected and confirmed within D
                       (default 10s)

Exit codes:
  0  the broker confirmed the message
  1  the broker could not be reached, or refused the message (e.g. the
     exchange does not exist)
  2  bad command line

Examples:
  eventsproxy publish --dev-url http://127.0.0.1:8080 \
      --exchange amq.topic --routing-key a.b --cc route.index.x '{"hello": "world"}'

  eventsproxy publish --amqp-url amqp://guest:guest@127.0.0.1:5672/ \
      --exchange amq.topic --routing-key build.42.done \
      --cc route.index.build.latest --header x-trace=abc '{"build": 42, "state": "done"}'

  export AMQP_URL=amqp://guest:guest@127.0.0.1:5672/
  eventsproxy publish --exchange amq.topic --routing-key log.line \
      --content-type text/plain - < line.txt
`

// maxBody is the largest body publish sends: RabbitMQ's default
// max_message_size.
const maxBody = 128 << 20

// publishOptions is what `eventsproxy publish` was asked to do.
type publishOptions struct {
	amqpURL     string
	devURL      string // instead of amqpURL: a running dev's base URL
	exchange    string
	routingKey  string
	cc          []string
	contentType string
	headers     [][2]string // --header, in order
	timeout     time.Duration
	body        []byte
}

// publish publishes one message on a confirm-mode channel and waits for the
// broker's confirmation.
func publish(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	o, err := loadPublish(args, getenv, stdin, stderr)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, publishHelp)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy publish: %v\nRun 'eventsproxy publish --help' for usage.\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	if o.devURL != "" {
		if err := o.sendDev(ctx); err != nil {
			fmt.Fprintf(stderr, "eventsproxy publish: %v\n", err)
			return 1
		}
		fmt.Fprintf(stderr, "published %d bytes to exchange %q with routing key %q in %s\n", len(o.body), o.exchange, o.routingKey, o.devURL)
		return 0
	}
	unroutable, err := o.send(ctx)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy publish: %v\n", err)
		return 1
	}
	fmt.Fprintf(stderr, "published %d bytes to exchange %q with routing key %q: confirmed\n", len(o.body), o.exchange, o.routingKey)
	if unroutable {
		fmt.Fprintf(stderr, "note: no queue is bound to exchange %q with a pattern matching this message's routing keys, so the broker dropped it\n", o.exchange)
	}
	return 0
}

// loadPublish reads the command line and the body. It returns
// flag.ErrHelp when asked for help, and otherwise an error about the
// command line, which never holds the broker's password.
func loadPublish(args []string, getenv func(string) string, stdin io.Reader, stderr io.Writer) (*publishOptions, error) {
	o := &publishOptions{}
	fs := flag.NewFlagSet("eventsproxy publish", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.amqpURL, "amqp-url", getenv("AMQP_URL"), "")
	fs.StringVar(&o.devURL, "dev-url", "", "")
	fs.StringVar(&o.exchange, "exchange", "", "")
	fs.StringVar(&o.routingKey, "routing-key", "", "")
	fs.Func("cc", "", func(s string) error { o.cc = append(o.cc, s); return nil })
	fs.StringVar(&o.contentType, "content-type", "application/json", "")
	var badHeaders []string
	fs.Func("header", "", func(s string) error {
		name, value, ok := strings.Cut(s, "=")
		switch {
		case !ok || name == "":
			badHeaders = append(badHeaders, fmt.Sprintf("--header %q must be NAME=VALUE", s))
		case len(name) > 255:
			badHeaders = append(badHeaders, fmt.Sprintf("--header name %.20q... is over 255 bytes", name))
		case name == "CC" || name == "BCC":
			badHeaders = append(badHeaders, fmt.Sprintf("--header %s: use --cc for routing keys", name))
		default:
			o.headers = append(o.headers, [2]string{name, value})
		}
		return nil
	})
	fs.DurationVar(&o.timeout, "timeout", 10*time.Second, "")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })

	problems := badHeaders
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	switch u, err := url.Parse(o.amqpURL); {
	case set["dev-url"] && set["amqp-url"]:
		bad("--amqp-url and --dev-url do not go together: publish to RabbitMQ or into a running dev")
	case set["dev-url"]:
		o.amqpURL = "" // AMQP_URL yields to the flag
		if u, err := url.Parse(o.devURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--dev-url %q is not an http:// URL, e.g. http://127.0.0.1:8080", o.devURL)
		}
	case o.amqpURL == "":
		bad("--amqp-url (or AMQP_URL) is required, e.g. amqp://guest:guest@127.0.0.1:5672/, or --dev-url to publish into a running dev")
	case err != nil:
		bad("--amqp-url is not a URL")
	case u.Scheme != "amqp" && u.Scheme != "amqps":
		bad("--amqp-url must start with amqp:// or amqps://, not %q", u.Scheme+"://")
	case u.Host == "":
		bad("--amqp-url %s has no host", broker.Redact(o.amqpURL))
	}
	if o.exchange == "" {
		bad("--exchange is required")
	}
	if !set["routing-key"] {
		bad("--routing-key is required (it may be \"\")")
	}
	if o.timeout <= 0 {
		bad("--timeout %v must be positive", o.timeout)
	}
	if fs.NArg() > 1 {
		bad("one BODY at most, not %d arguments (quote the body, or put flags before it)", fs.NArg())
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "\n"))
	}

	if fs.NArg() == 1 && fs.Arg(0) != "-" {
		o.body = []byte(fs.Arg(0))
		return o, nil
	}
	if stdin == nil {
		return nil, errors.New("no BODY argument and no stdin to read it from")
	}
	if isTerminal(stdin) {
		fmt.Fprintln(stderr, "reading the message body from stdin; end it with Ctrl-D")
	}
	body, err := io.ReadAll(io.LimitReader(stdin, maxBody+1))
	if err != nil {
		return nil, fmt.Errorf("read body from stdin: %w", err)
	}
	if len(body) > maxBody {
		return nil, fmt.Errorf("the body is over %d MiB, more than RabbitMQ accepts by default", maxBody>>20)
	}
	o.body = body
	return o, nil
}

// send publishes the message and waits for the confirm until ctx is done.
// unroutable says that the broker confirmed the message but had no queue
// to route it to.
func (o *publishOptions) send(ctx context.Context) (unroutable bool, err error) {
	where := broker.Redact(o.amqpURL)
	timeout := o.timeout
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	conn, err := amqp.DialConfig(o.amqpURL, amqp.Config{
		Properties: amqp.Table{"connection_name": "eventsproxy publish"},
		Dial:       amqp.DefaultDial(timeout),
	})
	if err != nil {
		// The library's text names the address at most, never the password.
		return false, fmt.Errorf("cannot connect to %s: %v", where, err)
	}
	defer conn.Close()
	ch, err := conn.Channel()
	if err != nil {
		return false, fmt.Errorf("open channel on %s: %v", where, err)
	}
	// Both buffered: the library reports into them while we wait on the
	// confirm, and a full channel would stall it.
	closed := ch.NotifyClose(make(chan *amqp.Error, 1))
	returned := ch.NotifyReturn(make(chan amqp.Return, 1))
	if err := ch.Confirm(false); err != nil {
		return false, fmt.Errorf("confirm mode on %s: %v", where, err)
	}
	msg := amqp.Publishing{
		ContentType:  o.contentType,
		Body:         o.body,
		Timestamp:    time.Now(),
		DeliveryMode: amqp.Transient,
	}
	if len(o.cc) > 0 || len(o.headers) > 0 {
		msg.Headers = amqp.Table{}
	}
	for _, h := range o.headers {
		msg.Headers[h[0]] = h[1]
	}
	if len(o.cc) > 0 {
		cc := make([]any, len(o.cc))
		for i, k := range o.cc {
			cc[i] = k
		}
		msg.Headers["CC"] = cc
	}
	// Mandatory, so that the broker tells us (before its confirm) when no
	// queue took the message.
	conf, err := ch.PublishWithDeferredConfirmWithContext(ctx, o.exchange, o.routingKey, true, false, msg)
	if err != nil {
		return false, fmt.Errorf("publish to exchange %q: %v", o.exchange, err)
	}
	acked, err := conf.WaitContext(ctx)
	switch {
	case err != nil:
		return false, fmt.Errorf("exchange %q on %s: no confirm from the broker: %v", o.exchange, where, err)
	case acked:
		select {
		case <-returned:
			return true, nil
		default:
			return false, nil
		}
	}
	// A refusal closes the channel, and the library reports the close
	// before it nacks the pending confirms.
	select {
	case aerr, ok := <-closed:
		if ok && aerr != nil {
			return false, o.refusal(aerr, where)
		}
	default:
	}
	return false, fmt.Errorf("the broker at %s refused the message to exchange %q (nack)", where, o.exchange)
}

// refusal explains the broker's closing of the channel.
func (o *publishOptions) refusal(aerr *amqp.Error, where string) error {
	switch aerr.Code {
	case amqp.NotFound:
		return fmt.Errorf("exchange %q does not exist on %s (declare it first, or check its name)", o.exchange, where)
	case amqp.AccessRefused:
		return fmt.Errorf("the broker at %s refused this user access to exchange %q", where, o.exchange)
	}
	return fmt.Errorf("the broker at %s refused the message to exchange %q: %v", where, o.exchange, aerr)
}
