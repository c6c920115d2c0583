package sse

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Event is one server-sent event as a client reads it. It is a plain value:
// a Reader never touches an Event after returning it.
type Event struct {
	// Kind is the `event` field; "message" when it is absent or empty, as
	// the HTML Living Standard says.
	Kind string
	// Data is the event's data lines joined by LF, decoded as UTF-8. It is
	// never nil in an event from Reader.Next and never contains CR.
	Data []byte
	// ID is the value of the last `id` field of this event, "" when the
	// event has none. Reader.LastEventID gives EventSource's lastEventId,
	// which carries over from earlier events.
	ID string
}

// DefaultMaxLineSize is the MaxLineSize that a Reader uses when its field
// is zero: 16 MiB, room for the largest payloads with their JSON escaping.
const DefaultMaxLineSize = 16 << 20

// ErrTooLong is returned, wrapped, by Reader.Next when a line, or the data
// of an event, is longer than the Reader's MaxLineSize.
var ErrTooLong = errors.New("sse: line or event data too long")

// initialBufferSize is the size of a Reader's first buffer. It is small
// because the load tool holds many Readers; the buffer doubles as long
// lines need it, up to MaxLineSize.
const initialBufferSize = 4096

// maxEmptyReads is how many reads that return neither bytes nor an error
// Next tolerates in a row before it gives up with io.ErrNoProgress.
const maxEmptyReads = 100

var bom = []byte("\uFEFF")

// Reader reads events from an event stream as the HTML Living Standard's
// EventSource does
// (https://html.spec.whatwg.org/multipage/server-sent-events.html#event-stream-interpretation):
// the stream is decoded as UTF-8 (ill-formed bytes become U+FFFD) after
// one optional BOM at the start; lines end with CRLF, LF or CR; lines
// starting with ':' are comments; a line `field: value` loses one space
// after the colon, and a line without a colon is a field with an empty
// value; data lines are joined with LF; a blank line dispatches the event,
// unless it had no data line; `retry` and unknown fields are ignored, and
// so is an `id` containing NUL. As in browsers, an event whose only data
// line is empty (`data` or `data:`) is dispatched, with empty Data; one
// without any data line is not. Since CR ends a line, data never holds CR:
// the CR and CRLF that AppendEvent split data at come back as LF.
//
// A Reader is not safe for concurrent use: one goroutine at a time may call
// its methods.
type Reader struct {
	// MaxLineSize is the longest line, without its line ending, that Next
	// accepts, in bytes; it bounds the data of one event too, before UTF-8
	// decoding. Zero or less means DefaultMaxLineSize. Set it before the
	// first call to Next.
	MaxLineSize int

	src io.Reader
	err error // from src or a limit; Next returns it once the buffer has no line left

	buf        []byte
	head, tail int // buf[head:tail] is not yet consumed
	// scanned counts the bytes from head known to hold no CR or LF, so
	// that bytes are searched once however the line arrives.
	scanned int
	// lfAt is the index in buf of the next LF, or the tail at the last
	// search if there was none: buf[head+scanned:lfAt] holds no LF. Without
	// it, a stream of CR-ended lines would search the buffer for an LF once
	// for each line.
	lfAt    int
	afterCR bool // the last line ended with CR: an LF next is part of that line ending
	started bool // the BOM has been looked for

	pending  bool   // a field line has been read since the last blank line
	data     []byte // the data buffer: each data line and an LF
	dataSize int    // bytes of data read, as counted against MaxLineSize
	kind     []byte // the event type buffer
	hasID    bool   // this event has an id field
	id       string // the last event ID buffer, kept from event to event
	scratch  []byte // the decoded id, to compare with id
	lastID   string // EventSource's last event ID string: id at the last blank line
	lastKind string // the last Kind dispatched, reused to spare an allocation
}

// NewReader returns a Reader of the event stream r, which it does not close.
// It reads nothing before the first call to Next.
func NewReader(r io.Reader) *Reader {
	return &Reader{src: r}
}

// LastEventID returns EventSource's last event ID string after the events
// returned so far, which a browser would send as Last-Event-ID: the value
// of the last `id` field before the latest blank line, kept from event to
// event, "" before any.
func (r *Reader) LastEventID() string {
	return r.lastID
}

// Next returns the next event in the stream.
//
// At the end of the stream it returns io.EOF if the stream ended cleanly,
// after a blank line or a comment, or io.ErrUnexpectedEOF if it ended in
// the middle of an event: after part of a line, or after fields that no
// blank line has dispatched. That partial event is discarded, as
// EventSource discards it, and later calls return io.EOF.
//
// An error from the underlying reader is returned as it is, after the
// events that the bytes before it complete. When a line or an event's data
// exceeds MaxLineSize, Next returns an error that wraps ErrTooLong. These
// errors are final: later calls return them again.
func (r *Reader) Next() (Event, error) {
	for {
		line, err := r.readLine()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				return Event{}, err
			}
			partial := len(line) > 0 || r.pending
			r.discard()
			r.reset()
			if partial {
				return Event{}, io.ErrUnexpectedEOF
			}
			return Event{}, io.EOF
		}
		if len(line) == 0 {
			if ev, ok := r.dispatch(); ok {
				return ev, nil
			}
			continue
		}
		if err := r.field(line); err != nil {
			r.err = err
			r.discard()
			return Event{}, err
		}
	}
}

