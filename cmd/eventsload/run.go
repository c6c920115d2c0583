package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"eventsproxy/cmd/eventsload/internal/load"
)

const usage = `eventsload puts an eventsproxy under load and measures it.

Usage:
  eventsload idle        [flags]  S1: many idle streams, each with a binding of its own
  eventsload fanout      [flags]  S2/S2b/soak: many streams on one binding, messages at a rate
  eventsload cycles      [flags]  S3: connect→ready→close cycles
  eventsload throughput  [flags]  one stream, broker flat out, against a plain auto-ack consumer
  eventsload bindrate    [flags]  the broker's own bind+unbind pairs per second
  eventsload pulse       [flags]  Taskcluster task pages: seven bindings each, coming and going, under task traffic
  eventsload resume      [flags]  resumable streams on a numbered flow, every connection cut and resumed
  eventsload serve-profiled --profile-dir DIR -- SERVE-FLAGS
                                  eventsproxy serve with profiles on SIGUSR1/SIGUSR2 (used by --profile)

By default each run builds ./cmd/eventsproxy (run from the repository's root)
and starts it fresh on 127.0.0.1 with --max-connections 0; --url and
--server-pid load a server that is already running instead. Each scenario
runs --runs times (3) and prints every run and the medians.

Run 'eventsload SCENARIO --help' for a scenario's flags.
`

// scenario is one subcommand: its flags and what one run does.
type scenario struct {
	name   string
	params func() string
	flags  func(fs *flag.FlagSet)
	// streams is how many connections a run holds at once, for the
	// open-file check.
	streams func() int
	run     func(ctx context.Context, t load.Target, c load.Common) (load.Run, error)
	// noServer scenarios talk to the broker only.
	noServer bool
}

