package main

import (
	"context"
	"io"

	"eventsproxy/internal/config"
	"eventsproxy/internal/server"
)

// serve runs the service against RabbitMQ until ctx is done, then drains and
// returns 0.
func serve(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	cfg, code := loadConfig(config.Serve, args, getenv, stdout, stderr)
	if cfg == nil {
		return code
	}
	log := server.NewLogger(cfg, stderr)
	ln := listenOn(config.Serve, cfg, stderr)
	if ln == nil {
		return 1
	}
	if err := server.Run(ctx, cfg, server.AMQP(cfg, "eventsproxy serve"), ln, log, nil); err != nil {
		return 1
	}
	return 0
}
