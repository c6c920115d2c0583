package load

import (
	"context"
	"fmt"
	"strconv"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/randomname"
)

// pulseKey returns a Pulse-like routing key of 10 words for task id.
func pulseKey(id string) string {
	return "primary." + id + ".0.us-east-1.i-0c4d1e2f3a4b5c6d7.proj-releng.gecko-t-linux-large.gecko-level-3.VrvpkJeBQ9mfez0-ezFBPw._"
}

// ccRoutes are the CC routes every published message carries, as a
// Taskcluster task's messages do.
var ccRoutes = []any{
	"route.index.gecko.v2.mozilla-central.latest.firefox.linux64-opt",
	"route.tc-treeherder.v2.mozilla-central.3f2b6c1e9a7d4e5f8a0b1c2d3e4f5a6b7c8d9e0f.41234",
}

// Publisher publishes timestamped messages to one topic exchange of its
// own, which it declares and deletes. It is used by one goroutine at a time.
type Publisher struct {
	conn     *amqp.Connection
	ch       *amqp.Channel
	Exchange string
	owns     bool // Close deletes the exchange
	size     int
	cc       amqp.Table
	others   []string // more exchanges of its own, deleted by Close
}

// NewPublisher connects to the broker at url and declares a new topic
// exchange; payloads are padded to size bytes.
func NewPublisher(url string, size int) (*Publisher, error) {
	return newPublisher(url, size, "")
}

// newPublisher publishes to exchange, or to a new exchange of its own when
// exchange is "".
func newPublisher(url string, size int, exchange string) (*Publisher, error) {
	conn, err := amqp.DialConfig(url, amqp.Config{
		Properties: amqp.Table{"connection_name": "eventsload publisher"},
		Dial:       amqp.DefaultDial(10 * time.Second),
	})
	if err != nil {
		return nil, fmt.Errorf("dial broker: %w", err)
	}
	ch, err := conn.Channel()
	if err != nil {
		conn.Close()
		return nil, err
	}
	p := &Publisher{conn: conn, ch: ch, Exchange: exchange, size: size, cc: amqp.Table{"CC": ccRoutes}}
	if exchange != "" {
		return p, nil
	}
	p.Exchange, p.owns = randomname.New("eventsload/"), true
	if err := ch.ExchangeDeclare(p.Exchange, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		conn.Close()
		return nil, fmt.Errorf("declare exchange: %w", err)
	}
	return p, nil
}

// Body returns a payload of at least size bytes, exactly size when size
// leaves room for the fields: {"t":<sent>,"s":<seq>,"p":"xxx…"}.
func Body(sent, seq int64, size int) []byte {
	b := make([]byte, 0, max(size, 64))
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, sent, 10)
	b = append(b, `,"s":`...)
	b = strconv.AppendInt(b, seq, 10)
	b = append(b, `,"p":"`...)
	for len(b) < size-2 {
		b = append(b, 'x')
	}
	return append(b, `"}`...)
}

// Publish publishes message seq with routing key key, stamped with the
// current time.
func (p *Publisher) Publish(ctx context.Context, key string, seq int64) error {
	return p.ch.PublishWithContext(ctx, p.Exchange, key, false, false, amqp.Publishing{
		ContentType: "application/json",
		Headers:     p.cc,
		Body:        Body(time.Now().UnixNano(), seq, p.size),
	})
}

// declare declares another topic exchange of the publisher's own, which
// Close deletes.
func (p *Publisher) declare(exchange string) error {
	if err := p.ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, false, false, false, false, nil); err != nil {
		return fmt.Errorf("declare exchange: %w", err)
	}
	p.others = append(p.others, exchange)
	return nil
}

// publishTo publishes body to exchange with routing key key and the CC
// routing keys cc.
func (p *Publisher) publishTo(ctx context.Context, exchange, key string, cc []string, body []byte) error {
	var hdr amqp.Table
	if len(cc) > 0 {
		routes := make([]any, len(cc))
		for i, r := range cc {
			routes[i] = r
		}
		hdr = amqp.Table{"CC": routes}
	}
	return p.ch.PublishWithContext(ctx, exchange, key, false, false, amqp.Publishing{
		ContentType: "application/json", Headers: hdr, Body: body,
	})
}

// Barrier returns once the broker has handled every message published
// before it (a synchronous method on the same channel).
func (p *Publisher) Barrier() error {
	return p.ch.ExchangeDeclarePassive(p.Exchange, amqp.ExchangeTopic, false, false, false, false, nil)
}

// Paced publishes at rate messages per second for d, numbering them from
// 0, and returns how many it published. keyOf gives message i's routing
// key. Sends are scheduled on a fixed grid, so a late send is followed by
// quicker ones rather than lowering the rate.
func (p *Publisher) Paced(ctx context.Context, rate float64, d time.Duration, keyOf func(i int64) string) (int64, error) {
	total := int64(rate * d.Seconds())
	interval := time.Duration(float64(time.Second) / rate)
	start := time.Now()
	var i int64
	for ; i < total; i++ {
		if wait := time.Until(start.Add(time.Duration(i) * interval)); wait > 0 {
			select {
			case <-ctx.Done():
				return i, ctx.Err()
			case <-time.After(wait):
			}
		}
		if err := p.Publish(ctx, keyOf(i), i); err != nil {
			return i, err
		}
	}
	return i, p.Barrier()
}

// Close deletes the exchange, when it is the publisher's own, and closes
// the connection.
func (p *Publisher) Close() {
	if p.owns {
		_ = p.ch.ExchangeDelete(p.Exchange, false, false)
	}
	for _, ex := range p.others {
		_ = p.ch.ExchangeDelete(ex, false, false)
	}
	_ = p.conn.Close()
}
