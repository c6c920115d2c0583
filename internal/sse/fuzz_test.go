package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"testing/iotest"
	"unicode/utf8"
)

// decodeUTF8 is the WHATWG Encoding Standard's UTF-8 decoder, transcribed
// step by step as a reference for appendUTF8 (without the BOM, which the
// callers handle).
func decodeUTF8(b []byte) string {
	var out strings.Builder
	var cp rune
	var needed, seen int
	lower, upper := byte(0x80), byte(0xBF)
	for i := 0; i < len(b); i++ {
		c := b[i]
		if needed == 0 {
			switch {
			case c <= 0x7F:
				out.WriteByte(c)
			case 0xC2 <= c && c <= 0xDF:
				needed, cp = 1, rune(c&0x1F)
			case 0xE0 <= c && c <= 0xEF:
				if c == 0xE0 {
					lower = 0xA0
				}
				if c == 0xED {
					upper = 0x9F
				}
				needed, cp = 2, rune(c&0xF)
			case 0xF0 <= c && c <= 0xF4:
				if c == 0xF0 {
					lower = 0x90
				}
				if c == 0xF4 {
					upper = 0x8F
				}
				needed, cp = 3, rune(c&0x7)
			default:
				out.WriteRune(utf8.RuneError)
			}
			continue
		}
		if c < lower || c > upper {
			cp, needed, seen, lower, upper = 0, 0, 0, 0x80, 0xBF
			i-- // prepend the byte to the stream
			out.WriteRune(utf8.RuneError)
			continue
		}
		lower, upper = 0x80, 0xBF
		cp = cp<<6 | rune(c&0x3F)
		seen++
		if seen == needed {
			out.WriteRune(cp)
			cp, needed, seen = 0, 0, 0
		}
	}
	if needed != 0 {
		out.WriteRune(utf8.RuneError)
	}
	return out.String()
}

// referenceParse interprets a whole event stream as the HTML Living
// Standard says, written for clarity rather than speed. unexpectedEOF
// reports a stream that ends inside an event; lastID is EventSource's last
// event ID string at the end.
func referenceParse(input []byte) (events []Event, unexpectedEOF bool, lastID string) {
	s := decodeUTF8(bytes.TrimPrefix(input, []byte("\uFEFF")))
	var data, kind, id string
	var hasData, hasID, pending bool
	for {
		i := strings.IndexAny(s, "\r\n")
		if i < 0 {
			return events, s != "" || pending, lastID
		}
		line := s[:i]
		if strings.HasPrefix(s[i:], "\r\n") {
			i++
		}
		s = s[i+1:]
		switch {
		case line == "":
			lastID = id
			if hasData {
				ev := Event{Kind: "message", Data: []byte(strings.TrimSuffix(data, "\n"))}
				if kind != "" {
					ev.Kind = kind
				}
				if hasID {
					ev.ID = id
				}
				events = append(events, ev)
			}
			// id stays: it is the last event ID buffer.
			data, kind, hasData, hasID, pending = "", "", false, false, false
		case line[0] == ':':
		default:
			pending = true
			name, value, found := strings.Cut(line, ":")
			if found {
				value = strings.TrimPrefix(value, " ")
			}
			switch name {
			case "data":
				data += value + "\n"
				hasData = true
			case "event":
				kind = value
			case "id":
				if !strings.Contains(value, "\x00") {
					id, hasID = value, true
				}
			}
		}
	}
}

// fuzzReaders are the ways in which the fuzz targets deliver a stream.
var fuzzReaders = []func(io.Reader) io.Reader{
	func(r io.Reader) io.Reader { return r },
	iotest.OneByteReader,
	iotest.HalfReader,
	iotest.DataErrReader,
}

var fuzzKinds = []string{"ready", "message", "ping", "error", "overflow"}

func FuzzRoundTrip(f *testing.F) {
	for _, data := range []string{
		"", "{}", `{"time":"2026-11-27T05:00:00Z"}`, `"Unknown Internal Error"`,
		"\n\nevent: ready\n", "\r\n\r\nevent: ready\r\n", "\r\revent: ready\r",
		"a\rb\nc\r\nd", "\n", "\r", "\r\n", "\n\r", ": comment", " leading", "id: 1",
		"\uFEFF", "\xff", "\xe2\x82", "a\x00b",
	} {
		f.Add(uint8(1), []byte(data), uint8(0))
	}
	f.Fuzz(func(t *testing.T, kindIndex uint8, data []byte, mode uint8) {
		kind := fuzzKinds[int(kindIndex)%len(fuzzKinds)]
		stream := AppendEvent(nil, kind, data)
		// A second event checks that the first cannot bleed into it.
		stream = AppendEvent(stream, "ping", []byte("{}"))

		src := fuzzReaders[int(mode)%len(fuzzReaders)](bytes.NewReader(stream))
		events, err := readAll(NewReader(src))
		if !errors.Is(err, io.EOF) {
			t.Fatalf("read %q: %v", stream, err)
		}
		norm := bytes.ReplaceAll(data, []byte("\r\n"), []byte("\n"))
		norm = bytes.ReplaceAll(norm, []byte("\r"), []byte("\n"))
		want := []Event{
			{Kind: kind, Data: []byte(decodeUTF8(norm)), ID: "-"},
			{Kind: "ping", Data: []byte("{}"), ID: "-"},
		}
		if !equalEvents(events, want) {
			t.Fatalf("read %s from %q, want %s", formatEvents(events), stream, formatEvents(want))
		}
	})
}

