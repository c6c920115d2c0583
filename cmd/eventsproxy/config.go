package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"syscall"

	"eventsproxy/internal/config"
)

// loadConfig loads the configuration of serve or dev. It prints the help
// to stdout when asked for it, and otherwise what is wrong to stderr, and
// then returns nil and the exit code.
func loadConfig(cmd config.Command, args []string, getenv func(string) string, stdout, stderr io.Writer) (*config.Config, int) {
	cfg, err := config.Load(cmd, args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, config.Help(cmd))
		return nil, 0
	}
	if _, ok := errors.AsType[*config.FlagError](err); ok {
		fmt.Fprintf(stderr, "eventsproxy %s: %v\nRun 'eventsproxy %s --help' for the flags.\n", cmd, err, cmd)
		return nil, 2
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy %s: bad configuration:\n%v\nRun 'eventsproxy %s --help' for the flags.\n", cmd, err, cmd)
		return nil, 2
	}
	return cfg, 0
}

// listenOn listens where cfg says. When it cannot, it prints why to
// stderr, with a way out when the address is taken, and returns nil.
func listenOn(cmd config.Command, cfg *config.Config, stderr io.Writer) net.Listener {
	ln, err := net.Listen("tcp", cfg.Listen)
	if err == nil {
		return ln
	}
	if errors.Is(err, syscall.EADDRINUSE) {
		fmt.Fprintf(stderr, "eventsproxy %s: %s is in use, by another program (or another eventsproxy); pick another address with --listen, e.g. --listen %s\n", cmd, cfg.Listen, otherPort(cfg.Listen))
		return nil
	}
	fmt.Fprintf(stderr, "eventsproxy %s: cannot listen on %s: %v\n", cmd, cfg.Listen, err)
	return nil
}

// otherPort returns addr with port 0, which the system replaces by a free
// one.
func otherPort(addr string) string {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "127.0.0.1:0"
	}
	return net.JoinHostPort(host, "0")
}
