package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

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

// isTerminal reports whether w is a terminal (a character device), as
// stdout is when nobody redirected it.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}
