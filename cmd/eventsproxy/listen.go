package main

import (
	"context"
	"fmt"
	"io"
)

// listen is not written yet.
func listen(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "eventsproxy listen: not yet implemented")
	return 2
}
