package membroker

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/topic"
)

// DefaultMaxLength is how many messages a queue holds before it drops its
// oldest: the default of `serve`'s --queue-max-length.
const DefaultMaxLength = 10000

// Broker is an in-process broker of topic exchanges. All its methods, and
// those of the connections it dials, are safe for concurrent use. It starts
// no goroutines.
type Broker struct {
	maxLength int // messages per queue; tests in this package lower it

	// mu guards exchanges, conns and the bindings, and is held for the
	// whole of a Publish, so that every queue sees one global order.
	mu        sync.Mutex
	exchanges map[string]*exchange
	conns     map[*conn]struct{}
	queues    uint64 // queues ever declared, for unique names
}

// exchange is a topic exchange: its bindings by queue, then by pattern.
type exchange struct {
	bindings map[*conn]map[string]*topic.Pattern
}

// message is one published message, shared read-only by every queue it is
// routed to.
type message struct {
	exchange, routingKey string
	cc                   []string
	body                 []byte
	// props are the message's properties and headers (CC among them,
	// as RabbitMQ delivers it); nil for a message that has none.
	props *broker.Properties
}

// New returns a broker without exchanges.
func New() *Broker {
	return &Broker{
		maxLength: DefaultMaxLength,
		exchanges: make(map[string]*exchange),
		conns:     make(map[*conn]struct{}),
	}
}

// String describes the broker for logs.
func (b *Broker) String() string { return "in-process broker" }

// DeclareExchange creates the topic exchange name unless it exists.
func (b *Broker) DeclareExchange(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.exchanges[name] == nil {
		b.exchanges[name] = &exchange{bindings: make(map[*conn]map[string]*topic.Pattern)}
	}
}

// DeleteExchange removes the exchange name and every binding to it, as
// RabbitMQ does; a later exchange of the same name starts without bindings.
func (b *Broker) DeleteExchange(name string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.exchanges, name)
}

// Publish routes a message to every queue that has a binding on exchange
// matching routingKey or one of the cc keys; each such queue gets it once.
// It returns an error wrapping broker.ErrExchangeNotFound when the exchange
// does not exist. Publish copies cc and body, which the caller may reuse.
func (b *Broker) Publish(exchange, routingKey string, cc []string, body []byte) error {
	return b.PublishWith(exchange, routingKey, cc, body, nil)
}