func FuzzReader(f *testing.F) {
	for _, input := range []string{
		"",
		"event: ready\ndata: {}\nid: -\n\n",
		"event: ready\r\ndata: {}\r\nid: -\r\n\r\n",
		"event: ready\rdata: {}\rid: -\r\r",
		"\uFEFFdata: a\n\n",
		": comment\ndata\ndata:x\n\nevent\n\n",
		"data: a\r\n\rdata: b\n",
		"id: 1\x00\nid: 2\nretry: 5\ndata: \xe2\x82a\n\n",
		"data: a",
	} {
		f.Add([]byte(input), uint8(0), uint8(0))
	}
	f.Fuzz(func(t *testing.T, input []byte, mode uint8, maxSize uint8) {
		src := fuzzReaders[int(mode)%len(fuzzReaders)](bytes.NewReader(input))
		r := NewReader(src)
		r.MaxLineSize = int(maxSize) // 0 is the default; small limits exercise ErrTooLong
		events, err := readAll(r)

		for _, ev := range events {
			if bytes.IndexByte(ev.Data, '\r') >= 0 {
				t.Errorf("event data %q contains CR", ev.Data)
			}
			if !utf8.Valid(ev.Data) || !utf8.ValidString(ev.Kind) || !utf8.ValidString(ev.ID) {
				t.Errorf("event %s is not UTF-8", formatEvents([]Event{ev}))
			}
			if ev.Kind == "" || strings.ContainsAny(ev.Kind, "\r\n") || strings.ContainsAny(ev.ID, "\r\n\x00") {
				t.Errorf("event %s has a bad kind or id", formatEvents([]Event{ev}))
			}
		}

		want, unexpected, wantLastID := referenceParse(input)
		switch {
		case errors.Is(err, ErrTooLong):
			if maxSize == 0 {
				t.Fatalf("ErrTooLong with the default limit on %d bytes", len(input))
			}
			if len(events) > len(want) || !equalEvents(events, want[:len(events)]) {
				t.Fatalf("before ErrTooLong, read %s, want a prefix of %s", formatEvents(events), formatEvents(want))
			}
			return
		case errors.Is(err, io.ErrUnexpectedEOF):
			if !unexpected {
				t.Errorf("error = %v, want io.EOF", err)
			}
		case errors.Is(err, io.EOF):
			if unexpected {
				t.Errorf("error = %v, want io.ErrUnexpectedEOF", err)
			}
		default:
			t.Fatalf("error = %v", err)
		}
		if !equalEvents(events, want) {
			t.Errorf("read %s from %q, want %s", formatEvents(events), input, formatEvents(want))
		}
		if got := r.LastEventID(); got != wantLastID {
			t.Errorf("LastEventID = %q, want %q", got, wantLastID)
		}
	})
}

func TestAppendUTF8(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		in   string
	}{
		{"ASCII", "abc"},
		{"valid", "h\u00e9llo \u20ac \U0001F600"},
		{"replacement char", "\uFFFD"},
		{"lone continuation", "a\x80b"},
		{"bad lead", "\xc0\xc1\xf5\xff"},
		{"truncated 2", "\xc3"},
		{"truncated 3", "\xe2\x82"},
		{"truncated 4", "\xf0\x9f\x98"},
		{"overlong 3", "\xe0\x80\x80"},
		{"surrogate", "\xed\xa0\x80"},
		{"above max", "\xf4\x90\x80\x80"},
		{"truncated then ASCII", "\xf0\x9f\x98a"},
		{"truncated then lead", "\xe2\x82\xe2\x82\xac"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(appendUTF8([]byte("x"), []byte(tt.in)))
			if want := "x" + decodeUTF8([]byte(tt.in)); got != want {
				t.Errorf("appendUTF8(%q) = %q, want %q", tt.in, got, want)
			}
		})
	}
}

func FuzzAppendUTF8(f *testing.F) {
	f.Add([]byte("\xe2\x82a\xf0\x9f\x98\x80\xed\xa0\x80"))
	f.Fuzz(func(t *testing.T, in []byte) {
		if got, want := string(appendUTF8(nil, in)), decodeUTF8(in); got != want {
			t.Errorf("appendUTF8(%q) = %q, want %q", in, got, want)
		}
	})
}

// TestReaderRandomStreams compares Reader with referenceParse on streams
// long enough to make the Reader slide and grow its buffer, which the
// short inputs of fuzzing seldom do.
func TestReaderRandomStreams(t *testing.T) {
	t.Parallel()
	pieces := []string{
		"data: ", "data:", "data", "event: ", "event: ping", "id: -", "id: \x00", ": ", "retry: 1",
		"\n", "\n", "\n", "\r", "\r\n", "\r\n", "\uFEFF", "\xe2\x82", "\xff", "é",
	}
	for seed := range uint64(40) {
		rng := rand.New(rand.NewPCG(seed, 1))
		var b []byte
		for len(b) < 64<<10 {
			if rng.IntN(8) == 0 {
				b = append(b, bytes.Repeat([]byte{'x'}, rng.IntN(20000))...)
				continue
			}
			b = append(b, pieces[rng.IntN(len(pieces))]...)
		}
		want, unexpected, wantLastID := referenceParse(b)
		wantErr := io.EOF
		if unexpected {
			wantErr = io.ErrUnexpectedEOF
		}
		for _, rd := range readers {
			t.Run(fmt.Sprintf("%d/%s", seed, rd.name), func(t *testing.T) {
				t.Parallel()
				r := NewReader(rd.wrap(bytes.NewReader(b)))
				events, err := readAll(r)
				if !errors.Is(err, wantErr) {
					t.Errorf("error = %v, want %v", err, wantErr)
				}
				if got := r.LastEventID(); got != wantLastID {
					t.Errorf("LastEventID = %q, want %q", got, wantLastID)
				}
				if !equalEvents(events, want) {
					t.Errorf("read %d events, want %d, or their contents differ", len(events), len(want))
				}
			})
		}
	}
}
