package sse

import (
	"bytes"
	"fmt"
	"strings"
	"unicode/utf8"
)

// AppendEvent appends the wire form of one event of the given kind and data
// to dst, ending with `id: -` and a blank line, and returns the extended
// slice. It may be called from any number of goroutines at once, as long as
// they do not share dst.
//
// kind must be non-empty valid UTF-8 without CR, LF or ':'; kinds are the
// server's own constants, so AppendEvent panics on any other, as that is a
// programming error.
//
// data is normally one line of JSON and is then written as one `data:` line.
// Should data contain CR, LF or CRLF, each of them ends a `data:` line and
// the rest goes on the next one, so that no content can ever start a new
// field or event. A reader joins data lines with LF, so it gets data back
// with every CRLF and lone CR turned into LF. Bytes that are not UTF-8 are
// written as they are, and a reader decodes them to U+FFFD.
func AppendEvent(dst []byte, kind string, data []byte) []byte {
	if kind == "" || strings.ContainsAny(kind, "\r\n:") || !utf8.ValidString(kind) {
		panic(fmt.Sprintf("sse: invalid event kind %q", kind))
	}
	dst = append(dst, "event: "...)
	dst = append(dst, kind...)
	dst = append(dst, '\n')
	for {
		dst = append(dst, "data: "...)
		i := indexLineEnd(data)
		if i < 0 {
			dst = append(dst, data...)
			dst = append(dst, '\n')
			break
		}
		dst = append(dst, data[:i]...)
		dst = append(dst, '\n')
		if data[i] == '\r' && i+1 < len(data) && data[i+1] == '\n' {
			i++
		}
		// A line ending as the last byte of data leaves an empty last
		// line, which the next pass writes as an empty `data:` line, so
		// that the reader gets the trailing LF back.
		data = data[i+1:]
	}
	return append(dst, "id: -\n\n"...)
}

// Frame returns what AppendEvent writes before and after data of the given
// kind when data is one line (holds no CR or LF), so that a server can
// frame such data once and send the same bytes on many streams. It panics
// on an invalid kind, as AppendEvent does.
func Frame(kind string) (head, tail string) {
	ev := AppendEvent(nil, kind, nil)
	head = string(ev[:len("event: ")+len(kind)+len("\ndata: ")])
	return head, string(ev[len(head):])
}

// indexLineEnd returns the index of the first CR or LF in b, or -1.
// Two IndexByte passes beat a byte loop on the long lines that JSON
// payloads make.
func indexLineEnd(b []byte) int {
	i := bytes.IndexByte(b, '\n')
	if i < 0 {
		return bytes.IndexByte(b, '\r')
	}
	if j := bytes.IndexByte(b[:i], '\r'); j >= 0 {
		return j
	}
	return i
}