// PublishWith is Publish with properties and headers p (nil: none), which
// subscriptions that ask for them get (broker.SubscribeOptions.Properties):
// a copy of p, with the CC header of the cc keys, as RabbitMQ delivers it
// (a CC header in p gives way). The caller must not modify p's headers
// afterwards.
func (b *Broker) PublishWith(exchange, routingKey string, cc []string, body []byte, p *broker.Properties) error {
	if p != nil {
		p = p.Clone()
		if len(cc) > 0 {
			h := make(amqp.Table, len(p.Headers)+1)
			maps.Copy(h, p.Headers)
			h["CC"] = ccHeader(cc)
			p.Headers = h
		}
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	ex := b.exchanges[exchange]
	if ex == nil {
		return fmt.Errorf("publish to exchange %q: %w", exchange, broker.ErrExchangeNotFound)
	}
	if len(ex.bindings) == 0 {
		return nil
	}
	m := &message{exchange: exchange, routingKey: routingKey, cc: slices.Clone(cc), body: bytes.Clone(body), props: p}
	keys := make([]topic.Key, 0, 1+len(cc))
	keys = append(keys, topic.SplitKey(routingKey))
	for _, k := range cc {
		keys = append(keys, topic.SplitKey(k))
	}
	for c, patterns := range ex.bindings {
		if matchAny(patterns, keys) {
			c.enqueue(m, b.maxLength)
		}
	}
	return nil
}

func matchAny(patterns map[string]*topic.Pattern, keys []topic.Key) bool {
	for _, p := range patterns {
		for _, k := range keys {
			if p.Match(k) {
				return true
			}
		}
	}
	return false
}

// Dial opens a connection with a queue of its own, bound to nothing. It
// implements broker.Dialer.
func (b *Broker) Dial(ctx context.Context) (broker.Conn, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("dial %s: %w", b, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.queues++
	c := &conn{
		b:     b,
		queue: fmt.Sprintf("in-process/queue-%d", b.queues),
		wake:  make(chan struct{}, 1),
		done:  make(chan struct{}),
	}
	b.conns[c] = struct{}{}
	return c, nil
}

// Disconnect ends every open connection as a lost broker connection would:
// their queues and bindings go, and Consume returns an error wrapping
// broker.ErrConnectionLost. The broker itself stays up; new connections
// may be dialled at once.
func (b *Broker) Disconnect() {
	b.mu.Lock()
	conns := make([]*conn, 0, len(b.conns))
	for c := range b.conns {
		conns = append(conns, c)
	}
	b.mu.Unlock()
	for _, c := range conns {
		c.end(fmt.Errorf("%w: %s disconnected", broker.ErrConnectionLost, b))
	}
}

// QueueBindings returns the bindings of the queue named queue, sorted by
// exchange and pattern; nil when there is no such queue. It is the
// broker's own view, as RabbitMQ's management API gives it for a queue.
func (b *Broker) QueueBindings(queue string) []binding.Binding {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []binding.Binding
	for c := range b.conns {
		if c.queue != queue {
			continue
		}
		for name, ex := range b.exchanges {
			for pattern := range ex.bindings[c] {
				out = append(out, binding.Binding{Exchange: name, RoutingKeyPattern: pattern})
			}
		}
	}
	slices.SortFunc(out, func(x, y binding.Binding) int {
		if c := strings.Compare(x.Exchange, y.Exchange); c != 0 {
			return c
		}
		return strings.Compare(x.RoutingKeyPattern, y.RoutingKeyPattern)
	})
	return out
}

// conn is one connection and its queue. Its bindings live in the broker's
// exchanges, under the broker's lock; its queue under its own lock, which
// is taken inside the broker's (never the other way round).
type conn struct {
	b     *Broker
	queue string

	// wake has one slot: an enqueue that finds it full knows that Consume
	// has a wake-up pending and will see the new message.
	wake chan struct{}
	done chan struct{} // closed when the connection has ended

	// wantProps counts the subscriptions that ask for properties: while
	// it is above 0, messages carry them (broker.PropertyTaker). Nil
	// (never told, as behind a wrapper that hides TakeProperties): they
	// always do.
	wantProps *atomic.Int32

	mu      sync.Mutex
	msgs    []*message // oldest first
	dropped int        // dropped from a full queue, over the queue's life
	err     error      // why the connection ended; set with done closed
}

func (c *conn) Queue() string { return c.queue }

// TakeProperties implements broker.PropertyTaker.
func (c *conn) TakeProperties(wanted *atomic.Int32) { c.wantProps = wanted }

// properties returns m's properties for a message of its own.
func (m *message) properties() *broker.Properties {
	if m.props != nil {
		return m.props.Clone()
	}
	p := &broker.Properties{}
	if len(m.cc) > 0 {
		p.Headers = amqp.Table{"CC": ccHeader(m.cc)}
	}
	return p
}

// ccHeader is the CC header of keys, as a client library decodes it.
func ccHeader(keys []string) []any {
	a := make([]any, len(keys))
	for i, k := range keys {
		a[i] = k
	}
	return a
}

// Bind binds the queue to exchange with pattern; binding twice is a no-op.
// pattern must be one that topic.Validate accepts (RabbitMQ would take "a*"
// as a literal word; eventsproxy never asks for it).
// An unknown exchange returns an error wrapping broker.ErrExchangeNotFound
// and leaves the connection usable, unlike RabbitMQ's closed channel.
func (c *conn) Bind(exchange, pattern string) error {
	p, err := topic.Compile(pattern)
	if err != nil {
		return fmt.Errorf("bind %q: %w", pattern, err)
	}
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if err := c.ended(); err != nil {
		return fmt.Errorf("bind %q: %w", pattern, err)
	}
	ex := c.b.exchanges[exchange]
	if ex == nil {
		return fmt.Errorf("bind to exchange %q: %w", exchange, broker.ErrExchangeNotFound)
	}
	patterns := ex.bindings[c]
	if patterns == nil {
		patterns = make(map[string]*topic.Pattern)
		ex.bindings[c] = patterns
	}
	patterns[pattern] = p
	return nil
}

// Unbind removes a binding. As with RabbitMQ, removing a binding or an
// exchange that does not exist is not an error.
func (c *conn) Unbind(exchange, pattern string) error {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	if err := c.ended(); err != nil {
		return fmt.Errorf("unbind %q: %w", pattern, err)
	}
	ex := c.b.exchanges[exchange]
	if ex == nil {
		return nil
	}
	delete(ex.bindings[c], pattern)
	if len(ex.bindings[c]) == 0 {
		delete(ex.bindings, c)
	}
	return nil
}

// Consume hands the queue's messages to handle, in order, until the
// connection ends; it returns an error wrapping broker.ErrConnectionLost,
// whether Close or Disconnect ended it. Messages still queued then are lost,
// as unacknowledged deliveries are when a connection goes.
func (c *conn) Consume(handle func(*broker.Message)) error {
	var batch []*message
	for {
		select {
		case <-c.done:
			return c.ended()
		case <-c.wake:
		}
		c.mu.Lock()
		batch, c.msgs = c.msgs, batch[:0]
		c.mu.Unlock()
		for i, m := range batch {
			if err := c.ended(); err != nil {
				return err
			}
			msg := &broker.Message{
				Exchange:   m.exchange,
				RoutingKey: m.routingKey,
				CC:         m.cc,
				Body:       m.body,
				Received:   time.Now(),
			}
			if c.wantProps == nil || c.wantProps.Load() > 0 {
				msg.Props = m.properties()
			}
			handle(msg)
			batch[i] = nil
		}
	}
}

// Close ends the connection; its queue and bindings go with it. It is
// idempotent and always returns nil.
func (c *conn) Close() error {
	c.end(fmt.Errorf("%w: connection closed", broker.ErrConnectionLost))
	return nil
}

// end marks the connection ended with cause and removes its bindings and
// queue from the broker, once. Both happen under the broker's lock, so that
// no Bind can slip in between.
func (c *conn) end(cause error) {
	c.b.mu.Lock()
	defer c.b.mu.Unlock()
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	c.err = cause
	c.msgs = nil
	close(c.done)
	c.mu.Unlock()
	delete(c.b.conns, c)
	for _, ex := range c.b.exchanges {
		delete(ex.bindings, c)
	}
}

// ended returns why the connection ended, or nil while it is open.
func (c *conn) ended() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.err
}

// enqueue appends m to the queue, dropping the oldest message when the
// queue holds maxLength already. The caller holds the broker's lock.
func (c *conn) enqueue(m *message, maxLength int) {
	c.mu.Lock()
	if c.err != nil {
		c.mu.Unlock()
		return
	}
	if len(c.msgs) >= maxLength {
		// Dropping from the front lets append move the queue to a new
		// array of twice its length from time to time: memory stays
		// within twice maxLength messages.
		c.msgs[0] = nil
		c.msgs = c.msgs[1:]
		c.dropped++
	}
	c.msgs = append(c.msgs, m)
	c.mu.Unlock()
	select {
	case c.wake <- struct{}{}:
	default:
	}
}
