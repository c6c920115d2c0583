package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
)

// serve runs the service until ctx is done, then drains: streams get an
// `error` event and end, the broker connection closes (taking our queue and
// bindings with it), and serve returns 0.
func serve(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	cfg, err := config.Load(args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy serve: bad configuration:\n%v\n", err)
		return 2
	}
	log := newLogger(cfg, stderr)

	b := broker.New(broker.AMQP(broker.AMQPConfig{
		URL:            cfg.AMQPURL,
		ConnectionName: "eventsproxy serve",
		QueuePrefix:    cfg.QueuePrefix,
		QueueMaxLength: cfg.QueueMaxLength,
		QueueMaxBytes:  cfg.QueueMaxBytes,
	}), broker.Config{ClientBuffer: cfg.ClientBuffer}, log)
	h := api.NewHandler(api.Config{
		PingInterval: cfg.PingInterval,
		WriteTimeout: cfg.WriteTimeout,
		CORSOrigin:   cfg.CORSOrigin,
		Limits: binding.Limits{
			MaxBindings:      cfg.MaxBindings,
			AllowedExchanges: cfg.AllowedExchanges,
		},
	}, b, log)

	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		log.Error("listen", "err", err)
		return 1
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    256 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		_ = b.Run(brokerCtx)
	}()
	// Serve once the first broker connection attempt is over, so that a
	// client that connects as soon as we log "listening" is served.
	select {
	case <-b.Attempted():
	case <-ctx.Done():
	}
	serveErr := make(chan error, 1)
	go func() {
		defer wg.Done()
		serveErr <- srv.Serve(ln)
	}()
	log.Info("listening", "addr", ln.Addr().String(), "root_url", cfg.RootURL, "broker", broker.Redact(cfg.AMQPURL))

	code := 0
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err := <-serveErr:
		log.Error("serve", "err", err)
		code = 1
	}
	h.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil {
		log.Warn("streams still open at shutdown deadline; closing them", "err", err)
		_ = srv.Close()
		code = 1
	}
	stopBroker()
	wg.Wait()
	log.Info("stopped")
	return code
}

func newLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