// field processes a line that is not blank.
func (r *Reader) field(line []byte) error {
	if line[0] == ':' {
		return nil
	}
	r.pending = true
	name, value := line, []byte(nil)
	if i := bytes.IndexByte(line, ':'); i >= 0 {
		name, value = line[:i], line[i+1:]
		if len(value) > 0 && value[0] == ' ' {
			value = value[1:]
		}
	}
	// Field names that are not UTF-8 match none of these, decoded or not.
	switch string(name) {
	case "data":
		if len(r.data) > 0 {
			r.dataSize++ // the LF that joins this line to the previous one
		}
		r.dataSize += len(value)
		if r.dataSize > r.maxLineSize() {
			return fmt.Errorf("event data over %d bytes: %w", r.maxLineSize(), ErrTooLong)
		}
		r.data = appendUTF8(r.data, value)
		r.data = append(r.data, '\n')
	case "event":
		r.kind = appendUTF8(r.kind[:0], value)
	case "id":
		if bytes.IndexByte(value, 0) >= 0 {
			break
		}
		r.hasID = true
		// Keep the string when the id repeats, as `id: -` does on every
		// event: comparing does not allocate, converting does.
		r.scratch = appendUTF8(r.scratch[:0], value)
		if string(r.scratch) != r.id {
			r.id = string(r.scratch)
		}
	}
	return nil
}

// dispatch ends the current event at a blank line and returns it, unless it
// has no data.
func (r *Reader) dispatch() (Event, bool) {
	defer r.reset()
	r.lastID = r.id
	if len(r.data) == 0 {
		return Event{}, false
	}
	ev := Event{Kind: "message", Data: make([]byte, len(r.data)-1)}
	copy(ev.Data, r.data)
	if len(r.kind) > 0 {
		if string(r.kind) != r.lastKind {
			r.lastKind = string(r.kind)
		}
		ev.Kind = r.lastKind
	}
	if r.hasID {
		ev.ID = r.id
	}
	return ev, true
}

// reset empties the buffers of the current event; the last event ID
// buffer stays, as in EventSource.
func (r *Reader) reset() {
	r.pending = false
	r.data = r.data[:0]
	r.dataSize = 0
	r.kind = r.kind[:0]
	r.hasID = false
}

func (r *Reader) maxLineSize() int {
	if r.MaxLineSize <= 0 {
		return DefaultMaxLineSize
	}
	return r.MaxLineSize
}

// readLine returns the next line without its line ending, valid until the
// next call. When no whole line is left it returns the bytes of the
// unterminated line, if any, and the reader's error.
func (r *Reader) readLine() ([]byte, error) {
	for {
		if r.afterCR && r.head < r.tail {
			// Checked only once a byte is there, so that a CRLF split
			// across reads is one line ending.
			if r.buf[r.head] == '\n' {
				r.head++
			}
			r.afterCR = false
		}
		if i := r.indexLineEnd(); i >= 0 {
			line := r.buf[r.head:i]
			r.afterCR = r.buf[i] == '\r'
			r.head, r.scanned = i+1, 0
			if len(line) > r.maxLineSize() {
				return nil, r.tooLong()
			}
			return r.trimBOM(line), nil
		}
		r.scanned = r.tail - r.head
		if r.scanned > r.maxLineSize() {
			return nil, r.tooLong()
		}
		if r.err != nil {
			return r.trimBOM(r.buf[r.head:r.tail]), r.err
		}
		r.fill()
	}
}

// indexLineEnd returns the index in buf of the CR or LF that ends the line
// at head, or -1 if none has been read yet.
func (r *Reader) indexLineEnd() int {
	from := r.head + r.scanned
	if r.lfAt < from {
		r.lfAt = from
	}
	if r.lfAt == r.tail || r.buf[r.lfAt] != '\n' {
		if i := bytes.IndexByte(r.buf[r.lfAt:r.tail], '\n'); i >= 0 {
			r.lfAt += i
		} else {
			r.lfAt = r.tail
		}
	}
	if i := bytes.IndexByte(r.buf[from:r.lfAt], '\r'); i >= 0 {
		return from + i
	}
	if r.lfAt < r.tail {
		return r.lfAt
	}
	return -1
}

// trimBOM removes the BOM that may start the stream from its first line.
func (r *Reader) trimBOM(line []byte) []byte {
	if r.started {
		return line
	}
	r.started = true
	return bytes.TrimPrefix(line, bom)
}

// tooLong makes the error for a line over MaxLineSize final.
func (r *Reader) tooLong() error {
	r.err = fmt.Errorf("line over %d bytes: %w", r.maxLineSize(), ErrTooLong)
	r.discard()
	return r.err
}

// discard drops the bytes in buf.
func (r *Reader) discard() {
	r.head, r.tail, r.scanned, r.lfAt = 0, 0, 0, 0
}

// fill reads more of the stream into buf, making room first, and records
// the reader's error.
func (r *Reader) fill() {
	if r.head == r.tail {
		r.discard()
	}
	if r.tail == len(r.buf) {
		if r.head > 0 {
			n := copy(r.buf, r.buf[r.head:r.tail])
			r.lfAt = max(r.lfAt-r.head, 0)
			r.head, r.tail = 0, n
		} else {
			// readLine has checked that buf holds at most MaxLineSize
			// bytes, so growing to MaxLineSize+1 makes room for the line
			// ending that a line of the greatest size needs.
			size := min(max(2*len(r.buf), initialBufferSize), r.maxLineSize()+1)
			buf := make([]byte, size)
			copy(buf, r.buf[:r.tail])
			r.buf = buf
		}
	}
	for range maxEmptyReads {
		n, err := r.src.Read(r.buf[r.tail:])
		if n < 0 || n > len(r.buf)-r.tail {
			r.err = fmt.Errorf("sse: read returned invalid count %d", n)
			return
		}
		r.tail += n
		if err != nil {
			r.err = err
			return
		}
		if n > 0 {
			return
		}
	}
	r.err = io.ErrNoProgress
}
