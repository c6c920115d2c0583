package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"
	"testing/iotest"
)

// readAll returns the events of r up to its first error, which it returns.
func readAll(r *Reader) ([]Event, error) {
	var events []Event
	for {
		ev, err := r.Next()
		if err != nil {
			return events, err
		}
		events = append(events, ev)
	}
}

func equalEvents(a, b []Event) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i].Kind != b[i].Kind || !bytes.Equal(a[i].Data, b[i].Data) || a[i].ID != b[i].ID {
			return false
		}
	}
	return true
}

func formatEvents(events []Event) string {
	var b strings.Builder
	b.WriteString("[")
	for i, ev := range events {
		if i > 0 {
			b.WriteString(" ")
		}
		fmt.Fprintf(&b, "{%q %q %q}", ev.Kind, ev.Data, ev.ID)
	}
	b.WriteString("]")
	return b.String()
}

// chunkReader returns its chunks one per Read, to split a stream exactly
// where a test wants.
type chunkReader struct{ chunks []string }

func (c *chunkReader) Read(p []byte) (int, error) {
	if len(c.chunks) == 0 {
		return 0, io.EOF
	}
	n := copy(p, c.chunks[0])
	c.chunks[0] = c.chunks[0][n:]
	if c.chunks[0] == "" {
		c.chunks = c.chunks[1:]
	}
	return n, nil
}

// readers are the ways in which the table tests deliver a stream.
var readers = []struct {
	name string
	wrap func(io.Reader) io.Reader
}{
	{"whole", func(r io.Reader) io.Reader { return r }},
	{"one byte", iotest.OneByteReader},
	{"half", iotest.HalfReader},
	{"data with EOF", iotest.DataErrReader},
}

func msg(data string) Event { return Event{Kind: "message", Data: []byte(data)} }

