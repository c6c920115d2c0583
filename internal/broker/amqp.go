package broker

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/amqpflow"
	"eventsproxy/internal/randomname"
)

// AMQPConfig says how to reach RabbitMQ and how to shape our queue on it.
type AMQPConfig struct {
	// URL is the amqp:// or amqps:// URL of the broker, or a
	// comma-separated list of the URLs of a cluster's nodes: each
	// connection goes to one of them (see Dial). Required.
	URL string
	// ConnectionName is shown in the broker's management UI; default
	// "eventsproxy".
	ConnectionName string
	// QueuePrefix starts the name of our queue; a random suffix follows.
	// Pulse requires "queue/<user>/"; default "eventsproxy/".
	QueuePrefix string
	// QueueMaxLength caps the messages waiting in our queue, so the broker
	// is protected if the process stalls (oldest dropped). Zero: no cap.
	QueueMaxLength int
	// QueueMaxBytes caps the bytes waiting in our queue. Zero: no cap.
	QueueMaxBytes int
	// DroppedMaxLength and DroppedMaxBytes cap the queue of the messages
	// that the broker dropped from our queue (see Dial); defaults
	// QueueMaxLength and QueueMaxBytes.
	DroppedMaxLength, DroppedMaxBytes int
}

// maxBacklog is how many deliveries may wait in the AMQP client for the
// router before the connection stops reading (see amqpflow).
const maxBacklog = 1000

// AMQP returns a Dialer for RabbitMQ.
func AMQP(cfg AMQPConfig) Dialer {
	if cfg.ConnectionName == "" {
		cfg.ConnectionName = "eventsproxy"
	}
	if cfg.QueuePrefix == "" {
		cfg.QueuePrefix = "eventsproxy/"
	}
	return &amqpDialer{cfg: cfg, nodes: newEndpoints(cfg.URL)}
}

type amqpDialer struct {
	cfg   AMQPConfig
	nodes *endpoints
}

func (d *amqpDialer) String() string { return d.nodes.String() }

