package listen

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/sse"
)

// Messages as the server sends them.
const (
	msg1 = `{"exchange":"exchange/taskcluster-queue/v1/task-completed","routingKey":"primary.abc.0.w.i-1.proj.b-linux.tc-github.grp._","redelivered":false,"routes":["index.project.x","checks"],"payload":{"status":{"taskId":"abc","state":"completed"},"runId":0}}`
	msg2 = `{"exchange":"amq.topic","routingKey":"a.b","redelivered":true,"routes":[],"payload":"plain text"}`
)

var testBindings = []binding.Binding{{Exchange: "exchange/taskcluster-queue/v1/task-completed", RoutingKeyPattern: "#"}}

// event is one event of a scripted stream.
type event struct{ kind, data string }

// stream returns the wire form of events.
func stream(events ...event) []byte {
	var b []byte
	for _, ev := range events {
		b = sse.AppendEvent(b, ev.kind, []byte(ev.data))
	}
	return b
}

// sseServer serves one scripted event stream on every request: it writes
// the events, then holds the stream open until the client goes when hold
// is set, or ends it. It returns the server and the requests it got.
func sseServer(t testing.TB, script []byte, hold bool) (*httptest.Server, <-chan *http.Request) {
	t.Helper()
	reqs := make(chan *http.Request, 10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		reqs <- r
		w.Header().Set("Content-Type", "text/event-stream")
		w.Header().Set("Cache-Control", "no-cache")
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(script)
		http.NewResponseController(w).Flush()
		if hold {
			<-r.Context().Done()
		}
	}))
	t.Cleanup(srv.Close)
	return srv, reqs
}

// notifyBuffer is a buffer that may be written by one goroutine while
// another waits for text to appear in it.
type notifyBuffer struct {
	mu      sync.Mutex
	buf     bytes.Buffer
	written chan struct{} // one slot: a write since the last look
}

func newNotifyBuffer() *notifyBuffer {
	return &notifyBuffer{written: make(chan struct{}, 1)}
}

func (b *notifyBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	select {
	case b.written <- struct{}{}:
	default:
	}
	return b.buf.Write(p)
}

