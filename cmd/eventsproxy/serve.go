package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/server"
)

// serve runs the service against RabbitMQ until ctx is done, then drains and
// returns 0.
func serve(ctx context.Context, args []string, getenv func(string) string, _ io.Reader, _, stderr io.Writer) int {
	cfg, err := config.Load(config.Serve, args, getenv, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy serve: bad configuration:\n%v\n", err)
		return 2
	}
	log := server.NewLogger(cfg, stderr)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy serve: %v\n", err)
		return 1
	}
	d := broker.AMQP(broker.AMQPConfig{
		URL:            cfg.AMQPURL,
		ConnectionName: "eventsproxy serve",
		QueuePrefix:    cfg.QueuePrefix,
		QueueMaxLength: cfg.QueueMaxLength,
		QueueMaxBytes:  cfg.QueueMaxBytes,
	})
	if err := server.Run(ctx, cfg, d, ln, log, nil); err != nil {
		return 1
	}
	return 0
}
