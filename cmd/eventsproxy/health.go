package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"time"
)

const healthHelp = `Usage: eventsproxy health [--url URL] [--timeout D]

Ask a running eventsproxy whether it is alive: exit 0 when URL answers 200
within the timeout, 1 otherwise. It is the health check of the container
image (deploy/Dockerfile), which has no shell or curl.

Flags:
  --url URL     what to ask (default: /__lbheartbeat__ on 127.0.0.1 at the
                port of LISTEN or PORT, as serve reads them, else 8080)
  --timeout D   how long to wait for the answer (default 3s)
`

// health asks a running service for /__lbheartbeat__ and returns 0 when it
// answers 200.
func health(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventsproxy health", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	url := fs.String("url", defaultHealthURL(getenv), "URL to ask")
	timeout := fs.Duration("timeout", 3*time.Second, "how long to wait")
	err := fs.Parse(args)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, healthHelp)
		return 0
	}
	if err == nil && fs.NArg() > 0 {
		err = fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy health: %v\nRun 'eventsproxy health --help' for usage.\n", err)
		return 2
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, *url, nil)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy health: %v\n", err)
		return 2
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy health: %v\n", err)
		return 1
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<16))
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintf(stderr, "eventsproxy health: %s answered %s\n", *url, resp.Status)
		return 1
	}
	return 0
}

// defaultHealthURL is /__lbheartbeat__ on the loopback address at the port
// that serve would listen on.
func defaultHealthURL(getenv func(string) string) string {
	port := "8080"
	if listen := getenv("LISTEN"); listen != "" {
		if _, p, err := net.SplitHostPort(listen); err == nil && p != "" {
			port = p
		}
	} else if p := getenv("PORT"); p != "" {
		port = p
	}
	return "http://" + net.JoinHostPort("127.0.0.1", port) + "/__lbheartbeat__"
}