func TestReader(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		input   string
		want    []Event
		wantErr error
	}{
		{"empty", "", nil, io.EOF},
		{"LF", "event: ready\ndata: {}\nid: -\n\n", []Event{{"ready", []byte("{}"), "-"}}, io.EOF},
		{"CRLF", "event: ready\r\ndata: {}\r\nid: -\r\n\r\n", []Event{{"ready", []byte("{}"), "-"}}, io.EOF},
		{"CR", "event: ready\rdata: {}\rid: -\r\r", []Event{{"ready", []byte("{}"), "-"}}, io.EOF},
		{"mixed endings", "data: a\r\ndata: b\rdata: c\n\r\n", []Event{msg("a\nb\nc")}, io.EOF},
		{"LF CR is two endings", "data: a\n\rdata: b\n\n", []Event{msg("a"), msg("b")}, io.EOF},
		{"CR CR", "data: a\r\rdata: b\r\r", []Event{msg("a"), msg("b")}, io.EOF},
		{"BOM", "\uFEFFdata: a\n\n", []Event{msg("a")}, io.EOF},
		{"BOM alone", "\uFEFF", nil, io.EOF},
		{"BOM then blank line", "\uFEFF\ndata: a\n\n", []Event{msg("a")}, io.EOF},
		{"second BOM is part of the field name", "\uFEFF\uFEFFdata: a\n\ndata: b\n\n", []Event{msg("b")}, io.EOF},
		{"BOM later is content", "data: a\n\n\uFEFFdata: b\n\n", []Event{msg("a")}, io.EOF},
		{"BOM in data", "data: \uFEFFa\n\n", []Event{msg("\uFEFFa")}, io.EOF},
		{"comments", ": hello\ndata: a\n:\n: more\n\n", []Event{msg("a")}, io.EOF},
		{"comment only stream", ": keep-alive\n\n: again\n", nil, io.EOF},
		{"multiple data lines", "data: a\ndata: b\ndata: c\n\n", []Event{msg("a\nb\nc")}, io.EOF},
		{"empty data lines", "data\ndata\n\n", []Event{msg("\n")}, io.EOF},
		{"no space after colon", "data:a\n\n", []Event{msg("a")}, io.EOF},
		{"one space removed", "data:  a \n\n", []Event{msg(" a ")}, io.EOF},
		{"tab kept", "data:\ta\n\n", []Event{msg("\ta")}, io.EOF},
		{"colon in value", "data: a: b\n\n", []Event{msg("a: b")}, io.EOF},
		{"field without colon", "data\n\n", []Event{msg("")}, io.EOF},
		{"data with only a space", "data: \n\n", []Event{msg("")}, io.EOF},
		{"event without colon resets kind", "event: a\nevent\ndata: x\n\n", []Event{msg("x")}, io.EOF},
		{"empty event is message", "event:\ndata: x\n\n", []Event{msg("x")}, io.EOF},
		{"no data not dispatched", "event: ping\nid: 1\n\ndata: x\n\n", []Event{msg("x")}, io.EOF},
		{"kind reset after dispatch", "event: a\ndata: 1\n\ndata: 2\n\n", []Event{{"a", []byte("1"), ""}, msg("2")}, io.EOF},
		{"kind reset after no data", "event: a\n\ndata: 2\n\n", []Event{msg("2")}, io.EOF},
		{"id per event", "id: 1\ndata: a\n\ndata: b\n\n", []Event{{"message", []byte("a"), "1"}, msg("b")}, io.EOF},
		{"last id wins", "id: 1\nid: 2\ndata: a\n\n", []Event{{"message", []byte("a"), "2"}}, io.EOF},
		{"id with NUL ignored", "id: 1\nid: 2\x003\ndata: a\n\n", []Event{{"message", []byte("a"), "1"}}, io.EOF},
		{"id alone with NUL", "id: \x00\ndata: a\n\n", []Event{msg("a")}, io.EOF},
		{"retry ignored", "retry: 1000\ndata: a\n\n", []Event{msg("a")}, io.EOF},
		{"unknown fields ignored", "foo: bar\nDATA: no\ndata : no\ndata: a\n\n", []Event{msg("a")}, io.EOF},
		{"NUL in data", "data: a\x00b\n\n", []Event{msg("a\x00b")}, io.EOF},
		{"invalid UTF-8", "data: a\xffb\n\n", []Event{msg("a\uFFFDb")}, io.EOF},
		{"truncated sequence is one U+FFFD", "data: \xe2\x82a\n\n", []Event{msg("\uFFFDa")}, io.EOF},
		{"surrogate is three U+FFFD", "data: \xed\xa0\x80\n\n", []Event{msg("\uFFFD\uFFFD\uFFFD")}, io.EOF},
		{"sequence cut by line end", "data: \xf0\x9f\ndata: \x98\x80\n\n", []Event{msg("\uFFFD\n\uFFFD\uFFFD")}, io.EOF},
		{"invalid UTF-8 in kind", "event: \xc3\ndata: a\n\n", []Event{{"\uFFFD", []byte("a"), ""}}, io.EOF},
		{"unterminated event", "data: a\n", nil, io.ErrUnexpectedEOF},
		{"unterminated line", "data: a", nil, io.ErrUnexpectedEOF},
		{"unterminated line after event", "data: a\n\nda", []Event{msg("a")}, io.ErrUnexpectedEOF},
		{"unterminated event after event", "data: a\n\nevent: b\n", []Event{msg("a")}, io.ErrUnexpectedEOF},
		{"unterminated comment", "data: a\n\n: bye", []Event{msg("a")}, io.ErrUnexpectedEOF},
		{"unterminated after CR", "data: a\r", nil, io.ErrUnexpectedEOF},
		{"trailing comment is clean", "data: a\n\n: bye\n", []Event{msg("a")}, io.EOF},
		{"pending field without data", "event: x\n", nil, io.ErrUnexpectedEOF},
	}
	for _, tt := range tests {
		for _, rd := range readers {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				events, err := readAll(NewReader(rd.wrap(strings.NewReader(tt.input))))
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error = %v, want %v", err, tt.wantErr)
				}
				if !equalEvents(events, tt.want) {
					t.Errorf("events from %q = %s, want %s", tt.input, formatEvents(events), formatEvents(tt.want))
				}
			})
		}
	}
}

