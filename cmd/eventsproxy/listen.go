package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"

	client "eventsproxy/internal/listen"
)

// listen watches messages through a running eventsproxy until ctx is done,
// and returns one of the exit codes that `eventsproxy listen --help` lists.
func listen(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	opts, err := client.Load(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, client.Help)
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy listen: %v\nRun 'eventsproxy listen --help' for usage.\n", err)
		return client.ExitCode(err)
	}
	opts.Terminal = isTerminal(stdout)
	err = client.Run(ctx, opts, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy listen: %v\n", err)
	}
	return client.ExitCode(err)
}
