package main

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"sync"

	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/server"
	"eventsproxy/internal/taskgen"
)

// dev runs the service as serve does, but on an in-process broker fed with
// generated Taskcluster-like messages, until ctx is done; then it drains and
// returns 0. Nothing leaves the process: it needs no RabbitMQ.
func dev(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, code := loadConfig(config.Dev, args, getenv, stdout, stderr)
	if cfg == nil {
		return code
	}
	log := server.NewLogger(cfg, stderr)
	ln := listenOn(config.Dev, cfg, stderr)
	if ln == nil {
		return 1
	}

	mb := membroker.New()
	for _, ex := range taskgen.Exchanges() {
		mb.DeclareExchange(ex)
	}
	// RabbitMQ's own topic exchange, which the examples of docs/api.md
	// use, and which `publish --dev-url` can publish to.
	mb.DeclareExchange("amq.topic")
	genCtx, stopGen := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() {
		rnd := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
		// With the properties Taskcluster's publishers give: JSON, persistent.
		props := &broker.Properties{ContentType: "application/json", DeliveryMode: 2}
		publish := func(exchange, key string, cc []string, body []byte) error {
			return mb.PublishWith(exchange, key, cc, body, props)
		}
		if err := taskgen.Run(genCtx, cfg.DevRate, rnd, publish); err != nil {
			log.Error("message generator stopped", "err", err)
		}
	})
	err := server.Run(ctx, cfg, mb, ln, log, func(url string) {
		fmt.Fprintf(stdout, "eventsproxy dev: open %s/ to watch Taskcluster-like messages (%s; nothing leaves this process)\n", url, mb)
	}, server.WithRoute(membroker.PublishPath, mb.PublishHandler()),
		server.WithInspector(api.InspectorConfig{Dev: true, Exchanges: append(taskgen.Exchanges(), "amq.topic")}))
	stopGen()
	wg.Wait()
	if err != nil {
		return 1
	}
	return 0
}
