package broker

import (
	"testing"
	"time"

	"eventsproxy/internal/rabbittest"
)

// TestMain checks for leaked goroutines and, for the integration tests,
// starts a RabbitMQ node of the test binary's own (or uses AMQP_URL's).
// Exchanges are checked every second, so that tests of deleted exchanges
// need not wait long.
func TestMain(m *testing.M) {
	recheckEvery = time.Second
	rabbittest.Main(m)
}
