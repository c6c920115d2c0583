package load

import (
	"bytes"
	"errors"
	"fmt"
	"io"
)

// eventKind is the `event` field of an event, as far as the tool cares.
type eventKind uint8

const (
	kindOther eventKind = iota
	kindReady
	kindMessage
	kindPing
	kindOverflow
	kindError
	kindGap
)

// event is one event of a stream. data (set for error and gap events only)
// and id are valid during the handler's call alone.
type event struct {
	kind eventKind
	// sent is the payload's "t": the publisher's time.Now().UnixNano() at
	// publish; 0 when the payload has none.
	sent int64
	// seq is the payload's "s", the publisher's sequence number; -1 when
	// the payload has none.
	seq int64
	// dropped is an overflow event's count.
	dropped int64
	data    []byte
	// id is the event's `id` field; empty when it had none.
	id []byte
}

// StatusError is a response that was not 200, such as a 503 or 429 refusal.
type StatusError struct{ Code int }

func (e *StatusError) Error() string { return fmt.Sprintf("HTTP status %d", e.Code) }

var errBadResponse = errors.New("malformed HTTP response")

// chunk decoder states.
const (
	chunkSize = iota // reading a chunk-size line
	chunkData        // inside a chunk's data
	chunkCRLF        // reading the CRLF after a chunk's data
	chunkDone        // the last (empty) chunk was read
)

// scanner parses one HTTP/1.1 response carrying an event stream, from
// successive reads into one buffer: the head, then the body (de-chunked in
// place when it is chunked), then SSE lines. In the common case of a read
// that ends on an event boundary it copies nothing but the chunk payload
// (a few bytes to the left) and allocates nothing. It is not safe for
// concurrent use.
type scanner struct {
	buf []byte
	end int // bytes read into buf
	rs  int // first raw (not yet de-chunked) body byte
	ps  int // first payload byte not yet parsed into lines
	pe  int // end of the de-chunked payload; pe <= rs

	head    bool // the response head has been parsed
	chunked bool
	cstate  int
	cleft   int // bytes left of the current chunk, or of its CRLF

	cur     event
	errText []byte // data of an error or gap event being read
	id      []byte // id of the event being read
}

func newScanner(size int) *scanner {
	s := &scanner{buf: make([]byte, size)}
	s.cur.seq = -1
	return s
}

// reset makes the scanner ready for a new response, keeping its buffer.
func (s *scanner) reset() {
	*s = scanner{buf: s.buf}
	s.cur.seq = -1
}

// resetBody makes the scanner ready for a bare event stream, with no HTTP
// head or chunks around it: the body of an HTTP/2 response.
func (s *scanner) resetBody() {
	s.reset()
	s.head = true
}