// Dial connects to one of the broker's nodes, declares our queue
// (exclusive, auto-delete, with its length limits) and its side queues
// (see setUp), starts consuming them, and opens the control channel. With several nodes it tries each once,
// starting with the one after the node of the last connection, so a node
// that was just lost is tried last; the caller's backoff spaces rounds.
func (d *amqpDialer) Dial(ctx context.Context) (Conn, error) {
	var errs []error
	for _, u := range d.nodes.order() {
		c, err := d.dial(ctx, u)
		if err == nil {
			d.nodes.connected(u)
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}

// dial connects to the node at rawURL.
func (d *amqpDialer) dial(ctx context.Context, rawURL string) (Conn, error) {
	timeout := 10 * time.Second
	if deadline, ok := ctx.Deadline(); ok {
		timeout = time.Until(deadline)
	}
	uri, err := amqp.ParseURI(rawURL)
	if err != nil {
		return nil, fmt.Errorf("dial %s: %w", Redact(rawURL), err)
	}
	// The connection's reads go through an amqpflow.Conn, which must see AMQP
	// frames, not TLS records: for amqps we speak TLS ourselves, under
	// it, and give the client an amqp URL so that it does not again.
	var tlsConfig *tls.Config
	if uri.Scheme == "amqps" {
		if tlsConfig, err = tlsConfigFor(uri); err != nil {
			return nil, fmt.Errorf("dial %s: %w", Redact(rawURL), err)
		}
	}
	addr := net.JoinHostPort(uri.Host, strconv.Itoa(uri.Port))
	u, _ := url.Parse(rawURL) // ParseURI accepted it
	u.Scheme = "amqp"
	var flow *amqpflow.Conn
	conn, err := amqp.DialConfig(u.String(), amqp.Config{
		Heartbeat:  10 * time.Second,
		Locale:     "en_US",
		Properties: amqp.Table{"connection_name": d.cfg.ConnectionName},
		Dial: func(network, _ string) (net.Conn, error) {
			// DefaultDial sets a deadline for the handshakes; the client
			// clears it once the connection is open.
			nc, err := amqp.DefaultDial(timeout)(network, addr)
			if err != nil {
				return nil, err
			}
			if tlsConfig != nil {
				tc := tls.Client(nc, tlsConfig)
				if err := tc.HandshakeContext(ctx); err != nil {
					_ = nc.Close()
					return nil, err
				}
				nc = tc
			}
			flow = amqpflow.New(nc, maxBacklog)
			return flow, nil
		},
	})
	if err != nil {
		// RabbitMQ answers a wrong password or an unknown user with 403,
		// or by dropping the connection, which the library reports as
		// ErrCredentials, a 403 too; ErrVhost shares the code.
		if aerr, ok := errors.AsType[*amqp.Error](err); ok && aerr.Code == amqp.AccessRefused && !errors.Is(err, amqp.ErrVhost) {
			return nil, fmt.Errorf("dial %s: %w of user %q (wrong password, or no such user): %v", Redact(rawURL), ErrLoginRefused, uri.Username, err)
		}
		return nil, fmt.Errorf("dial %s: %w", Redact(rawURL), err)
	}
	c := &amqpConn{conn: conn, flow: flow, closed: conn.NotifyClose(make(chan *amqp.Error, 1)), checkEvery: dropCheckEvery}
	if err := c.setUp(&d.cfg); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("set up queue: %w", err)
	}
	return c, nil
}

// tlsConfigFor returns the TLS configuration that amqp091-go would use for
// uri: the system's roots or the URI's cacertfile, its certfile and keyfile
// as the client's certificate, and its server_name_indication or host as
// the name to verify.
func tlsConfigFor(uri amqp.URI) (*tls.Config, error) {
	cfg := &tls.Config{ServerName: uri.ServerName, MinVersion: tls.VersionTLS12}
	if cfg.ServerName == "" {
		cfg.ServerName = uri.Host
	}
	if uri.CACertFile != "" {
		pem, err := os.ReadFile(uri.CACertFile)
		if err != nil {
			return nil, fmt.Errorf("read CA certificate: %w", err)
		}
		cfg.RootCAs = x509.NewCertPool()
		if !cfg.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("no certificate in %s", uri.CACertFile)
		}
	}
	if uri.CertFile != "" && uri.KeyFile != "" {
		cert, err := tls.LoadX509KeyPair(uri.CertFile, uri.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("load client certificate: %w", err)
		}
		cfg.Certificates = []tls.Certificate{cert}
	}
	return cfg, nil
}

type amqpConn struct {
	conn   *amqp.Connection
	flow   *amqpflow.Conn
	closed chan *amqp.Error
	queue  string
	// The deliveries of our queue and of its lost queue (see setUp).
	deliveries, lost <-chan amqp.Delivery
	// consume is the channel that consumes them and gets what the dropped
	// queue holds; only the consuming goroutine uses it after setUp.
	consume *amqp.Channel
	dropped string // the dropped queue's name
	batch   []amqp.Delivery
	arrived []time.Time // when each of batch was taken
	// checked is when the last drop check was sent; checkEvery is
	// dropCheckEvery but in tests; hold times the wait for it.
	checked    time.Time
	checkEvery time.Duration
	hold       *time.Timer

	ctrlMu    sync.Mutex // held by Bind and Unbind, so ctrl can be replaced
	ctrl      *amqp.Channel
	ctrlSince time.Time // when ctrl was opened

	types exchangeTypes // exchanges known to be topic exchanges

	// wantProps counts the subscriptions that ask for properties: while
	// it is above 0, messages carry them (see PropertyTaker). Nil (never
	// told, as behind a wrapper that hides TakeProperties): they always do.
	wantProps *atomic.Int32
}

// TakeProperties implements PropertyTaker.
func (c *amqpConn) TakeProperties(wanted *atomic.Int32) { c.wantProps = wanted }

// The suffixes of the names of our queue's two side queues.
const (
	droppedSuffix = "/dropped"
	lostSuffix    = "/lost"
)

