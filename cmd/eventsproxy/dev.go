package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"sync"

	"eventsproxy/internal/config"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/server"
	"eventsproxy/internal/taskgen"
)

// dev runs the service as serve does, but on an in-process broker fed with
// generated Taskcluster-like messages, until ctx is done; then it drains and
// returns 0. Nothing leaves the process: it needs no RabbitMQ.
func dev(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, err := config.Load(config.Dev, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy dev: bad configuration:\n%v\n", err)
		return 2
	}
	log := server.NewLogger(cfg, stderr)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy dev: %v\n", err)
		return 1
	}

	mb := membroker.New()
	for _, ex := range taskgen.Exchanges() {
		mb.DeclareExchange(ex)
	}
	genCtx, stopGen := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		if err := taskgen.Run(genCtx, cfg.DevRate, rnd, mb.Publish); err != nil {
			log.Error("message generator stopped", "err", err)
		}
	})
	err = server.Run(ctx, cfg, mb, ln, log, func(url string) {
		fmt.Fprintf(stdout, "eventsproxy dev: open %s/ to watch Taskcluster-like messages (%s; nothing leaves this process)\n", url, mb)
	})
	stopGen()
	wg.Wait()
	if err != nil {
		return 1
	}
	return 0
}
