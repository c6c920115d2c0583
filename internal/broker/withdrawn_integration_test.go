//go:build integration

package broker_test

import (
	"testing"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// TestWithdrawnPermissionFoundByRebind: a RabbitMQ channel remembers its
// last dozen topic permission answers, so re-binds on one long-lived
// control channel would never see a permission withdrawn. The control
// channel is renewed (every second in these tests): the re-bind of the
// pattern no longer allowed is refused and its stream ends, while the
// other pattern's stream goes on.
func TestWithdrawnPermissionFoundByRebind(t *testing.T) {
	user, m, b, ch, ex := startAsUser(t)
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
