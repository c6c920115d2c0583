//go:build integration

package broker_test

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/rabbittest"
)

// TestWithdrawnPermissionFoundByRebind: a RabbitMQ channel remembers its
// last dozen topic permission answers, so re-binds on one long-lived
// control channel would never see a permission withdrawn. The control
// channel is renewed (every second in these tests): the re-bind of the
// pattern no longer allowed is refused and its stream ends, while the
// other pattern's stream goes on.
func TestWithdrawnPermissionFoundByRebind(t *testing.T) {
	user, userURL := rabbittest.AddUser(t)
	m := metrics.New(prometheus.NewRegistry())
	b := brokertest.Start(t, broker.AMQP(broker.AMQPConfig{
		URL:            userURL,
		QueuePrefix:    rabbittest.Unique("eventsproxy-test/") + "/",
		ConnectionName: rabbittest.Unique("eventsproxy test " + t.Name() + " "),
	}), broker.WithExchangeCheck(broker.Config{Metrics: m, RebindPeriod: 300 * time.Millisecond}, time.Hour))
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test/x/")
	subs := map[string]*broker.Subscription{}
	for _, p := range []string{"a", "b"} {
		sub, err := subscribeAMQP(t, b, binding.Binding{Exchange: ex, RoutingKeyPattern: p})
		if err != nil {
			t.Fatal(err)
		}
		subs[p] = sub
	}
	rabbittest.SetTopicPermissions(t, user, ex, ".*", `^b$`)
	start := time.Now()
	wantEnded(t, "a", subs["a"], ex, "a", broker.ErrAccessRefused)
	t.Logf("ended %v after the change", time.Since(start))
	delete(subs, "a")
	awaitRebound(t, m)
	wantOpen(t, subs)
	rabbittest.Publish(t, ch, ex, "b", nil, []byte(`1`))
	expect(t, "1", subs)
}
