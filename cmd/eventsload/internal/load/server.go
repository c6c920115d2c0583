package load

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Target is the eventsproxy under load.
type Target struct {
	// URL is the server's base URL, http://host:port, or https://host:port
	// for a server that serves HTTP/2 over TLS.
	URL string
	// TLS trusts the certificate of an https:// server.
	TLS *tls.Config
	// Token, when not empty, is presented by every stream as
	// Authorization: Bearer, for a server with access control on.
	Token string
	// PID is the server's process id, for its RSS and CPU; 0 when unknown
	// (or when the server runs inside the tool), which leaves those
	// figures out.
	PID int
	// QueuePrefix starts the name of the server's broker queue, for
	// counting its queues on the management API; "" leaves that out.
	QueuePrefix string
	// Profiler, when not nil, profiles the server during each scenario's
	// measured phase.
	Profiler Profiler
}

// Profiler starts and stops profiles of the server.
type Profiler interface {
	// StartProfile starts a CPU profile.
	StartProfile() error
	// StopProfile stops it, writes it and a heap profile under names
	// starting with name, and returns once they are written, with the
	// server's runtime figures at that time (goroutines, heap_inuse,
	// stack_inuse, sys).
	StopProfile(name string) (map[string]float64, error)
}

// Server is an eventsproxy process started by the tool.
type Server struct {
	Target
	cmd        *exec.Cmd
	profileDir string
	profiles   chan string // paths the server reports it wrote
	waited     chan struct{}
	waitErr    error

	mu   sync.Mutex
	tail []string // its last log lines, for errors
	log  io.Writer
}

var listeningRE = regexp.MustCompile(`msg=listening addr=(\S+)(?: url=(https?://\S+))?`)
var profileRE = regexp.MustCompile(`msg="profile written" cpu=(\S+) heap=(\S+)(.*)`)

// StartServer runs argv and waits until it logs `msg=listening addr=…` on
// stderr (the text log format); the url= that follows, if any, is the
// server's base URL, else http://addr is. Everything it logs is copied to
// log when log is not nil. With profileDir set, argv must be the tool's own
// serve-profiled command: profiles are then taken through signals.
func StartServer(ctx context.Context, argv []string, queuePrefix, profileDir string, log io.Writer) (*Server, error) {
	cmd := exec.Command(argv[0], argv[1:]...)
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start server: %w", err)
	}
	s := &Server{
		cmd:        cmd,
		profileDir: profileDir,
		profiles:   make(chan string, 1),
		waited:     make(chan struct{}),
		log:        log,
	}
	s.PID = cmd.Process.Pid
	s.QueuePrefix = queuePrefix
	if profileDir != "" {
		s.Profiler = s
	}
	addr := make(chan string, 1)
	go func() {
		// The server's stderr is drained to its end, so it never blocks
		// on a full pipe.
		sc := bufio.NewScanner(stderr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		found := false
		for sc.Scan() {
			line := sc.Text()
			s.keep(line)
			if !found {
				if m := listeningRE.FindStringSubmatch(line); m != nil {
					if m[2] != "" {
						addr <- m[2]
					} else {
						addr <- "http://" + m[1]
					}
					found = true
				}
			}
			if m := profileRE.FindStringSubmatch(line); m != nil {
				select {
				case s.profiles <- m[1] + " " + m[2] + " " + m[3]:
				default:
				}
			}
		}
		_, _ = io.Copy(io.Discard, stderr)
		s.waitErr = cmd.Wait()
		close(s.waited)
	}()
	select {
	case u := <-addr:
		s.URL = u
		return s, nil
	case <-s.waited:
		return nil, fmt.Errorf("server exited before listening (%v):\n%s", s.waitErr, s.Tail())
	case <-time.After(30 * time.Second):
		s.Stop()
		return nil, fmt.Errorf("server did not listen within 30s:\n%s", s.Tail())
	case <-ctx.Done():
		s.Stop()
		return nil, ctx.Err()
	}
}

func (s *Server) keep(line string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.log != nil {
		fmt.Fprintln(s.log, line)
	}
	s.tail = append(s.tail, line)
	if len(s.tail) > 20 {
		s.tail = s.tail[1:]
	}
}

// Tail returns the server's last log lines.
func (s *Server) Tail() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.tail, "\n")
}

// Stop sends SIGTERM and waits up to 20s for the server to drain and exit,
// then kills it.
func (s *Server) Stop() error {
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.waited:
	case <-time.After(20 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.waited
		return errors.New("server did not exit within 20s of SIGTERM; killed")
	}
	if s.waitErr != nil {
		return fmt.Errorf("server: %v\n%s", s.waitErr, s.Tail())
	}
	return nil
}

// StartProfile implements Profiler: SIGUSR1 starts the server's CPU
// profile.
func (s *Server) StartProfile() error {
	return s.cmd.Process.Signal(syscall.SIGUSR1)
}

// StopProfile implements Profiler: SIGUSR2 makes the server write its CPU
// and heap profiles; they are renamed to name-cpu.pprof and
// name-heap.pprof in the profile directory.
func (s *Server) StopProfile(name string) (map[string]float64, error) {
	if err := s.cmd.Process.Signal(syscall.SIGUSR2); err != nil {
		return nil, err
	}
	select {
	case line := <-s.profiles:
		f := strings.Fields(line)
		base := s.profileDir + "/" + name
		stats := map[string]float64{}
		for _, kv := range f[2:] {
			k, v, _ := strings.Cut(kv, "=")
			if n, err := strconv.ParseFloat(v, 64); err == nil {
				stats[k] = n
			}
		}
		return stats, errors.Join(os.Rename(f[0], base+"-cpu.pprof"), os.Rename(f[1], base+"-heap.pprof"))
	case <-time.After(60 * time.Second):
		return nil, errors.New("server did not write its profiles within 60s")
	case <-s.waited:
		return nil, errors.New("server exited")
	}
}
