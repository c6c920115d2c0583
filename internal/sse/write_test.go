package sse

import (
	"bytes"
	"errors"
	"flag"
	"io"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata")

func TestAppendEventGolden(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		kind string
		data string
	}{
		{"ready", "ready", `{}`},
		{"ping", "ping", `{"time":"2026-11-27T05:00:00Z"}`},
		{"error", "error", `"Unknown Internal Error"`},
		{
			// The JSON text holds backslash-n, not a raw newline, so the
			// payload cannot start an event of its own.
			"message_escaped_newlines", "message",
			`{"exchange":"exchange/taskcluster-queue/v1/task-completed","routingKey":"primary.fUAqPqVNTnu6yS4XXUgfOw.0._","redelivered":false,"routes":[],"payload":{"text":"done\n\nevent: ready"}}`,
		},
		{"overflow", "overflow", `{"dropped":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := AppendEvent(nil, tt.kind, []byte(tt.data))
			path := filepath.Join("testdata", tt.name+".golden")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("read golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("AppendEvent(%q, %q) =\n%q\nwant (%s)\n%q", tt.kind, tt.data, got, path, want)
			}

			// The golden bytes read back as the event that made them.
			events, err := readAll(NewReader(bytes.NewReader(want)))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read back: %v", err)
			}
			wantEvents := []Event{{Kind: tt.kind, Data: []byte(tt.data), ID: "-"}}
			if !equalEvents(events, wantEvents) {
				t.Errorf("read back %s, want %s", formatEvents(events), formatEvents(wantEvents))
			}
		})
	}
}

// TestFrame checks that Frame's head and tail around one-line data are
// what AppendEvent writes.
func TestFrame(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"message", "ping", "é"} {
		for _, data := range []string{"", "{}", `{"a":"b\\n"}`, "\xff"} {
			head, tail := Frame(kind)
			if got, want := head+data+tail, string(AppendEvent(nil, kind, []byte(data))); got != want {
				t.Errorf("Frame(%q) around %q: %q, want %q", kind, data, got, want)
			}
		}
	}
}

func TestAppendEventLines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want string
	}{
		{"empty", "", "event: k\ndata: \nid: -\n\n"},
		{"one line", "x y", "event: k\ndata: x y\nid: -\n\n"},
		{"leading space kept", " x", "event: k\ndata:  x\nid: -\n\n"},
		{"LF", "a\nb", "event: k\ndata: a\ndata: b\nid: -\n\n"},
		{"CRLF", "a\r\nb", "event: k\ndata: a\ndata: b\nid: -\n\n"},
		{"CR", "a\rb", "event: k\ndata: a\ndata: b\nid: -\n\n"},
		{"LF CR", "a\n\rb", "event: k\ndata: a\ndata: \ndata: b\nid: -\n\n"},
		{"trailing LF", "a\n", "event: k\ndata: a\ndata: \nid: -\n\n"},
		{"trailing CR", "a\r", "event: k\ndata: a\ndata: \nid: -\n\n"},
		{"only LF", "\n", "event: k\ndata: \ndata: \nid: -\n\n"},
		{
			"event injection", "\n\nevent: ready\n",
			"event: k\ndata: \ndata: \ndata: event: ready\ndata: \nid: -\n\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			prefix := []byte("before\n")
			got := AppendEvent(bytes.Clone(prefix), "k", []byte(tt.data))
			if !bytes.HasPrefix(got, prefix) {
				t.Fatalf("AppendEvent lost the bytes of dst: %q", got)
			}
			if got := string(got[len(prefix):]); got != tt.want {
				t.Errorf("AppendEvent(%q) = %q, want %q", tt.data, got, tt.want)
			}
		})
	}
}

func TestAppendEventBadKindPanics(t *testing.T) {
	t.Parallel()
	for _, kind := range []string{"", "a\nb", "a\rb", "a:b", "ready\n", ":", "\xff"} {
		t.Run(kind, func(t *testing.T) {
			t.Parallel()
			defer func() {
				if recover() == nil {
					t.Errorf("AppendEvent with kind %q did not panic", kind)
				}
			}()
			AppendEvent(nil, kind, []byte("{}"))
		})
	}
}

// TestRoundTripNewlines checks that data which would break the framing if
// written raw comes back as one event of the same kind, with CRLF and CR
// turned into LF.
func TestRoundTripNewlines(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		data string
		want string
	}{
		{"LF", "\n\nevent: ready\n", "\n\nevent: ready\n"},
		{"CRLF", "\r\n\r\nevent: ready\r\n", "\n\nevent: ready\n"},
		{"CR", "\r\revent: ready\r", "\n\nevent: ready\n"},
		{"mixed", "a\r\n\rid: 1\n\r\ndata: b", "a\n\nid: 1\n\ndata: b"},
		{"comment", "\n: not a comment", "\n: not a comment"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			stream := AppendEvent(nil, "message", []byte(tt.data))
			events, err := readAll(NewReader(bytes.NewReader(stream)))
			if !errors.Is(err, io.EOF) {
				t.Fatalf("read: %v", err)
			}
			want := []Event{{Kind: "message", Data: []byte(tt.want), ID: "-"}}
			if !equalEvents(events, want) {
				t.Errorf("read %s from %q, want %s", formatEvents(events), stream, formatEvents(want))
			}
		})
	}
}
