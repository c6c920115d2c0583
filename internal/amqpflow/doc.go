// Package amqpflow bounds the deliveries that an AMQP 0-9-1 client holds for
// a consumer that is slower than the broker, by pausing reads on the socket
// under the client: the broker's writes then stall on TCP backpressure, and
// the messages wait in the broker's queue, under its length limits, instead
// of in the process.
//
// It exists for a consumer with auto-ack, which costs RabbitMQ markedly less
// CPU per message than manual acks, but leaves nothing to make the broker
// wait. It depends on these behaviours of github.com/rabbitmq/amqp091-go
// (checked against v1.16.0):
//
//   - Config.Dial's net.Conn is the only way the client reads the broker,
//     from one goroutine (Connection.reader), so pausing its Read pauses
//     every frame. Config.Dial must therefore hand over plain AMQP frames:
//     for amqps, the caller speaks TLS under a Conn and gives the client an
//     amqp URL, so that it does not speak TLS again.
//   - The client passes each consumer's deliveries through an unbounded
//     slice (consumers.buffer): without a bound here a slow consumer costs
//     memory without limit.
//   - After each frame the client sets a read deadline of three heartbeat
//     intervals: a Read paused longer than that ends the connection, which
//     is what a consumer stuck for that long should get.
//   - Closing the connection waits for the broker's connection.close-ok,
//     which may sit behind deliveries that nobody takes any more: call
//     Release before closing.
//
// Conn counts basic.deliver methods in the frames it reads (the frame
// layout of section 4.2.3 of the AMQP 0-9-1 specification); the consumer
// says when it has taken one with Took.
package amqpflow