func (b *notifyBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// waitFor waits until s has been written, failing the test after 10s.
func (b *notifyBuffer) waitFor(t testing.TB, s string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for !strings.Contains(b.String(), s) {
		select {
		case <-b.written:
		case <-deadline:
			t.Fatalf("%q not written within 10s; have %q", s, b.String())
		}
	}
}

func TestRun(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		script     []byte
		hold       bool // the server keeps the stream open after the script
		opts       Options
		wantCode   int
		wantStdout string
		wantStderr []string // each in stderr
		wantErr    string   // in the error
	}{
		{
			name:       "count reached",
			script:     stream(event{"ready", "{}"}, event{"message", msg1}, event{"message", msg2}, event{"message", msg1}),
			hold:       true,
			opts:       Options{Count: 2},
			wantCode:   ExitOK,
			wantStdout: msg1 + "\n" + msg2 + "\n",
			wantStderr: []string{"listening: 1 binding\n"},
		},
		{
			name:       "ping ignored",
			script:     stream(event{"ready", "{}"}, event{"ping", `{"time":"2026-11-27T05:00:00.000Z"}`}, event{"message", msg2}),
			hold:       true,
			opts:       Options{Count: 1},
			wantCode:   ExitOK,
			wantStdout: msg2 + "\n",
		},
		{
			name:       "unknown event kind ignored",
			script:     stream(event{"ready", "{}"}, event{"future", `{}`}, event{"message", msg2}),
			hold:       true,
			opts:       Options{Count: 1},
			wantCode:   ExitOK,
			wantStdout: msg2 + "\n",
		},
		{
			name:       "overflow",
			script:     stream(event{"ready", "{}"}, event{"overflow", `{"dropped":3}`}, event{"message", msg1}),
			hold:       true,
			opts:       Options{Count: 1},
			wantCode:   ExitOK,
			wantStdout: msg1 + "\n",
			wantStderr: []string{"warning: the server dropped 3 messages because this client fell behind\n"},
		},
		{
			name:       "uncounted overflow",
			script:     stream(event{"ready", "{}"}, event{"overflow", `{"dropped":0,"uncounted":true}`}, event{"message", msg1}),
			hold:       true,
			opts:       Options{Count: 1},
			wantCode:   ExitOK,
			wantStdout: msg1 + "\n",
			wantStderr: []string{"warning: messages may be missing: the service fell behind the broker and cannot tell how many\n"},
		},
		{
			name:       "server error after a message",
			script:     stream(event{"ready", "{}"}, event{"message", msg1}, event{"error", `"The server is shutting down; please reconnect."`}),
			wantCode:   ExitFailed,
			wantStdout: msg1 + "\n",
			wantErr:    "server error: The server is shutting down; please reconnect.",
		},
		{
			name:     "server error before ready",
			script:   stream(event{"error", `"Bindings must be an array of {exchange, routingKeyPattern}"`}),
			wantCode: ExitFailed,
			wantErr:  "server error: Bindings must be an array of {exchange, routingKeyPattern}",
		},
		{
			name:       "stream ends without error",
			script:     stream(event{"ready", "{}"}, event{"message", msg2}),
			wantCode:   ExitFailed,
			wantStdout: msg2 + "\n",
			wantErr:    "the stream ended unexpectedly",
		},
		{
			name:     "stream ends inside an event",
			script:   []byte("event: ready\ndata: {}\nid: -\n\nevent: message\ndata: {\"exch"),
			wantCode: ExitFailed,
			wantErr:  "the stream ended unexpectedly",
		},
		{
			name:       "JSON on a terminal with --json",
			script:     stream(event{"ready", "{}"}, event{"message", msg1}),
			hold:       true,
			opts:       Options{Count: 1, Terminal: true, JSON: true},
			wantCode:   ExitOK,
			wantStdout: msg1 + "\n",
		},
		{
			name:       "summary without colours",
			script:     stream(event{"ready", "{}"}, event{"message", msg1}),
			hold:       true,
			opts:       Options{Count: 1, Terminal: true, NoColor: true},
			wantCode:   ExitOK,
			wantStdout: `12:34:56.789  queue/task-completed  primary.abc.0.w.i-1.proj.b-linux.tc-github.grp._  2 routes  {"status":{"taskId":"abc","state":"completed"},"runId":0}` + "\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv, _ := sseServer(t, tt.script, tt.hold)
			opts := tt.opts
			opts.URL = srv.URL
			opts.Bindings = testBindings
			opts.Timeout = 10 * time.Second
			opts.now = func() time.Time { return time.Date(2026, 11, 27, 12, 34, 56, 789e6, time.Local) }
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), &opts, &stdout, &stderr)
			if code := ExitCode(err); code != tt.wantCode {
				t.Errorf("exit code %d (error %v), want %d", code, err, tt.wantCode)
			}
			if tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("error %v, want one containing %q", err, tt.wantErr)
			}
			if got := stdout.String(); got != tt.wantStdout {
				t.Errorf("stdout =\n%q\nwant\n%q", got, tt.wantStdout)
			}
			for _, w := range tt.wantStderr {
				if !strings.Contains(stderr.String(), w) {
					t.Errorf("stderr %q does not contain %q", stderr.String(), w)
				}
			}
		})
	}
}

func TestRunRequest(t *testing.T) {
	t.Parallel()
	srv, reqs := sseServer(t, stream(event{"ready", "{}"}, event{"message", msg2}), true)
	bs := []binding.Binding{
		{Exchange: "exchange/taskcluster-queue/v1/task-completed", RoutingKeyPattern: "primary.#"},
		{Exchange: "amq.topic", RoutingKeyPattern: "a.*"},
	}
	var stderr bytes.Buffer
	err := Run(context.Background(), &Options{URL: srv.URL + "/", Bindings: bs, Count: 1}, io.Discard, &stderr)
	if err != nil {
		t.Fatal(err)
	}
	r := <-reqs
	if r.URL.Path != "/api/events/v1/connect/" {
		t.Errorf("path %q", r.URL.Path)
	}
	if got := r.Header.Get("Accept"); got != "text/event-stream" {
		t.Errorf("Accept %q", got)
	}
	if got := r.Header.Get("Last-Event-ID"); got != "" {
		t.Errorf("Last-Event-ID %q: the server would answer 204", got)
	}
	got, err := binding.FromQuery(r.URL.Query(), binding.Limits{})
	if err != nil {
		t.Fatalf("server reading the bindings: %v", err)
	}
	if len(got) != 2 || got[0] != bs[0] || got[1] != bs[1] {
		t.Errorf("bindings = %+v, want %+v", got, bs)
	}
	if r.URL.Query().Has("properties") {
		t.Errorf("properties asked for without --properties: %s", r.URL)
	}
	if want := "listening: 2 bindings\n"; stderr.String() != want {
		t.Errorf("stderr %q, want %q", stderr.String(), want)
	}
}