// TestReaderSplitCRLF splits CRLF line endings across reads: each is still
// one line ending, not a line ending and a blank line.
func TestReaderSplitCRLF(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		chunks []string
		want   []Event
	}{
		{"after field", []string{"data: a\r", "\ndata: b\r\n\r\n"}, []Event{msg("a\nb")}},
		{"after blank line", []string{"data: a\r\n\r", "\ndata: b\r\n\r\n"}, []Event{msg("a"), msg("b")}},
		{"every CR", []string{"data: a\r", "\n", "data: b\r", "\n\r", "\n"}, []Event{msg("a\nb")}},
		{"LF alone in a read", []string{"data: a\r", "\n", "\r", "\n"}, []Event{msg("a")}},
		{"empty reads between", []string{"data: a\r", "", "", "\n\r", "", "\n"}, []Event{msg("a")}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			events, err := readAll(NewReader(&chunkReader{chunks: tt.chunks}))
			if !errors.Is(err, io.EOF) {
				t.Errorf("error = %v, want io.EOF", err)
			}
			if !equalEvents(events, tt.want) {
				t.Errorf("events = %s, want %s", formatEvents(events), formatEvents(tt.want))
			}
		})
	}
}

func TestReaderLastEventID(t *testing.T) {
	t.Parallel()
	r := NewReader(strings.NewReader("id: 1\n\ndata: a\n\nid: 2\ndata: b\n\nid\ndata: c\n\ndata: d\n\nid: 3\ndata: e\n"))
	for _, want := range []struct{ data, id, lastID string }{
		{"a", "", "1"},
		{"b", "2", "2"},
		{"c", "", ""},
		{"d", "", ""},
	} {
		ev, err := r.Next()
		if err != nil {
			t.Fatal(err)
		}
		if string(ev.Data) != want.data || ev.ID != want.id || r.LastEventID() != want.lastID {
			t.Errorf("event %q with ID %q, LastEventID %q; want %q, %q, %q",
				ev.Data, ev.ID, r.LastEventID(), want.data, want.id, want.lastID)
		}
	}
	// The id of an event that the end of the stream cuts off is not kept.
	if _, err := r.Next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("error = %v, want io.ErrUnexpectedEOF", err)
	}
	if got := r.LastEventID(); got != "" {
		t.Errorf("LastEventID = %q after a cut-off event, want \"\"", got)
	}
}

func TestReaderLongLines(t *testing.T) {
	t.Parallel()
	line := func(n int) string { return "data: " + strings.Repeat("x", n-len("data: ")) }
	tests := []struct {
		name    string
		max     int
		input   string
		want    []Event
		wantErr error
	}{
		{"1 MiB", 0, line(1<<20) + "\n\n", []Event{msg(strings.Repeat("x", 1<<20-6))}, io.EOF},
		{"1 MiB CRLF", 0, line(1<<20) + "\r\n\r\n", []Event{msg(strings.Repeat("x", 1<<20-6))}, io.EOF},
		{"at max", 1024, line(1024) + "\n\n", []Event{msg(strings.Repeat("x", 1024-6))}, io.EOF},
		{"at max CR", 1024, line(1024) + "\r\r", []Event{msg(strings.Repeat("x", 1024-6))}, io.EOF},
		{"over max", 1024, line(1025) + "\n\n", nil, ErrTooLong},
		{"over max without end", 1024, line(5000), nil, ErrTooLong},
		{"comment over max", 1024, ":" + strings.Repeat("x", 1024) + "\n\n", nil, ErrTooLong},
		{"event before line over max", 1024, "data: a\n\n" + line(1025) + "\n\n", []Event{msg("a")}, ErrTooLong},
		{"data at max", 11, "data:12345\ndata:12345\n\n", []Event{msg("12345\n12345")}, io.EOF},
		{"data over max", 10, "data:12345\ndata:12345\n\n", nil, ErrTooLong},
		{"data limit per event", 10, "data:12345\n\ndata:12345\n\n", []Event{msg("12345"), msg("12345")}, io.EOF},
	}
	for _, tt := range tests {
		for _, rd := range readers[:3] {
			t.Run(tt.name+"/"+rd.name, func(t *testing.T) {
				t.Parallel()
				r := NewReader(rd.wrap(strings.NewReader(tt.input)))
				r.MaxLineSize = tt.max
				events, err := readAll(r)
				if !errors.Is(err, tt.wantErr) {
					t.Errorf("error = %v, want %v", err, tt.wantErr)
				}
				if !equalEvents(events, tt.want) {
					t.Errorf("events = %d, want %d (or their contents differ)", len(events), len(tt.want))
				}
				if _, again := r.Next(); errors.Is(tt.wantErr, ErrTooLong) && !errors.Is(again, ErrTooLong) {
					t.Errorf("second call returned %v, want the same ErrTooLong", again)
				}
			})
		}
	}
}

