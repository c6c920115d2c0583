package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"

	buildversion "eventsproxy/internal/version"
)

const versionHelp = `Usage: eventsproxy version [--json]

Print the version of eventsproxy, the commit it was built from and the Go
version that built it:

  eventsproxy v1.2.3 (0123abc..., go1.26.0)

Release builds set the version and commit at link time:

  go build -ldflags "-X eventsproxy/internal/version.Version=v1.2.3 \
    -X eventsproxy/internal/version.Commit=$(git rev-parse HEAD)" ./cmd/eventsproxy

Flags:
  --json   print {"version", "commit", "go"} as JSON, as /__version__ serves it
`

// version prints the build's version information.
func version(_ context.Context, args []string, _ func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventsproxy version", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	asJSON := fs.Bool("json", false, "print JSON")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, versionHelp)
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy version: %v\nRun 'eventsproxy version --help' for usage.\n", err)
		return 2
	}
	info := buildversion.Get()
	if *asJSON {
		b, _ := json.Marshal(info)
		fmt.Fprintf(stdout, "%s\n", b)
		return 0
	}
	fmt.Fprintln(stdout, info)
	return 0
}