// TestRunProperties: --properties asks for them, and the JSON lines carry
// them as the server sent them.
func TestRunProperties(t *testing.T) {
	t.Parallel()
	const data = `{"exchange":"amq.topic","routingKey":"a","redelivered":false,"routes":[],"payload":1,"properties":{"type":"t"},"headers":{"h":"v"}}`
	srv, reqs := sseServer(t, stream(event{"ready", "{}"}, event{"message", data}), true)
	var stdout bytes.Buffer
	opts := &Options{URL: srv.URL, Bindings: testBindings, Count: 1, Properties: true}
	if err := Run(context.Background(), opts, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	if r := <-reqs; r.URL.Query().Get("properties") != "1" {
		t.Errorf("request %s does not ask for properties=1", r.URL)
	}
	if got := stdout.String(); got != data+"\n" {
		t.Errorf("stdout %q, want %q", got, data+"\n")
	}
}

func TestRunColors(t *testing.T) {
	t.Parallel()
	srv, _ := sseServer(t, stream(event{"ready", "{}"}, event{"message", msg1}), true)
	var stdout bytes.Buffer
	opts := &Options{URL: srv.URL, Bindings: testBindings, Count: 1, Terminal: true}
	if err := Run(context.Background(), opts, &stdout, io.Discard); err != nil {
		t.Fatal(err)
	}
	out := stdout.String()
	for _, want := range []string{"\x1b[36mqueue/task-completed\x1b[0m", "\x1b[32mprimary.abc.0.w.i-1.proj.b-linux.tc-github.grp._\x1b[0m", "\x1b[35m2 routes\x1b[0m", `{"status":`} {
		if !strings.Contains(out, want) {
			t.Errorf("summary %q does not contain %q", out, want)
		}
	}
	if strings.Count(out, "\n") != 1 || !strings.HasSuffix(out, "\n") {
		t.Errorf("summary %q is not one line", out)
	}
}

// TestRunInterrupt: a listen that is interrupted exits 0.
func TestRunInterrupt(t *testing.T) {
	t.Parallel()
	srv, _ := sseServer(t, stream(event{"ready", "{}"}, event{"message", msg2}), true)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	stdout, stderr := newNotifyBuffer(), newNotifyBuffer()
	done := make(chan error, 1)
	go func() {
		done <- Run(ctx, &Options{URL: srv.URL, Bindings: testBindings}, stdout, stderr)
	}()
	stdout.waitFor(t, msg2)
	cancel()
	select {
	case err := <-done:
		if err != nil || ExitCode(err) != ExitOK {
			t.Errorf("Run after interrupt = %v, want nil", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return within 10s of the interrupt")
	}
	if !strings.Contains(stderr.String(), "listening: 1 binding") {
		t.Errorf("stderr %q", stderr.String())
	}
}

func TestRunRefused(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		handler http.HandlerFunc
		want    []string
	}{
		{
			name: "503 with JSON body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json")
				w.Header().Set("Retry-After", "5")
				w.WriteHeader(http.StatusServiceUnavailable)
				_, _ = io.WriteString(w, `{"code":"ServiceUnavailable","message":"The service is temporarily unavailable; please reconnect later."}`)
			},
			want: []string{"answered 503 Service Unavailable: The service is temporarily unavailable; please reconnect later. (retry after 5 s)"},
		},
		{
			name: "429",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusTooManyRequests)
				_, _ = io.WriteString(w, `{"code":"TooManyRequests","message":"Too many streams from your address."}`)
			},
			want: []string{"429 Too Many Requests: Too many streams from your address."},
		},
		{
			name:    "404 not JSON",
			handler: func(w http.ResponseWriter, r *http.Request) { http.NotFound(w, r) },
			want:    []string{"/api/events/v1/connect/ answered 404 Not Found: 404 page not found"},
		},
		{
			name: "204",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			},
			want: []string{"answered 204 No Content"},
		},
		{
			name: "200 but not an event stream",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, "<html>")
			},
			want: []string{`answered 200 OK: not an event stream but "text/html"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := httptest.NewServer(tt.handler)
			defer srv.Close()
			var stdout, stderr bytes.Buffer
			err := Run(context.Background(), &Options{URL: srv.URL, Bindings: testBindings}, &stdout, &stderr)
			if code := ExitCode(err); code != ExitConnect {
				t.Errorf("exit code %d (error %v), want %d", code, err, ExitConnect)
			}
			if _, ok := errors.AsType[*ConnectError](err); !ok {
				t.Errorf("error %T, want *ConnectError", err)
			}
			for _, w := range tt.want {
				if err == nil || !strings.Contains(err.Error(), w) {
					t.Errorf("error %v does not contain %q", err, w)
				}
			}
			if err != nil && strings.Contains(err.Error(), "bindings=") {
				t.Errorf("error %q repeats the query", err)
			}
			if stdout.Len() > 0 || stderr.Len() > 0 {
				t.Errorf("output %q, %q; want none", stdout.String(), stderr.String())
			}
		})
	}
}

func TestRunCannotConnect(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close() // nothing listens there any more
	err := Run(context.Background(), &Options{URL: "http://user:secret@" + strings.TrimPrefix(url, "http://"), Bindings: testBindings}, io.Discard, io.Discard)
	if code := ExitCode(err); code != ExitConnect {
		t.Fatalf("exit code %d (error %v), want %d", code, err, ExitConnect)
	}
	text := err.Error()
	if !strings.Contains(text, "cannot connect to http://user:xxxxx@127.0.0.1") || !strings.Contains(text, "refused") {
		t.Errorf("error %q", text)
	}
	if strings.Contains(text, "secret") || strings.Contains(text, "bindings") {
		t.Errorf("error %q shows the password or the query", text)
	}
}

// fakeStream is a transport whose one response is an event stream that
// the test writes into with write, in the synctest bubble.
type fakeStream struct {
	write func(pw *io.PipeWriter) // run by a goroutine of its own; nil writes nothing
}

func (f fakeStream) RoundTrip(req *http.Request) (*http.Response, error) {
	pr, pw := io.Pipe()
	// As a real transport does, a cancelled request ends reads of the
	// body at once, whatever the writer is doing.
	go func() {
		<-req.Context().Done()
		pw.CloseWithError(req.Context().Err())
	}()
	if f.write != nil {
		go f.write(pw) // its writes fail once the pipe is closed
	}
	return &http.Response{
		StatusCode: http.StatusOK,
		Status:     "200 OK",
		Header:     http.Header{"Content-Type": {"text/event-stream"}},
		Body:       pr,
		Request:    req,
	}, nil
}

// silentServer is a transport that never answers.
type silentServer struct{}

func (silentServer) RoundTrip(req *http.Request) (*http.Response, error) {
	<-req.Context().Done()
	return nil, req.Context().Err()
}

func TestRunReadyTimeout(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		transport http.RoundTripper
	}{
		{"stream without ready", fakeStream{}},
		{"stream with only pings", fakeStream{write: func(pw *io.PipeWriter) {
			for range 3 {
				time.Sleep(10 * time.Second)
				_, _ = pw.Write(stream(event{"ping", "{}"}))
			}
		}}},
		{"no answer", silentServer{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				start := time.Now()
				opts := &Options{URL: "http://h", Bindings: testBindings, Timeout: 30 * time.Second,
					Client: &http.Client{Transport: tt.transport}}
				err := Run(context.Background(), opts, io.Discard, io.Discard)
				if code := ExitCode(err); code != ExitTimeout {
					t.Errorf("exit code %d (error %v), want %d", code, err, ExitTimeout)
				}
				if err == nil || !strings.Contains(err.Error(), "http://h/api/events/v1/connect/ did not send ready within 30s") {
					t.Errorf("error %v", err)
				}
				if d := time.Since(start); d != 30*time.Second {
					t.Errorf("gave up after %v, want 30s", d)
				}
			})
		})
	}
}

// TestRunReadyInTime: the timeout covers only the wait for ready.
func TestRunReadyInTime(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		script := fakeStream{write: func(pw *io.PipeWriter) {
			time.Sleep(29 * time.Second)
			_, _ = pw.Write(stream(event{"ready", "{}"}))
			time.Sleep(time.Minute)
			_, _ = pw.Write(stream(event{"message", msg2}))
		}}
		var stdout bytes.Buffer
		opts := &Options{URL: "http://h", Bindings: testBindings, Timeout: 30 * time.Second, Count: 1,
			Client: &http.Client{Transport: script}}
		if err := Run(context.Background(), opts, &stdout, io.Discard); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if stdout.String() != msg2+"\n" {
			t.Errorf("stdout %q", stdout.String())
		}
	})
}

// TestRunNoTimeout: --timeout 0 waits for ever; an interrupt ends it.
func TestRunNoTimeout(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 24*time.Hour)
		defer cancel()
		opts := &Options{URL: "http://h", Bindings: testBindings, Client: &http.Client{Transport: fakeStream{}}}
		if err := Run(ctx, opts, io.Discard, io.Discard); err != nil {
			t.Errorf("Run = %v, want nil at the interrupt", err)
		}
	})
}

// failingWriter fails every write, as stdout does when its reader has gone.
type failingWriter struct{}

func (failingWriter) Write([]byte) (int, error) { return 0, errors.New("broken pipe") }

func TestRunStdoutFails(t *testing.T) {
	t.Parallel()
	srv, _ := sseServer(t, stream(event{"ready", "{}"}, event{"message", msg2}), true)
	err := Run(context.Background(), &Options{URL: srv.URL, Bindings: testBindings}, failingWriter{}, io.Discard)
	if err == nil || !strings.Contains(err.Error(), "write output: broken pipe") || ExitCode(err) != ExitFailed {
		t.Errorf("Run = %v, want a write error, exit 1", err)
	}
}

func TestRunSendsToken(t *testing.T) {
	t.Parallel()
	srv, reqs := sseServer(t, stream(event{"ready", "{}"}, event{"message", msg2}), true)
	err := Run(context.Background(), &Options{URL: srv.URL, Bindings: testBindings, Count: 1, Token: "aaa.bbb.ccc"}, io.Discard, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	r := <-reqs
	if got := r.Header.Get("Authorization"); got != "Bearer aaa.bbb.ccc" {
		t.Errorf("Authorization %q", got)
	}
	if strings.Contains(r.URL.RawQuery, "aaa.bbb.ccc") {
		t.Errorf("the token went into the URL: %s", r.URL)
	}
}

// scripted is a transport that answers each request with the next of its
// answers, in the synctest bubble, and keeps the requests.
type scripted struct {
	mu      sync.Mutex
	answers []func(req *http.Request) *http.Response
	reqs    []*http.Request
}

func (s *scripted) RoundTrip(req *http.Request) (*http.Response, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, req)
	if len(s.answers) == 0 {
		return nil, errors.New("no more answers")
	}
	a := s.answers[0]
	s.answers = s.answers[1:]
	return a(req), nil
}

// answerStream answers with an event stream of wire, which ends after it
// unless hold is set.
func answerStream(wire string, hold bool) func(req *http.Request) *http.Response {
	return func(req *http.Request) *http.Response {
		resp := fakeStream{write: func(pw *io.PipeWriter) {
			_, _ = io.WriteString(pw, wire)
			if !hold {
				pw.Close()
			}
		}}
		r, _ := resp.RoundTrip(req)
		return r
	}
}

// answerStatus answers with a JSON refusal.
func answerStatus(code int, retryAfter string) func(req *http.Request) *http.Response {
	return func(req *http.Request) *http.Response {
		return &http.Response{StatusCode: code, Status: http.StatusText(code), Request: req,
			Header: http.Header{"Retry-After": {retryAfter}, "Content-Type": {"application/json"}},
			Body:   io.NopCloser(strings.NewReader(`{"message":"later"}`))}
	}
}

// TestRunResume: with --resume, a stream that breaks after ready is opened
// again with the id of the last event handled, after a pause that grows
// and honours Retry-After; a gap is a warning on stderr, and the messages
// go on.
func TestRunResume(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &scripted{answers: []func(*http.Request) *http.Response{
			answerStream("retry: 1000\nevent: ready\ndata: {}\nid: t0\n\nevent: message\ndata: "+msg1+"\nid: t1\n\n", false),
			answerStatus(http.StatusServiceUnavailable, "2"),
			answerStream("event: ready\ndata: {}\nid: t1\n\nevent: gap\ndata: {\"reason\":\"broker\"}\nid: t1\n\nevent: message\ndata: "+msg2+"\nid: t2\n\n", true),
		}}
		var stdout, stderr bytes.Buffer
		opts := &Options{URL: "http://h", Bindings: testBindings, Resume: true, Count: 2, Timeout: 30 * time.Second,
			Client: &http.Client{Transport: s}}
		start := time.Now()
		if err := Run(context.Background(), opts, &stdout, &stderr); err != nil {
			t.Fatalf("Run: %v", err)
		}
		if got := stdout.String(); got != msg1+"\n"+msg2+"\n" {
			t.Errorf("stdout %q", got)
		}
		if d := time.Since(start); d != 3*time.Second {
			t.Errorf("took %v, want 3s: a pause of 1s, then of 2s (doubled, and Retry-After)", d)
		}
		for _, want := range []string{
			"listening: 1 binding\n",
			"note: " + ErrStreamEnded.Error() + ": the server closed it without an error event; reconnecting in 1s\n",
			"note: http://h/api/events/v1/connect/ answered Service Unavailable: later (retry after 2 s); reconnecting in 2s\n",
			"listening again: 1 binding\n",
			"warning: messages may be missing here (gap: broker)\n",
		} {
			if !strings.Contains(stderr.String(), want) {
				t.Errorf("stderr %q lacks %q", stderr.String(), want)
			}
		}
		if len(s.reqs) != 3 {
			t.Fatalf("%d requests, want 3", len(s.reqs))
		}
		for i, r := range s.reqs {
			want := map[bool]string{true: "", false: "t1"}[i == 0]
			if got := r.Header.Get("Last-Event-ID"); got != want || r.URL.Query().Get("resume") != "1" {
				t.Errorf("request %d: Last-Event-ID %q resume %q, want %q and 1", i, got, r.URL.Query().Get("resume"), want)
			}
		}
	})
}

// TestRunResumeEnds: with --resume, what a reconnection cannot mend still
// ends Run: a first connection that fails, and an `error` event.
func TestRunResumeEnds(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		answers  []func(*http.Request) *http.Response
		wantCode int
	}{
		{"first connection refused", []func(*http.Request) *http.Response{answerStatus(http.StatusServiceUnavailable, "1")}, ExitConnect},
		{"error event", []func(*http.Request) *http.Response{
			answerStream("event: ready\ndata: {}\nid: t0\n\nevent: error\ndata: \"Exchange \\\"x\\\" does not exist.\"\nid: t0\n\n", false)}, ExitFailed},
		{"refused after a break", []func(*http.Request) *http.Response{
			answerStream("event: ready\ndata: {}\nid: t0\n\n", false), answerStatus(http.StatusForbidden, "")}, ExitConnect},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			synctest.Test(t, func(t *testing.T) {
				opts := &Options{URL: "http://h", Bindings: testBindings, Resume: true,
					Client: &http.Client{Transport: &scripted{answers: tt.answers}}}
				err := Run(context.Background(), opts, io.Discard, io.Discard)
				if code := ExitCode(err); code != tt.wantCode {
					t.Errorf("exit code %d (error %v), want %d", code, err, tt.wantCode)
				}
			})
		})
	}
}

// TestRunResumeAfterUnavailable: with --resume, the `error` events whose
// text asks the client to reconnect (the broker away, the server shutting
// down) are breaks like a closed connection: Run reconnects with the last
// event's id and goes on.
func TestRunResumeAfterUnavailable(t *testing.T) {
	t.Parallel()
	synctest.Test(t, func(t *testing.T) {
		s := &scripted{answers: []func(*http.Request) *http.Response{
			answerStream("event: ready\ndata: {}\nid: t0\n\nevent: message\ndata: "+msg1+"\nid: t1\n\n"+
				"event: error\ndata: \"The server is shutting down; please reconnect.\"\nid: t1\n\n", false),
			answerStream("event: error\ndata: \"The service is temporarily unavailable; please reconnect later.\"\nid: t1\n\n", false),
			answerStream("event: ready\ndata: {}\nid: t1\n\nevent: message\ndata: "+msg2+"\nid: t2\n\n", true),
		}}
		var stdout, stderr bytes.Buffer
		opts := &Options{URL: "http://h", Bindings: testBindings, Resume: true, Count: 2, Timeout: 30 * time.Second,
			Client: &http.Client{Transport: s}}
		if err := Run(context.Background(), opts, &stdout, &stderr); err != nil {
			t.Fatalf("Run: %v (stderr %q)", err, stderr.String())
		}
		if got := stdout.String(); got != msg1+"\n"+msg2+"\n" {
			t.Errorf("stdout %q", got)
		}
		if len(s.reqs) != 3 {
			t.Fatalf("%d requests, want 3", len(s.reqs))
		}
		for i, r := range s.reqs[1:] {
			if got := r.Header.Get("Last-Event-ID"); got != "t1" {
				t.Errorf("reconnection %d: Last-Event-ID %q, want t1", i+1, got)
			}
		}
	})
}
