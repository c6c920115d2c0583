package access

import (
	"sync"
	"time"
)

// Verifying a token costs more than the rest of a stream's admission (its
// signature, two JSON decodings, its grants compiled), and a client that
// reconnects presents the same token each time. So a verified token is
// kept, as what it grants, for at most verifiedFor (and never past its
// exp): within that time a key withdrawn from the JWKS still lets it in.
const (
	verifiedFor = time.Minute
	maxVerified = 4096 // tokens kept; when full, all are dropped
)

// verified is what a verified token grants.
type verified struct {
	subject string
	expiry  time.Time // exp, with the leeway
	notYet  time.Time // nbf less the leeway; zero when there is none
	grants  Grants
	until   time.Time // when the entry goes
}

// verifiedCache holds recently verified tokens. It is safe for concurrent
// use.
type verifiedCache struct {
	mu sync.Mutex
	m  map[string]*verified
}

// get returns what tok grants at now, if it was verified lately and is
// still good at now.
func (c *verifiedCache) get(tok string, now time.Time) *verified {
	c.mu.Lock()
	v := c.m[tok]
	c.mu.Unlock()
	if v == nil || !now.Before(v.until) || !now.Before(v.expiry) || now.Before(v.notYet) {
		return nil
	}
	return v
}

func (c *verifiedCache) put(tok string, v *verified) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil || len(c.m) >= maxVerified {
		c.m = make(map[string]*verified)
	}
	c.m[tok] = v
}
