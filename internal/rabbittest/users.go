package rabbittest

import (
	"net/url"
	"testing"
)

// ownCtl runs rabbitmqctl against the node that Main started, and fails
// the test when the test binary's broker is not one: users and
// permissions are never changed on a broker the tests did not start (the
// system's, say, that AMQP_URL may name).
func ownCtl(tb testing.TB, args ...string) string {
	tb.Helper()
	defaultMu.Lock()
	n := defaultNode
	defaultMu.Unlock()
	if n == nil {
		tb.Fatal("rabbittest: this test changes users or permissions, which it does only on a node that rabbittest.Main started: unset AMQP_URL and build with -tags integration")
	}
	out, err := n.Ctl(args...)
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

// AddUser adds a user with a unique name to the node that Main started,
// with every permission on the vhost "/" (configure, write and read
// ".*"), and deletes it at cleanup. It returns the user's name and an AMQP
// URL of the node that logs in as the user.
func AddUser(tb testing.TB) (name, amqpURL string) {
	tb.Helper()
	name = Unique("eventsproxy-test-user-")
	password := Unique("")
	ownCtl(tb, "add_user", name, password)
	tb.Cleanup(func() {
		defaultMu.Lock()
		n := defaultNode
		defaultMu.Unlock()
		if n == nil {
			return
		}
		if out, err := n.Ctl("delete_user", name); err != nil {
			tb.Errorf("delete user %s: %v\n%s", name, err, out)
		}
	})
	ownCtl(tb, "set_permissions", "-p", "/", name, ".*", ".*", ".*")
	u, err := url.Parse(URL())
	if err != nil {
		tb.Fatal(err)
	}
	u.User = url.UserPassword(name, password)
	return name, u.String()
}

// SetTopicPermissions sets user's topic permissions on exchange (a name,
// not a pattern), on the node that Main started (rabbitmqctl
// set_topic_permissions): write and
// read are regular expressions of the routing keys that user may publish
// with and of the binding keys that it may bind (and unbind) a queue
// with, on a topic exchange.
func SetTopicPermissions(tb testing.TB, user, exchange, write, read string) {
	tb.Helper()
	ownCtl(tb, "set_topic_permissions", "-p", "/", user, exchange, write, read)
}
