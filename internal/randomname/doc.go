// Package randomname makes names that no other process or run shares: our
// queue on the broker, and the exchanges and queues of tests and load runs,
// which share one broker with others.
package randomname
