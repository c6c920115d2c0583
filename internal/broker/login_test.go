package broker

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"
)

// refusingDialer refuses every login, as RabbitMQ does a wrong password,
// after handing out the connections in first, if any.
type refusingDialer struct{ first chan Conn }

func (d refusingDialer) Dial(context.Context) (Conn, error) {
	select {
	case c := <-d.first:
		return c, nil
	default:
		return nil, fmt.Errorf("dial amqp://me:xxxxx@h/: %w of user %q", ErrLoginRefused, "me")
	}
}

func (refusingDialer) String() string { return "amqp://me:xxxxx@h/" }

// lockedBuffer is a bytes.Buffer for a logger and a test at once.
type lockedBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	select {
	case l.wrote <- struct{}{}:
	default:
	}
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// TestLoginRefusedAtFirst checks that Run gives up at once when its first
// login is refused, a configuration that retrying cannot mend, and that
// AttemptErr says why.
func TestLoginRefusedAtFirst(t *testing.T) {
	t.Parallel()
	logs := lockedBuffer{wrote: make(chan struct{}, 1)}
	b := New(refusingDialer{}, Config{}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := b.Run(ctx); !errors.Is(err, ErrLoginRefused) {
		t.Errorf("Run() = %v, want ErrLoginRefused", err)
	}
	<-b.Attempted()
	if err := b.AttemptErr(); !errors.Is(err, ErrLoginRefused) {
		t.Errorf("AttemptErr() = %v, want ErrLoginRefused", err)
	}
}

// TestLoginRefusedLater checks that a refused login after the first
// connection (a password changed under a running service) is retried, and
// logged at ERROR with the user.
func TestLoginRefusedLater(t *testing.T) {
	t.Parallel()
	logs := lockedBuffer{wrote: make(chan struct{}, 1)}
	first := make(chan Conn, 1)
	conn := newOpConn()
	first <- conn
	b := New(refusingDialer{first}, Config{MinBackoff: 10 * time.Millisecond, MaxBackoff: 10 * time.Millisecond}, slog.New(slog.NewTextHandler(&logs, nil)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- b.Run(ctx) }()
	<-b.Attempted()
	if err := b.AttemptErr(); err != nil {
		t.Errorf("AttemptErr() = %v after a connection", err)
	}
	conn.Close()
	deadline := time.After(30 * time.Second)
	for !strings.Contains(logs.String(), "level=ERROR") {
		select {
		case <-logs.wrote:
		case <-deadline:
			t.Fatalf("nothing logged at ERROR:\n%s", logs.String())
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if l := logs.String(); !strings.Contains(l, `user \"me\"`) {
		t.Errorf("the ERROR line does not name the user:\n%s", l)
	}
}
