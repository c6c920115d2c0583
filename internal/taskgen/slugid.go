package taskgen

import (
	"encoding/base64"
	"math/rand/v2"
)

// SlugID returns a Taskcluster slug ID made from rnd: a version-4 UUID in
// URL-safe base64 without padding, 22 characters, whose first bit is zero
// so that it never starts with "-" (slugid's "nice" form).
func SlugID(rnd *rand.Rand) string {
	var b [16]byte
	for i := 0; i < len(b); i += 8 {
		v := rnd.Uint64()
		for j := range 8 {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	b[0] &= 0x7f
	b[6] = b[6]&0x0f | 0x40 // version 4
	b[8] = b[8]&0x3f | 0x80 // RFC 4122 variant
	return base64.RawURLEncoding.EncodeToString(b[:])
}
