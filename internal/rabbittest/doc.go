// Package rabbittest provides helpers for integration tests against real
// RabbitMQ: brokers of the tests' own, unique names, exchanges that clean up
// after themselves, publishing with confirms, the management API's view
// of queues, bindings and connections, and Poll, for state that announces
// no change.
//
// A test binary's TestMain calls Main. In a build with -tags integration,
// Main starts a RabbitMQ node of the binary's own from the installed
// rabbitmq-server (free loopback ports, its own configuration, plugins,
// data and log directories, node name and cookie), which the package's
// functions (URL, Dial, Queues, ...) then use, and stops and deletes it when
// the tests are done; AMQP_URL (and RABBITMQ_MANAGEMENT_URL) name an
// existing broker instead. Tests that stop, kill or cluster brokers start
// nodes of their own with StartNode and StartCluster. Nothing here ever
// touches a broker that was running before, such as the system's on port
// 5672. A missing broker fails the test; it is never skipped.
package rabbittest
