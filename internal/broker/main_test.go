package broker

import (
	"testing"
	"time"

	"eventsproxy/internal/rabbittest"
)

// TestMain checks for leaked goroutines and, for the integration tests,
// starts a RabbitMQ node of the test binary's own (or uses AMQP_URL's).
// Exchanges are checked, and control channels renewed, every second, so
// that tests of deleted exchanges and withdrawn permissions need not wait
// long.
func TestMain(m *testing.M) {
	recheckEvery = time.Second
	ctrlRenewEvery = time.Second
	rabbittest.Main(m)
}
