package sse

import "unicode/utf8"

// appendUTF8 appends src to dst, replacing each ill-formed sequence with
// U+FFFD as the WHATWG Encoding Standard's UTF-8 decoder does, which an
// event stream must be decoded with: one U+FFFD for each maximal subpart of
// an ill-formed sequence, where utf8.DecodeRune would give one per byte.
//
// Decoding line by line gives the same result as decoding the whole stream,
// because CR, LF and ':' are ASCII and ASCII never continues a sequence.
func appendUTF8(dst, src []byte) []byte {
	if utf8.Valid(src) {
		return append(dst, src...)
	}
	for len(src) > 0 {
		r, size := utf8.DecodeRune(src)
		if r != utf8.RuneError || size > 1 {
			dst = append(dst, src[:size]...)
			src = src[size:]
			continue
		}
		dst = append(dst, "\uFFFD"...)
		src = src[maximalSubpart(src):]
	}
	return dst
}

// maximalSubpart returns the length of the ill-formed sequence at the start
// of b: its lead byte and the continuation bytes that could still have
// completed it (at least 1).
func maximalSubpart(b []byte) int {
	lo, hi := byte(0x80), byte(0xBF)
	var need int
	switch c := b[0]; {
	case 0xC2 <= c && c <= 0xDF:
		need = 1
	case 0xE0 <= c && c <= 0xEF:
		need = 2
		if c == 0xE0 {
			lo = 0xA0 // overlong
		} else if c == 0xED {
			hi = 0x9F // surrogates
		}
	case 0xF0 <= c && c <= 0xF4:
		need = 3
		if c == 0xF0 {
			lo = 0x90 // overlong
		} else if c == 0xF4 {
			hi = 0x8F // above U+10FFFF
		}
	default:
		return 1
	}
	n := 1
	for n <= need && n < len(b) && lo <= b[n] && b[n] <= hi {
		lo, hi = 0x80, 0xBF
		n++
	}
	return n
}