func scenarios() map[string]*scenario {
	var idle load.IdleConfig
	var fan load.FanoutConfig
	var cyc load.CyclesConfig
	var thr load.ThroughputConfig
	var bind load.BindRateConfig
	var pulse load.PulseConfig
	var res load.ResumeConfig
	return map[string]*scenario{
		"idle": {
			name: "idle (S1)",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&idle.Streams, "streams", 1000, "streams to open, each with a binding of its own")
				fs.IntVar(&idle.Parallel, "parallel", 20, "streams opening at a time during the ramp")
				fs.DurationVar(&idle.Hold, "hold", 5*time.Second, "how long to hold the streams once all are ready")
				fs.IntVar(&idle.Verify, "verify", 1000, "streams that get one message each at the end, to check routing (0: none)")
				fs.IntVar(&idle.BufSize, "buffer", 4096, "read buffer per client stream, bytes")
			},
			params: func() string {
				return fmt.Sprintf("%d streams, own binding each, %d opening at a time, hold %v", idle.Streams, idle.Parallel, idle.Hold)
			},
			streams: func() int { return idle.Streams },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := idle
				cfg.Common = c
				return load.Idle(ctx, t, cfg)
			},
		},
		"fanout": {
			name: "fanout (S2)",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&fan.Streams, "streams", 1000, "streams on the one binding")
				fs.IntVar(&fan.Parallel, "parallel", 50, "streams opening at a time")
				fs.StringVar(&fan.Pattern, "pattern", "primary.#", "the binding's routing-key pattern")
				fs.Float64Var(&fan.Rate, "rate", 200, "messages per second")
				fs.IntVar(&fan.Size, "size", 512, "payload bytes")
				fs.DurationVar(&fan.Duration, "duration", 20*time.Second, "how long to publish")
				fs.DurationVar(&fan.Drain, "drain", 10*time.Second, "longest wait for deliveries after the last publish")
				fs.DurationVar(&fan.RSSEvery, "rss-every", 0, "sample the server's RSS this often while publishing (soak); 0: at the end only")
				fs.IntVar(&fan.BufSize, "buffer", 16384, "read buffer per client stream, bytes")
			},
			params: func() string {
				return fmt.Sprintf("%d streams on %q, %.0f msg/s × %d B for %v", fan.Streams, fan.Pattern, fan.Rate, fan.Size, fan.Duration)
			},
			streams: func() int { return fan.Streams },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := fan
				cfg.Common = c
				return load.Fanout(ctx, t, cfg)
			},
		},
		"cycles": {
			name: "cycles (S3)",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&cyc.Cycles, "cycles", 2000, "connect→ready→close cycles in all")
				fs.IntVar(&cyc.Parallel, "parallel", 20, "cycles at a time")
				fs.BoolVar(&cyc.Shared, "shared", false, "every cycle binds the same pattern (primary.#) instead of one of its own")
				fs.StringVar(&cyc.Cover, "cover", "", "hold one stream on this pattern (e.g. primary.#) during the cycles, which covers theirs")
				fs.IntVar(&cyc.BufSize, "buffer", 4096, "read buffer per client stream, bytes")
			},
			params: func() string {
				kind := "a pattern of its own per cycle"
				if cyc.Shared {
					kind = "one shared pattern"
				}
				if cyc.Cover != "" {
					kind += ", one stream on " + cyc.Cover + " held throughout"
				}
				return fmt.Sprintf("%d cycles, %d in parallel, %s", cyc.Cycles, cyc.Parallel, kind)
			},
			streams: func() int { return cyc.Parallel },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := cyc
				cfg.Common = c
				return load.Cycles(ctx, t, cfg)
			},
		},
		"throughput": {
			name: "throughput",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&thr.Count, "count", 100000, "messages per phase")
				fs.IntVar(&thr.Size, "size", 512, "payload bytes")
				fs.IntVar(&thr.Publishers, "publishers", 2, "publishing connections")
				fs.DurationVar(&thr.Idle, "idle", 3*time.Second, "end a phase once nothing arrived for this long")
				fs.IntVar(&thr.BufSize, "buffer", 65536, "read buffer of the client stream, bytes")
			},
			params: func() string {
				return fmt.Sprintf("%d messages × %d B flat out from %d publishers, plain auto-ack consumer then one stream", thr.Count, thr.Size, thr.Publishers)
			},
			streams: func() int { return 1 },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := thr
				cfg.Common = c
				return load.Throughput(ctx, t, cfg)
			},
		},
		"bindrate": {
			name: "bindrate",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&bind.Pairs, "pairs", 2000, "bind+unbind pairs in all")
				fs.IntVar(&bind.Channels, "channels", 1, "channels binding at once")
			},
			params: func() string {
				return fmt.Sprintf("%d bind+unbind pairs on %d channels, RabbitMQ alone", bind.Pairs, bind.Channels)
			},
			streams: func() int { return 0 },
			run: func(ctx context.Context, _ load.Target, c load.Common) (load.Run, error) {
				cfg := bind
				cfg.Common = c
				return load.BindRate(ctx, cfg)
			},
			noServer: true,
		},
		"pulse": {
			name: "pulse",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&pulse.Pages, "pages", 5000, "task pages open at once, each on the seven task exchanges with primary.<taskId>.#")
				fs.Float64Var(&pulse.Churn, "churn", 100, "pages leaving, and as many arriving for new tasks, per second")
				fs.Float64Var(&pulse.Rate, "rate", 300, "messages per second, bursts included")
				fs.Float64Var(&pulse.Watched, "watched", 0.5, "share of messages for the tasks of open pages; the rest are for tasks nobody watches")
				fs.Float64Var(&pulse.GroupShare, "group-share", 0.2, "share of pages that also bind their task group on task-group-resolved")
				fs.IntVar(&pulse.Burst, "burst", 300, "messages published at once every --burst-every (a decision task defining its tasks)")
				fs.DurationVar(&pulse.BurstEvery, "burst-every", 10*time.Second, "how often a burst comes")
				fs.DurationVar(&pulse.Duration, "duration", 30*time.Second, "how long pages come and go while messages flow")
				fs.IntVar(&pulse.Parallel, "parallel", 20, "pages opening at a time during the ramp")
				fs.DurationVar(&pulse.Drain, "drain", 10*time.Second, "longest wait of a leaving page for the messages it is owed")
				fs.IntVar(&pulse.BufSize, "buffer", 4096, "read buffer per client stream, bytes")
			},
			params: func() string {
				return fmt.Sprintf("%d task pages × 7 bindings (%.0f %% also their group's), %.0f pages/s coming and going, %.0f msg/s (%.0f %% for watched tasks, bursts of %d every %v) for %v",
					pulse.Pages, 100*pulse.GroupShare, pulse.Churn, pulse.Rate, 100*pulse.Watched, pulse.Burst, pulse.BurstEvery, pulse.Duration)
			},
			streams: func() int { return pulse.Pages + pulse.Parallel + int(pulse.Churn) },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := pulse
				cfg.Common = c
				return load.Pulse(ctx, t, cfg)
			},
		},
		"resume": {
			name: "resume",
			flags: func(fs *flag.FlagSet) {
				fs.IntVar(&res.Streams, "streams", 1000, "resumable streams (resume=1) on the one binding")
				fs.IntVar(&res.Parallel, "parallel", 50, "streams opening at a time")
				fs.Float64Var(&res.Rate, "rate", 20, "numbered messages per second")
				fs.IntVar(&res.Size, "size", 512, "payload bytes")
				fs.DurationVar(&res.Duration, "duration", time.Minute, "how long messages flow and connections are cut")
				fs.DurationVar(&res.CutEvery, "cut-every", 5*time.Second, "a connection lives this long on average (from half to one and a half times it) before the tool cuts it")
				fs.DurationVar(&res.Reconnect, "reconnect", time.Second, "wait after a cut before reconnecting (EventSource waits the server's retry: 1 s)")
				fs.BoolVar(&res.InQuery, "in-query", false, "send the last event id as the lastEventId query parameter instead of the Last-Event-ID header")
				fs.DurationVar(&res.Drain, "drain", 30*time.Second, "longest wait for every stream's last message after the last publish")
				fs.IntVar(&res.BufSize, "buffer", 16384, "read buffer per client stream, bytes")
			},
			params: func() string {
				how := "Last-Event-ID"
				if res.InQuery {
					how = "lastEventId"
				}
				return fmt.Sprintf("%d resumable streams, %.0f msg/s × %d B for %v, each connection cut every %v or so and resumed with %s after %v",
					res.Streams, res.Rate, res.Size, res.Duration, res.CutEvery, how, res.Reconnect)
			},
			streams: func() int { return res.Streams },
			run: func(ctx context.Context, t load.Target, c load.Common) (load.Run, error) {
				cfg := res
				cfg.Common = c
				return load.Resume(ctx, t, cfg)
			},
		},
	}
}

