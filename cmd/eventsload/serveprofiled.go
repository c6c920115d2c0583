package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"sync"
	"syscall"

	"eventsproxy/internal/config"
	"eventsproxy/internal/server"
)

// serveProfiled runs the service as `eventsproxy serve` does, wired the
// same way, and profiles it on request: SIGUSR1 starts a CPU profile,
// SIGUSR2 stops it and writes it and a heap profile into the profile
// directory, then logs `msg="profile written" cpu=… heap=…`.
func serveProfiled(ctx context.Context, args []string, getenv func(string) string, stderr io.Writer) int {
	fs := flag.NewFlagSet("eventsload serve-profiled", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("profile-dir", "", "directory for the profiles (required)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" {
		fmt.Fprintln(stderr, "eventsload serve-profiled: --profile-dir is required")
		return 2
	}
	cfg, err := config.Load(config.Serve, fs.Args(), getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stderr, config.Help(config.Serve))
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsload serve-profiled: bad configuration:\n%v\n", err)
		return 2
	}
	log := server.NewLogger(cfg, stderr)
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		fmt.Fprintf(stderr, "eventsload serve-profiled: %v\n", err)
		return 1
	}
	d := server.AMQP(cfg, "eventsproxy serve (eventsload serve-profiled)")

	p := &profiler{dir: *dir, log: log}
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGUSR1, syscall.SIGUSR2)
	var wg sync.WaitGroup
	done := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-done:
				return
			case s := <-sigs:
				if s == syscall.SIGUSR1 {
					p.start()
				} else {
					p.stop()
				}
			}
		}
	}()
	err = server.Run(ctx, cfg, d, ln, log, nil)
	signal.Stop(sigs)
	close(done)
	wg.Wait()
	p.stop()
	if err != nil {
		return 1
	}
	return 0
}

// profiler owns the CPU profile between SIGUSR1 and SIGUSR2.
type profiler struct {
	dir string
	log *slog.Logger
	n   int
	cpu *os.File
}

func (p *profiler) start() {
	if p.cpu != nil {
		return
	}
	p.n++
	f, err := os.Create(filepath.Join(p.dir, fmt.Sprintf("cpu-%d.pprof", p.n)))
	if err != nil {
		p.log.Error("profile", "err", err)
		return
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		p.log.Error("profile", "err", err)
		return
	}
	p.cpu = f
}

func (p *profiler) stop() {
	if p.cpu == nil {
		return
	}
	pprof.StopCPUProfile()
	cpu := p.cpu.Name()
	p.cpu.Close()
	p.cpu = nil
	heap := filepath.Join(p.dir, fmt.Sprintf("heap-%d.pprof", p.n))
	// The heap profile shows the state at the last GC: collect first so
	// that it is the live heap now.
	runtime.GC()
	f, err := os.Create(heap)
	if err == nil {
		err = errors.Join(pprof.Lookup("heap").WriteTo(f, 0), f.Close())
	}
	if err != nil {
		p.log.Error("profile", "err", err)
		return
	}
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	p.log.Info("profile written", "cpu", cpu, "heap", heap,
		"goroutines", runtime.NumGoroutine(), "heap_inuse", ms.HeapInuse, "stack_inuse", ms.StackInuse, "sys", ms.Sys)
}
