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
	code := run(ctx, os.Args[1:], os.Getenv, os.Stdin, os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

const usage = `eventsproxy streams RabbitMQ topic-exchange messages over Server-Sent Events.

Usage:
  eventsproxy serve [flags]     run the service against RabbitMQ
  eventsproxy dev [flags]       run the service on an in-process broker with generated messages
  eventsproxy listen [flags]    watch messages through a running eventsproxy
  eventsproxy publish [flags]   publish a message to a RabbitMQ exchange
  eventsproxy token [flags]     mint a token for a service with access control
  eventsproxy health [flags]    exit 0 if a running eventsproxy answers (a container's health check)
  eventsproxy version           print the version

Run 'eventsproxy COMMAND --help' for a command's flags.
`

// command runs one subcommand with its arguments and returns the exit code.
type command func(ctx context.Context, args []string, env func(string) string, stdin io.Reader, stdout, stderr io.Writer) int

var commands = map[string]command{
	"serve":   serve,
	"dev":     dev,
	"listen":  listen,
	"publish": publish,
	"token":   token,
	"health":  health,
	"version": version,
}

// run dispatches to a subcommand and returns the process's exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	}
	cmd, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "eventsproxy: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	return cmd(ctx, args[1:], getenv, stdin, stdout, stderr)
}

// isTerminal reports whether f, an *os.File or not, is a terminal (a
// character device): stdout when nobody redirected it, stdin when nothing
// is piped in.
func isTerminal(f any) bool {
	file, ok := f.(*os.File)
	if !ok {
		return false
	}
	fi, err := file.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
