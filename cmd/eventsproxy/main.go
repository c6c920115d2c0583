// Command eventsproxy streams messages of RabbitMQ topic exchanges to
// browsers and command-line tools as Server-Sent Events. See README.md.
package main

import (
	"context"
	"fmt"
	"io"
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

const usage = `eventsproxy streams RabbitMQ topic-exchange messages over Server-Sent Events.

Usage:
  eventsproxy serve [flags]   run the service (eventsproxy serve --help for flags)
`

// run dispatches to a subcommand and returns the process's exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "serve":
		return serve(ctx, args[1:], getenv, stderr)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	default:
		fmt.Fprintf(stderr, "eventsproxy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
}