// TestReaderDefaultMax reads lines at and over DefaultMaxLineSize.
func TestReaderDefaultMax(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		size    int
		wantErr error
	}{
		{"at default max", DefaultMaxLineSize, io.EOF},
		{"over default max", DefaultMaxLineSize + 1, ErrTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			input := make([]byte, 0, tt.size+2)
			input = append(input, "data:"...)
			input = append(input, bytes.Repeat([]byte("x"), tt.size-len("data:"))...)
			input = append(input, "\n\n"...)
			events, err := readAll(NewReader(bytes.NewReader(input)))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr == io.EOF && (len(events) != 1 || len(events[0].Data) != tt.size-len("data:")) {
				t.Errorf("got %d events, want one of %d bytes", len(events), tt.size-len("data:"))
			}
		})
	}
}

func TestReaderErrors(t *testing.T) {
	t.Parallel()
	errBroken := errors.New("connection broken")
	tests := []struct {
		name    string
		src     io.Reader
		want    []Event
		wantErr error
	}{
		{
			"error after events",
			io.MultiReader(strings.NewReader("data: a\n\ndata: b\n"), iotest.ErrReader(errBroken)),
			[]Event{msg("a")}, errBroken,
		},
		{
			"error with data",
			iotest.TimeoutReader(iotest.OneByteReader(strings.NewReader("data: a\n\n"))),
			nil, iotest.ErrTimeout,
		},
		{"no progress", emptyReader{}, nil, io.ErrNoProgress},
		{"negative count", badCountReader{}, nil, errAny},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := NewReader(tt.src)
			events, err := readAll(r)
			if tt.wantErr == errAny {
				if err == nil || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("error = %v, want a read error", err)
				}
			} else if !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			if !equalEvents(events, tt.want) {
				t.Errorf("events = %s, want %s", formatEvents(events), formatEvents(tt.want))
			}
			if _, again := r.Next(); !errors.Is(again, err) {
				t.Errorf("second call returned %v, want %v again", again, err)
			}
		})
	}
}

// errAny stands for any error that is not an end of stream.
var errAny = errors.New("any read error")

type emptyReader struct{}

func (emptyReader) Read([]byte) (int, error) { return 0, nil }

type badCountReader struct{}

func (badCountReader) Read([]byte) (int, error) { return -1, nil }

// TestReaderEOFIsFinal checks that the calls after an unexpected end of
// stream return io.EOF, the partial event having been discarded.
func TestReaderEOFIsFinal(t *testing.T) {
	t.Parallel()
	r := NewReader(strings.NewReader("data: a\n\ndata: b\n"))
	for i, want := range []error{nil, io.ErrUnexpectedEOF, io.EOF, io.EOF} {
		if _, err := r.Next(); !errors.Is(err, want) {
			t.Errorf("call %d: error = %v, want %v", i, err, want)
		}
	}
}

// TestReaderDataOwned checks that an event's data survives later calls.
func TestReaderDataOwned(t *testing.T) {
	t.Parallel()
	events, err := readAll(NewReader(strings.NewReader("data: first\n\ndata: second\n\n")))
	if !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	if want := []Event{msg("first"), msg("second")}; !equalEvents(events, want) {
		t.Errorf("events = %s, want %s", formatEvents(events), formatEvents(want))
	}
}