// QueuesPerConnection is how many queues an AMQP connection holds on the
// broker: its queue and the two side queues named after it (see setUp).
const QueuesPerConnection = 3

// IsSideQueue reports whether name is that of one of the side queues that
// a connection holds beside its queue.
func IsSideQueue(name string) bool {
	return strings.HasSuffix(name, droppedSuffix) || strings.HasSuffix(name, lostSuffix)
}

// setUp declares our queue and its two side queues, all exclusive and
// auto-delete, and consumes them. RabbitMQ drops messages from the head of
// our queue when it is full (its length limits, or an operator policy's)
// and when they expire (a policy's message TTL); it dead-letters each, by
// the default exchange, to the dropped queue, which keeps the original
// exchange and routing keys in the x-death header: the router counts the
// drop for every stream that would have had the message (see Consume for
// when). The dropped queue is capped too; what it drops in turn goes to the lost queue, which
// keeps the newest one: a message there says that drops went uncounted.
// The default exchange needs no permission, and the names share our
// queue's prefix, so nothing else is asked of the broker.
func (c *amqpConn) setUp(cfg *AMQPConfig) error {
	consume, err := c.conn.Channel()
	if err != nil {
		return err
	}
	name := randomname.New(cfg.QueuePrefix)
	lost, err := consume.QueueDeclare(name+lostSuffix, false, true, true, false, amqp.Table{"x-max-length": int64(1)})
	if err != nil {
		return err
	}
	args := amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": lost.Name}
	maxLength, maxBytes := cfg.DroppedMaxLength, cfg.DroppedMaxBytes
	if maxLength == 0 {
		maxLength = cfg.QueueMaxLength
	}
	if maxBytes == 0 {
		maxBytes = cfg.QueueMaxBytes
	}
	capQueue(args, maxLength, maxBytes)
	dropped, err := consume.QueueDeclare(name+droppedSuffix, false, true, true, false, args)
	if err != nil {
		return err
	}
	args = amqp.Table{"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dropped.Name}
	capQueue(args, cfg.QueueMaxLength, cfg.QueueMaxBytes)
	q, err := consume.QueueDeclare(name, false, true, true, false, args)
	if err != nil {
		return err
	}
	// Auto-ack: our queues are exclusive and go with the connection, so
	// an ack would guard nothing; amqpflow bounds what waits in the
	// process.
	if c.lost, err = consume.Consume(lost.Name, "", true, true, false, false, nil); err != nil {
		return err
	}
	if c.deliveries, err = consume.Consume(q.Name, "", true, true, false, false, nil); err != nil {
		return err
	}
	c.queue, c.dropped, c.consume = q.Name, dropped.Name, consume
	// Binds go on a channel of their own: a failed bind closes the channel
	// that asked, and that must never be the one that consumes.
	c.ctrl, err = c.conn.Channel()
	c.ctrlSince = time.Now()
	return err
}

// ctrlRenewEvery is how long a control channel serves before the next
// operation opens another: RabbitMQ remembers a channel's last dozen topic
// permission answers for as long as it lives, so a re-bind on an old
// channel would not see a permission withdrawn (see rebind.go). Tests
// shorten it.
var ctrlRenewEvery = DefaultRebindPeriod

// capQueue adds the length limits to a queue's arguments; zero is no cap.
func capQueue(args amqp.Table, maxLength, maxBytes int) {
	if maxLength > 0 {
		args["x-max-length"] = int64(maxLength)
	}
	if maxBytes > 0 {
		args["x-max-length-bytes"] = int64(maxBytes)
	}
}

func (c *amqpConn) Queue() string { return c.queue }

// Bind binds the queue, once exchange is known to be a topic exchange
// (see checkTopic): the process routes with topic rules only.
func (c *amqpConn) Bind(exchange, pattern string) error {
	if err := c.checkTopic(exchange); err != nil {
		return err
	}
	err := c.control(func(ch *amqp.Channel) error {
		return ch.QueueBind(c.queue, pattern, exchange, false, nil)
	})
	if errors.Is(err, ErrExchangeNotFound) {
		// It may come back with another type.
		c.types.set(exchange, false)
	}
	return err
}

func (c *amqpConn) Unbind(exchange, pattern string) error {
	return c.control(func(ch *amqp.Channel) error {
		return ch.QueueUnbind(c.queue, pattern, exchange, nil)
	})
}

// control runs op on the control channel and, when the broker closed the
// channel over a refusal, opens another for the next operation.
func (c *amqpConn) control(op func(*amqp.Channel) error) error {
	c.ctrlMu.Lock()
	defer c.ctrlMu.Unlock()
	if time.Since(c.ctrlSince) >= ctrlRenewEvery {
		if ch, err := c.conn.Channel(); err == nil {
			_ = c.ctrl.Close()
			c.ctrl, c.ctrlSince = ch, time.Now()
		}
	}
	err := op(c.ctrl)
	if err == nil {
		return nil
	}
	err = classify(err)
	if c.ctrl.IsClosed() && !c.conn.IsClosed() {
		ch, cerr := c.conn.Channel()
		if cerr != nil {
			// Without a control channel this connection is of no use.
			_ = c.Close()
			return errors.Join(err, fmt.Errorf("reopen control channel: %w", cerr))
		}
		c.ctrl, c.ctrlSince = ch, time.Now()
	}
	return err
}

// classify wraps a broker's refusal in our sentinel errors.
func classify(err error) error {
	var aerr *amqp.Error
	if errors.As(err, &aerr) {
		switch aerr.Code {
		case amqp.NotFound:
			return fmt.Errorf("%w: %v", ErrExchangeNotFound, err)
		case amqp.AccessRefused:
			return fmt.Errorf("%w: %v", ErrAccessRefused, err)
		}
	}
	return err
}

// maxBatch bounds the deliveries that Consume takes before it routes them.
const maxBatch = 256

// dropCheckEvery is the least time between two drop checks (see Consume).
// A check costs a basic.get round trip, about 30-40 µs of our CPU and as
// much of the broker's, and batches are nearly always one delivery when
// the broker is the slower side: checking per batch costs a round trip per
// message. Holding a batch until dropCheckEvery has passed since the last
// check makes one check cover every delivery of a busy flow that arrives
// meanwhile (up to maxBatch), at the price of up to dropCheckEvery of
// latency for those deliveries; a delivery that arrives when the last
// check is older than that is checked for and routed at once.
const dropCheckEvery = time.Millisecond

// Consume routes the deliveries of our queue, in batches: before each
// batch it takes what the dropped queue holds (basic.get until it is
// empty), so that a stream counts every drop of a message that came
// before a message of the batch before it gets that message. That holds
// because RabbitMQ dead-letters a message it drops before it delivers the
// next one, and the two queues live on one node, in processes that take
// their requests in order: a basic.get sent after a delivery arrived finds
// every copy dead-lettered before that delivery was sent. So a delivery is
// routed only after a check that was sent after the delivery arrived. The
// checks are at least checkEvery apart: a batch whose first delivery comes
// sooner after the last check waits, taking what else arrives, until then
// (see takeBatch); so under a busy flow a check covers many deliveries,
// and a delivery waits at most checkEvery for its check. What the lost
// queue brings, an uncounted loss, is routed as soon as it comes.
func (c *amqpConn) Consume(handle func(*Message)) error {
	var err error
	for err == nil {
		var ok bool
		if ok, err = c.takeBatch(handle); !ok {
			break
		}
		if err == nil {
			c.checked = time.Now()
			err = c.takeDropped(handle)
		}
		props := c.wantProps == nil || c.wantProps.Load() > 0
		for i := range c.batch {
			m := messageFromDelivery(&c.batch[i], c.arrived[i])
			if props {
				m.Props = propertiesFromDelivery(&c.batch[i])
			}
			handle(m)
			c.batch[i] = amqp.Delivery{}
		}
	}
	if err != nil && !c.conn.IsClosed() {
		_ = c.Close()
		return fmt.Errorf("%w: %v", ErrConnectionLost, err)
	}
	select {
	case aerr, ok := <-c.closed:
		if ok && aerr != nil {
			return fmt.Errorf("%w: %v", ErrConnectionLost, aerr)
		}
	default:
		if !c.conn.IsClosed() {
			// The broker cancelled a consumer (a queue deleted): this
			// connection cannot serve anyone any more.
			_ = c.Close()
			return fmt.Errorf("%w: consumer cancelled by the broker", ErrConnectionLost)
		}
	}
	return ErrConnectionLost
}

// tookLost routes what one message of the lost queue means: a loss that
// nobody can count.
func (c *amqpConn) tookLost(handle func(*Message)) {
	c.flow.Took()
	handle(&Message{Received: time.Now(), drop: dropUncounted})
}

// takeBatch waits for deliveries of our queue and puts them in c.batch, up
// to maxBatch: those that wait and, until checkEvery has passed since the
// last drop check, those that arrive. An uncounted loss from the lost
// queue is routed meanwhile. ok is false once a consumer is gone.
func (c *amqpConn) takeBatch(handle func(*Message)) (ok bool, err error) {
	c.batch, c.arrived = c.batch[:0], c.arrived[:0]
	for len(c.batch) == 0 {
		select {
		case _, ok := <-c.lost:
			if !ok {
				return false, nil
			}
			c.tookLost(handle)
		case d, ok := <-c.deliveries:
			if !ok {
				return false, nil
			}
			c.took(d, time.Now())
		}
	}
	now := c.arrived[0]
waiting:
	for len(c.batch) < maxBatch {
		select {
		case d, ok := <-c.deliveries:
			if !ok {
				return false, nil
			}
			c.took(d, now)
		default:
			break waiting
		}
	}
	wait := c.checkEvery - now.Sub(c.checked)
	if wait <= 0 || len(c.batch) >= maxBatch {
		return true, nil
	}
	if c.hold == nil {
		c.hold = time.NewTimer(wait)
	} else {
		c.hold.Reset(wait)
	}
	defer c.hold.Stop()
	for len(c.batch) < maxBatch {
		select {
		case _, ok := <-c.lost:
			if !ok {
				return false, nil
			}
			c.tookLost(handle)
		case d, ok := <-c.deliveries:
			if !ok {
				return false, nil
			}
			c.took(d, time.Now())
		case <-c.hold.C:
			return true, nil
		}
	}
	return true, nil
}

// took adds d, taken at at, to the batch.
func (c *amqpConn) took(d amqp.Delivery, at time.Time) {
	c.flow.Took()
	c.batch = append(c.batch, d)
	c.arrived = append(c.arrived, at)
}

// takeDropped routes what the dropped queue holds when it is first asked:
// no more than the first answer's count, so that a broker dropping faster
// than one round trip a message cannot keep the reading past amqpflow's
// bound for long. What is dropped meanwhile was behind the batch being
// routed, and is taken before the next. The broker's answers may come
// behind more deliveries than amqpflow lets wait, so reading goes on
// meanwhile.
func (c *amqpConn) takeDropped(handle func(*Message)) error {
	c.flow.Lend()
	defer c.flow.Return()
	for left, first := 1, true; left > 0; left, first = left-1, false {
		d, ok, err := c.consume.Get(c.dropped, true)
		if err != nil {
			return fmt.Errorf("get from %s: %w", c.dropped, err)
		}
		if !ok {
			return nil
		}
		if first {
			left += int(d.MessageCount) // what the broker had behind it
		}
		handle(deadLetter(&d, c.queue, time.Now()))
	}
	return nil
}

// Close closes the connection. Its reads stop waiting for the router
// first: closing needs the broker's answer, which may sit behind a full
// backlog that nobody drains any more.
func (c *amqpConn) Close() error {
	c.flow.Release()
	err := c.conn.Close()
	if errors.Is(err, amqp.ErrClosed) {
		return nil
	}
	return err
}
