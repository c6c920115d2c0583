package main

import (
	"context"
	"fmt"
	"io"
)

// version is not written yet.
func version(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "eventsproxy version: not yet implemented")
	return 2
}
