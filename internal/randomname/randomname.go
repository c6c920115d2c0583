package randomname

import (
	"crypto/rand"
	"encoding/hex"
)

// New returns prefix followed by 16 random hex digits: 64 bits, so that
// names made by any number of processes do not meet.
func New(prefix string) string {
	var b [8]byte
	_, _ = rand.Read(b[:]) // never fails (crypto/rand)
	return prefix + hex.EncodeToString(b[:])
}