// options are the flags every scenario takes.
type options struct {
	amqpURL, mgmtURL string
	url              string
	serverPID        int
	serverCmd        string
	serverBin        string
	serverArgs       multiFlag
	profileDir       string
	toolProfile      string
	serverLog        string
	runs             int
	json, quiet      bool
	h2               bool
	tokenSecret      string
}

type multiFlag []string

func (m *multiFlag) String() string     { return strings.Join(*m, " ") }
func (m *multiFlag) Set(v string) error { *m = append(*m, v); return nil }

func (o *options) register(fs *flag.FlagSet, getenv func(string) string) {
	amqpURL := getenv("AMQP_URL")
	if amqpURL == "" {
		amqpURL = "amqp://guest:guest@127.0.0.1:5672/"
	}
	fs.StringVar(&o.amqpURL, "amqp-url", amqpURL, "broker URL for the server and the publisher (env AMQP_URL)")
	fs.StringVar(&o.mgmtURL, "mgmt-url", "http://guest:guest@127.0.0.1:15672", "RabbitMQ management API, to count queues and bindings; empty: don't")
	fs.StringVar(&o.url, "url", "", "load the eventsproxy at this base URL instead of starting one")
	fs.IntVar(&o.serverPID, "server-pid", 0, "with --url: the server's pid, for its RSS and CPU")
	fs.StringVar(&o.serverCmd, "server-cmd", "", "start the server with this command line (it must log msg=listening addr=… on stderr)")
	fs.StringVar(&o.serverBin, "server-bin", "", "run this eventsproxy binary (with the usual serve flags) instead of building ./cmd/eventsproxy")
	fs.Var(&o.serverArgs, "server-arg", "extra flag for the started server, e.g. --server-arg=--client-buffer=100 (repeatable)")
	fs.StringVar(&o.profileDir, "profile", "", "run the server as `eventsload serve-profiled` and write its CPU and heap profiles of each run's measured phase to this directory")
	fs.StringVar(&o.toolProfile, "tool-profile", "", "write a CPU profile of the tool itself, over the whole command, to this `file` (the tool shares the machine's cores with the server)")
	fs.StringVar(&o.serverLog, "server-log", "", "append the started server's log to this file")
	fs.BoolVar(&o.h2, "h2", false, "serve over TLS with a certificate the tool makes, and open the streams over HTTP/2 (Go's client: many streams per connection, as a browser does)")
	fs.StringVar(&o.tokenSecret, "token-secret", "", "turn access control on: the started server gets --token-secrets with this HMAC `secret` (32 bytes or more), and every stream presents a token minted with it that grants # on the tool's eventsload/ exchanges")
	fs.IntVar(&o.runs, "runs", 3, "runs of the scenario (a fresh server each); medians are reported")
	fs.BoolVar(&o.json, "json", false, "print the report as JSON instead of a table")
	fs.BoolVar(&o.quiet, "quiet", false, "no progress lines on stderr")
}

// run dispatches to a subcommand and returns the process's exit code.
func run(ctx context.Context, args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	switch args[0] {
	case "help", "-h", "-help", "--help":
		fmt.Fprint(stdout, usage)
		return 0
	case "serve-profiled":
		return serveProfiled(ctx, args[1:], getenv, stderr)
	}
	sc, ok := scenarios()[args[0]]
	if !ok {
		fmt.Fprintf(stderr, "eventsload: unknown scenario %q\n\n%s", args[0], usage)
		return 2
	}
	fs := flag.NewFlagSet("eventsload "+args[0], flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o options
	o.register(fs, getenv)
	sc.flags(fs)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "eventsload: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if o.toolProfile != "" {
		f, err := os.Create(o.toolProfile)
		if err != nil {
			fmt.Fprintf(stderr, "eventsload: %v\n", err)
			return 1
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintf(stderr, "eventsload: %v\n", err)
			return 1
		}
		defer pprof.StopCPUProfile()
	}
	rep, err := runScenario(ctx, sc, &o, stderr)
	if rep != nil && len(rep.Runs) > 0 {
		rep.Summarize()
		if o.json {
			_ = load.WriteJSON(stdout, []*load.Report{rep})
		} else {
			rep.WriteTable(stdout)
		}
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsload: %v\n", err)
		return 1
	}
	return 0
}
