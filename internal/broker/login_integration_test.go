//go:build integration

package broker_test

import (
	"context"
	"errors"
	"net/url"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// wrongPassword returns rabbittest.URL with its password replaced.
func wrongPassword(t *testing.T) (string, string) {
	t.Helper()
	u, err := url.Parse(rabbittest.URL())
	if err != nil || u.User == nil {
		t.Fatalf("AMQP_URL %q has no user", rabbittest.URL())
	}
	u.User = url.UserPassword(u.User.Username(), "wrong-password-hunter2")
	return u.String(), u.User.Username()
}

// TestDialLoginRefused dials RabbitMQ with a wrong password: the error
// wraps ErrLoginRefused and names the user, not the password.
func TestDialLoginRefused(t *testing.T) {
	t.Parallel()
	u, user := wrongPassword(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := broker.AMQP(broker.AMQPConfig{URL: u, ConnectionName: rabbittest.Unique("eventsproxy test login ")}).Dial(ctx)
	if err == nil {
		conn.Close()
		t.Fatal("dialled with a wrong password")
	}
	if !errors.Is(err, broker.ErrLoginRefused) {
		t.Fatalf("error %v does not wrap ErrLoginRefused", err)
	}
	if !strings.Contains(err.Error(), `user "`+user+`"`) || strings.Contains(err.Error(), "hunter2") {
		t.Fatalf("error %q must name the user and not the password", err)
	}
}
