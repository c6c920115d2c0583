// Package broker provides eventsproxy's side of RabbitMQ: one supervised
// AMQP connection, one exclusive auto-delete queue per process, broker
// bindings shared by every stream that needs them (reference-counted, added
// and confirmed before a stream is ready, removed with their last user), and
// in-process routing of each delivery to the streams whose bindings match it,
// with RabbitMQ's topic semantics.
//
// The design keeps the broker's cost independent of the number of streams:
// one queue, one consuming channel and one control channel per connection.
// Ordering follows from it: every stream sees its messages in the order of
// the one shared queue, which is the order a queue of its own would have had.
//
// A Subscription's buffer is bounded; the router never waits for a stream.
// When a stream's buffer is full its oldest message is dropped and counted.
//
// When the connection is lost, its subscriptions are done, except those
// made to survive it (SubscribeSurviving): the next connection binds their
// bindings again, and once they are all confirmed each gets one gap, after
// which it misses nothing (see survive.go).
package broker
