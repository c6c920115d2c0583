//go:build integration

package api_test

import (
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// TestMessagePropertiesFromRabbitMQ publishes a message with every
// property and a header of each kind to RabbitMQ: a stream with
// properties=1 gets them in its event, one without gets the bytes it
// always got.
func TestMessagePropertiesFromRabbitMQ(t *testing.T) {
	p := startProxy(t, api.Config{}, broker.Config{})
	ch := rabbittest.Channel(t, rabbittest.Dial(t, "eventsproxy test "+t.Name()))
	ex := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/props/")
	plain := rawStream(t, p.URL, ex, "")
	withProps := rawStream(t, p.URL, ex, "&properties=1")

	ts := time.Date(2026, 12, 2, 3, 4, 5, 0, time.UTC)
	rabbittest.PublishMessage(t, ch, ex, "a.b", amqp.Publishing{
		ContentType: "application/json", ContentEncoding: "identity", DeliveryMode: amqp.Persistent, Priority: 4,
		CorrelationId: "corr-1", ReplyTo: "replies", Expiration: "60000", MessageId: "m-1", Timestamp: ts,
		Type: "task-completed", UserId: "guest", AppId: "queue",
		Headers: amqp.Table{
			"CC":     []any{"route.index.x", "other"},
			"s":      "text\n\"q\"",
			"n":      int64(-5),
			"f":      1.5,
			"dec":    amqp.Decimal{Scale: 2, Value: 1234},
			"t":      ts,
			"b":      []byte{0xff, 0},
			"bool":   false,
			"nested": amqp.Table{"list": []any{true, nil, "x"}},
		},
		Body: []byte(`{"state": "completed"}`),
	})
	head := "event: message\ndata: {\"exchange\":\"" + ex + `","routingKey":"a.b","redelivered":false,"routes":["index.x"],"payload":{"state":"completed"}`
	const tail = "\nid: -\n\n"
	if got, want := readRawEvent(t, plain), head+"}"+tail; got != want {
		t.Errorf("without properties=1:\ngot  %q\nwant %q", got, want)
	}
	want := head + `,"properties":{"contentType":"application/json","contentEncoding":"identity","deliveryMode":2,"priority":4,` +
		`"correlationId":"corr-1","replyTo":"replies","expiration":"60000","messageId":"m-1","timestamp":"2026-12-02T03:04:05Z",` +
		`"type":"task-completed","userId":"guest","appId":"queue"},` +
		`"headers":{"CC":["route.index.x","other"],"b":"/wA=","bool":false,"dec":12.34,"f":1.5,"n":-5,` +
		`"nested":{"list":[true,null,"x"]},"s":"text\n\"q\"","t":"2026-12-02T03:04:05Z"}}` + tail
	if got := readRawEvent(t, withProps); got != want {
		t.Errorf("with properties=1:\ngot  %q\nwant %q", got, want)
	}
}
