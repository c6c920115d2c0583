package broker

import (
	"errors"
	"regexp"
	"sync"

	amqp "github.com/rabbitmq/amqp091-go"
)

// typeMismatch is how RabbitMQ names the type of an existing exchange when
// a declare asks for another: "inequivalent arg 'type' for exchange 'x' in
// vhost '/': received 'topic' but current is 'fanout'".
var typeMismatch = regexp.MustCompile(`inequivalent arg 'type' for exchange .*: received 'topic' but current is '([^']*)'`)

// exchangeTypes remembers the exchanges found to be topic exchanges (or
// whose type cannot be learnt), so that each is probed once per connection.
type exchangeTypes struct {
	mu     sync.Mutex
	topics map[string]struct{}
}

func (t *exchangeTypes) known(exchange string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	_, ok := t.topics[exchange]
	return ok
}

func (t *exchangeTypes) set(exchange string, topic bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if !topic {
		delete(t.topics, exchange)
		return
	}
	if t.topics == nil {
		t.topics = make(map[string]struct{})
	}
	t.topics[exchange] = struct{}{}
}

// checkTopic returns an *ExchangeTypeError when exchange exists and is not
// a topic exchange. AMQP has no method that tells an exchange's type, and
// Pulse gives no management API, so it asks RabbitMQ to declare the
// exchange as a topic exchange with an alternate-exchange argument of the
// wrong type, on a channel of its own (every answer closes it):
//
//   - an existing exchange of another type is refused first for its type,
//     which the refusal names ("current is 'fanout'"): the type is checked
//     before the other flags and arguments;
//   - an existing topic exchange is refused for a flag or that argument;
//   - a missing exchange is refused for the argument before anything is
//     created, so the probe never creates or changes an exchange;
//   - a user without configure permission on the exchange (Pulse's on
//     others' exchanges) is refused before any of this: the type cannot be
//     learnt, and the exchange is taken to be a topic exchange.
func (c *amqpConn) checkTopic(exchange string) error {
	if c.types.known(exchange) {
		return nil
	}
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	err = ch.ExchangeDeclare(exchange, amqp.ExchangeTopic, false, false, false, false,
		amqp.Table{"alternate-exchange": int64(0)})
	if !ch.IsClosed() {
		_ = ch.Close()
	}
	aerr, ok := errors.AsType[*amqp.Error](err)
	switch {
	case err == nil:
	case !ok:
		return err // the connection, not the exchange
	case aerr.Code == amqp.PreconditionFailed:
		if m := typeMismatch.FindStringSubmatch(aerr.Reason); m != nil {
			return &ExchangeTypeError{Exchange: exchange, Type: m[1]}
		}
	case aerr.Code != amqp.AccessRefused:
		return classify(err)
	}
	c.types.set(exchange, true)
	return nil
}

// CheckExchange tells whether exchange exists, by a passive declare on a
// channel of its own (a missing exchange closes the channel).
func (c *amqpConn) CheckExchange(exchange string) error {
	ch, err := c.conn.Channel()
	if err != nil {
		return err
	}
	err = ch.ExchangeDeclarePassive(exchange, amqp.ExchangeTopic, false, false, false, false, nil)
	if !ch.IsClosed() {
		_ = ch.Close()
	}
	if err != nil {
		err = classify(err)
		if errors.Is(err, ErrExchangeNotFound) {
			c.types.set(exchange, false)
		}
	}
	return err
}

// RecheckTopic probes exchange's type again, whatever is known of it (see
// checkTopic): an exchange deleted and declared again may have come back as
// another type.
func (c *amqpConn) RecheckTopic(exchange string) error {
	c.types.set(exchange, false)
	return c.checkTopic(exchange)
}
