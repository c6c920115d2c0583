package main

import (
	"context"
	"fmt"
	"io"
)

// dev is not written yet.
func dev(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "eventsproxy dev: not yet implemented")
	return 2
}
