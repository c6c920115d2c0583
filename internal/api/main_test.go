package api_test

import (
	"testing"

	"eventsproxy/internal/rabbittest"
)

// TestMain checks for leaked goroutines and, for the integration tests,
// starts a RabbitMQ node of the test binary's own (or uses AMQP_URL's).
func TestMain(m *testing.M) { rabbittest.Main(m) }
