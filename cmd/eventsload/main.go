// Command eventsload puts an eventsproxy under load and measures it: idle
// streams (S1), fan-out (S2), connect cycles (S3), single-stream throughput
// against a plain AMQP consumer, the broker's bind ceiling, Taskcluster task
// pages coming and going (pulse), and resumable streams cut and resumed
// (resume). See docs/performance.md.
package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}
