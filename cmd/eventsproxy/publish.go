package main

import (
	"context"
	"fmt"
	"io"
)

// publish is not written yet.
func publish(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "eventsproxy publish: not yet implemented")
	return 2
}
