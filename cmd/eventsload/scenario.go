package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"eventsproxy/cmd/eventsload/internal/load"
	"eventsproxy/internal/access"
	"eventsproxy/internal/testcert"
)

// fdReserve is how many descriptors a process needs besides its streams:
// listener, broker connection, epoll, pipes, standard streams.
const fdReserve = 64

// h2StreamsPerConn is how many streams share one HTTP/2 connection: the
// server's limit, net/http's default.
const h2StreamsPerConn = 250

// runScenario runs sc o.runs times, each against a fresh server unless
// o.url names one, and returns the report of the runs that completed.
func runScenario(ctx context.Context, sc *scenario, o *options, stderr io.Writer) (*load.Report, error) {
	progress := stderr
	if o.quiet {
		progress = nil
	}
	limit, err := load.RaiseFileLimit()
	if err != nil {
		return nil, fmt.Errorf("raise the open-file limit: %w", err)
	}
	if o.h2 {
		// Streams share connections: a descriptor per 250 streams.
		if need := uint64(sc.streams()/h2StreamsPerConn+1) + fdReserve; need > limit {
			return nil, fmt.Errorf("the open-file limit is %d, too low for %d streams over HTTP/2 (%d descriptors)", limit, sc.streams(), need)
		}
	} else if need := uint64(sc.streams()) + fdReserve; need > limit {
		return nil, fmt.Errorf("the open-file limit is %d, too low for %d streams: the tool and the server each need one descriptor per stream plus about %d. "+
			"Raise the hard limit (ulimit -Hn, LimitNOFILE=, docker --ulimit nofile=) or ask for at most %d streams",
			limit, sc.streams(), fdReserve, limit-fdReserve)
	}
	if progress != nil {
		fmt.Fprintf(progress, "eventsload %s: %s; open-file limit %d; load average %s\n", sc.name, sc.params(), limit, load.LoadAvg())
	}

	var tlsConf *tls.Config
	if o.h2 && !sc.noServer {
		if o.url != "" || o.serverCmd != "" {
			return nil, errors.New("--h2 needs a server the tool starts: it makes the server's certificate; drop --url and --server-cmd")
		}
		dir, err := os.MkdirTemp("", "eventsload-tls")
		if err != nil {
			return nil, err
		}
		defer os.RemoveAll(dir)
		cert, key, pool, err := testcert.WriteTo(dir)
		if err != nil {
			return nil, fmt.Errorf("make a certificate for --h2: %w", err)
		}
		o.serverArgs = append(o.serverArgs, "--tls-cert="+cert, "--tls-key="+key)
		tlsConf = &tls.Config{RootCAs: pool}
	}

	var token string
	if o.tokenSecret != "" {
		if o.url == "" && o.serverCmd == "" {
			o.serverArgs = append(o.serverArgs, "--token-secrets="+o.tokenSecret)
		}
		token, err = access.Mint([]byte(o.tokenSecret), access.Token{
			Grants:  []access.Grant{{Exchange: "eventsload/", RoutingKeyPattern: "#"}},
			TTL:     24 * time.Hour,
			Subject: "eventsload",
		}, time.Now())
		if err != nil {
			return nil, fmt.Errorf("--token-secret: %w", err)
		}
	}

	var argv []string
	var queuePrefix string
	if o.url == "" && !sc.noServer {
		var cleanup func()
		argv, queuePrefix, cleanup, err = serverCommand(ctx, o)
		if err != nil {
			return nil, err
		}
		defer cleanup()
	}
	var logFile io.Writer
	if o.serverLog != "" {
		f, err := os.OpenFile(o.serverLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, err
		}
		defer f.Close()
		logFile = f
	}

	rep := &load.Report{Scenario: sc.name, Params: sc.params()}
	for i := range max(o.runs, 1) {
		if progress != nil {
			fmt.Fprintf(progress, "run %d of %d\n", i+1, o.runs)
		}
		c := load.Common{
			AMQPURL:     o.amqpURL,
			Mgmt:        load.Management{URL: o.mgmtURL},
			Progress:    progress,
			ProfileName: fmt.Sprintf("%s-run%d", strings.Fields(sc.name)[0], i+1),
		}
		var t load.Target
		var srv *load.Server
		switch {
		case o.url != "":
			t = load.Target{URL: o.url, PID: o.serverPID, Token: token}
		case argv != nil:
			srv, err = load.StartServer(ctx, argv, queuePrefix, o.profileDir, logFile)
			if err != nil {
				return rep, err
			}
			t = srv.Target
			t.TLS = tlsConf
			t.Token = token
			// Let the fresh process settle before its baseline RSS.
			time.Sleep(time.Second)
		}
		r, err := sc.run(ctx, t, c)
		if srv != nil {
			if serr := srv.Stop(); serr != nil && err == nil {
				err = serr
			}
		}
		if err != nil {
			if len(r.Metrics) > 0 {
				rep.Runs = append(rep.Runs, r)
			}
			return rep, fmt.Errorf("run %d: %w", i+1, err)
		}
		rep.Runs = append(rep.Runs, r)
	}
	return rep, nil
}

// serverCommand returns the command line that starts a server for a run,
// the prefix of its broker queue's name, and what removes the files it made.
func serverCommand(ctx context.Context, o *options) (argv []string, prefix string, cleanup func(), err error) {
	prefix = "queue/eventsload/" + fmt.Sprint(os.Getpid()) + "/"
	cleanup = func() {}
	flags := []string{
		"--listen", "127.0.0.1:0",
		"--amqp-url", o.amqpURL,
		"--max-connections", "0",
		"--queue-prefix", prefix,
		"--log-level", "info",
		"--log-format", "text",
	}
	flags = append(flags, o.serverArgs...)
	switch {
	case o.serverCmd != "":
		return strings.Fields(o.serverCmd), "", cleanup, nil
	case o.profileDir != "":
		if err := os.MkdirAll(o.profileDir, 0o755); err != nil {
			return nil, "", nil, err
		}
		dir, err := filepath.Abs(o.profileDir)
		if err != nil {
			return nil, "", nil, err
		}
		o.profileDir = dir
		self, err := os.Executable()
		if err != nil {
			return nil, "", nil, err
		}
		return append([]string{self, "serve-profiled", "--profile-dir", dir, "--"}, flags...), prefix, cleanup, nil
	case o.serverBin != "":
		return append([]string{o.serverBin, "serve"}, flags...), prefix, cleanup, nil
	default:
		dir, err := os.MkdirTemp("", "eventsload")
		if err != nil {
			return nil, "", nil, err
		}
		cleanup = func() { _ = os.RemoveAll(dir) }
		bin := filepath.Join(dir, "eventsproxy")
		cmd := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/eventsproxy")
		cmd.Stderr = os.Stderr
		if err := cmd.Run(); err != nil {
			cleanup()
			return nil, "", nil, fmt.Errorf("build ./cmd/eventsproxy (run eventsload from the repository's root, or give --server-cmd or --url): %w", err)
		}
		return append([]string{bin, "serve"}, flags...), prefix, cleanup, nil
	}
}