// fill reads once from r into the buffer.
func (s *scanner) fill(r io.Reader) error {
	if len(s.buf)-s.end < len(s.buf)/4 {
		s.compact()
	}
	n, err := r.Read(s.buf[s.end:])
	s.end += n
	if n > 0 {
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// compact moves the unparsed bytes to the front of the buffer and grows it
// when they fill more than three quarters of it (a line longer than the
// buffer).
func (s *scanner) compact() {
	if !s.head {
		if s.end > len(s.buf)*3/4 {
			s.grow()
		}
		return
	}
	n1 := copy(s.buf, s.buf[s.ps:s.pe])
	n2 := copy(s.buf[n1:], s.buf[s.rs:s.end])
	s.ps, s.pe, s.rs, s.end = 0, n1, n1, n1+n2
	if s.end > len(s.buf)*3/4 {
		s.grow()
	}
}

func (s *scanner) grow() {
	b := make([]byte, 2*len(s.buf))
	copy(b, s.buf[:s.end])
	s.buf = b
}

// process parses what fill read and calls fn for each complete event. It
// returns a *StatusError when the response is not 200, and io.EOF once the
// last chunk of a chunked body has been read.
func (s *scanner) process(fn func(*event)) error {
	if !s.head {
		i := bytes.Index(s.buf[:s.end], []byte("\r\n\r\n"))
		if i < 0 {
			return nil
		}
		if err := s.parseHead(s.buf[:i]); err != nil {
			return err
		}
		s.head = true
		s.rs, s.ps, s.pe = i+4, i+4, i+4
	}
	var err error
	if s.chunked {
		err = s.dechunk()
	} else {
		s.pe, s.rs = s.end, s.end
	}
	for s.ps < s.pe {
		i := bytes.IndexByte(s.buf[s.ps:s.pe], '\n')
		if i < 0 {
			break
		}
		line := s.buf[s.ps : s.ps+i]
		s.ps += i + 1
		if n := len(line); n > 0 && line[n-1] == '\r' {
			line = line[:n-1]
		}
		s.line(line, fn)
	}
	if s.ps == s.pe && s.rs == s.end {
		s.ps, s.pe, s.rs, s.end = 0, 0, 0, 0
	}
	return err
}

func (s *scanner) parseHead(head []byte) error {
	// "HTTP/1.1 200 OK"
	if len(head) < 12 || !bytes.HasPrefix(head, []byte("HTTP/1.")) || head[8] != ' ' {
		return errBadResponse
	}
	code := 0
	for _, c := range head[9:12] {
		if c < '0' || c > '9' {
			return errBadResponse
		}
		code = code*10 + int(c-'0')
	}
	if code != 200 {
		return &StatusError{Code: code}
	}
	for len(head) > 0 {
		var line []byte
		line, head, _ = bytes.Cut(head, []byte("\r\n"))
		name, value, ok := bytes.Cut(line, []byte(":"))
		if ok && bytes.EqualFold(name, []byte("Transfer-Encoding")) &&
			bytes.Contains(bytes.ToLower(value), []byte("chunked")) {
			s.chunked = true
		}
	}
	return nil
}

// dechunk turns the raw chunked bytes at buf[rs:end] into payload bytes
// appended at buf[pe:], as far as they go.
func (s *scanner) dechunk() error {
	for s.rs < s.end {
		switch s.cstate {
		case chunkSize:
			i := bytes.IndexByte(s.buf[s.rs:s.end], '\n')
			if i < 0 {
				return nil
			}
			size, err := parseChunkSize(s.buf[s.rs : s.rs+i])
			if err != nil {
				return err
			}
			s.rs += i + 1
			if size == 0 {
				s.cstate = chunkDone
				return io.EOF
			}
			s.cstate, s.cleft = chunkData, size
		case chunkData:
			k := min(s.cleft, s.end-s.rs)
			if s.pe != s.rs {
				copy(s.buf[s.pe:], s.buf[s.rs:s.rs+k])
			}
			s.pe += k
			s.rs += k
			s.cleft -= k
			if s.cleft == 0 {
				s.cstate, s.cleft = chunkCRLF, 2
			}
		case chunkCRLF:
			c := s.buf[s.rs]
			if (s.cleft == 2 && c != '\r') || (s.cleft == 1 && c != '\n') {
				return errBadResponse
			}
			s.rs++
			s.cleft--
			if s.cleft == 0 {
				s.cstate = chunkSize
			}
		case chunkDone:
			return io.EOF
		}
	}
	return nil
}

func parseChunkSize(line []byte) (int, error) {
	if i := bytes.IndexAny(line, ";\r"); i >= 0 {
		line = line[:i]
	}
	if len(line) == 0 || len(line) > 8 {
		return 0, errBadResponse
	}
	n := 0
	for _, c := range line {
		var d byte
		switch {
		case c >= '0' && c <= '9':
			d = c - '0'
		case c >= 'a' && c <= 'f':
			d = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			d = c - 'A' + 10
		default:
			return 0, errBadResponse
		}
		n = n<<4 | int(d)
	}
	return n, nil
}

// line handles one line of the event stream.
func (s *scanner) line(line []byte, fn func(*event)) {
	if len(line) == 0 {
		if s.cur.kind != kindOther || s.cur.sent != 0 {
			if s.cur.kind == kindError || s.cur.kind == kindGap {
				s.cur.data = s.errText
			}
			s.cur.id = s.id
			fn(&s.cur)
		}
		s.cur = event{seq: -1}
		s.errText = s.errText[:0]
		s.id = s.id[:0]
		return
	}
	name, value, _ := bytes.Cut(line, []byte(":"))
	if len(value) > 0 && value[0] == ' ' {
		value = value[1:]
	}
	switch string(name) {
	case "event":
		switch string(value) {
		case "message":
			s.cur.kind = kindMessage
		case "ready":
			s.cur.kind = kindReady
		case "ping":
			s.cur.kind = kindPing
		case "overflow":
			s.cur.kind = kindOverflow
		case "error":
			s.cur.kind = kindError
		case "gap":
			s.cur.kind = kindGap
		}
	case "id":
		s.id = append(s.id[:0], value...)
	case "data":
		switch s.cur.kind {
		case kindMessage:
			s.cur.sent, s.cur.seq = parseStamp(value)
		case kindOverflow:
			// {"dropped":N}
			if i := bytes.IndexByte(value, ':'); i >= 0 {
				s.cur.dropped, _ = parseInt(value[i+1:])
			}
		case kindError, kindGap:
			s.errText = append(s.errText, value...)
		}
	}
}

// payloadMark starts the payload that Publisher sends, inside a message
// event's data: {...,"payload":{"t":<UnixNano>,"s":<seq>,"p":"..."}}.
var payloadMark = []byte(`"payload":{"t":`)

// parseStamp returns the send time and sequence number of a message
// event's data, or 0 and -1 when it does not carry them.
func parseStamp(data []byte) (sent, seq int64) {
	i := bytes.Index(data, payloadMark)
	if i < 0 {
		return 0, -1
	}
	rest := data[i+len(payloadMark):]
	sent, n := parseInt(rest)
	if n == 0 {
		return 0, -1
	}
	rest = rest[n:]
	if !bytes.HasPrefix(rest, []byte(`,"s":`)) {
		return sent, -1
	}
	seq, n = parseInt(rest[5:])
	if n == 0 {
		return sent, -1
	}
	return sent, seq
}

// parseInt parses the decimal digits at the start of b and returns the
// value and how many bytes it took.
func parseInt(b []byte) (v int64, n int) {
	for n < len(b) && n < 19 && b[n] >= '0' && b[n] <= '9' {
		v = v*10 + int64(b[n]-'0')
		n++
	}
	return v, n
}
