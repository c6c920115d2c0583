package api

import (
	"net"
	"net/http"
	"strings"
	"sync"
)

// admission is the outcome of asking for a stream slot.
type admission int

const (
	admitted admission = iota
	refusedTotal
	refusedPerAddr
)

// limits counts open streams, in all and per client address, against the
// configured caps (zero: no cap). It is safe for concurrent use.
type limits struct {
	maxTotal, maxPerAddr int

	mu     sync.Mutex
	total  int
	byAddr map[string]int
}

func newLimits(maxTotal, maxPerAddr int) *limits {
	return &limits{maxTotal: maxTotal, maxPerAddr: maxPerAddr, byAddr: make(map[string]int)}
}

// acquire takes a slot for a stream from addr, unless a cap is reached. A
// stream that was admitted must release its slot when it ends.
func (l *limits) acquire(addr string) admission {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.maxTotal > 0 && l.total >= l.maxTotal {
		return refusedTotal
	}
	if l.maxPerAddr > 0 && l.byAddr[addr] >= l.maxPerAddr {
		return refusedPerAddr
	}
	l.total++
	l.byAddr[addr]++
	return admitted
}

func (l *limits) release(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.byAddr[addr] - 1; n > 0 {
		l.byAddr[addr] = n
	} else {
		delete(l.byAddr, addr)
	}
}

// clientAddr returns the address a request comes from: the socket's peer,
// or, with TrustProxy, the last X-Forwarded-For entry — the one our own
// proxy added; earlier entries are whatever the client claimed.
func (h *Handler) clientAddr(r *http.Request) string {
	if h.cfg.TrustProxy {
		if xff := r.Header.Values("X-Forwarded-For"); len(xff) > 0 {
			last := xff[len(xff)-1]
			if i := strings.LastIndexByte(last, ','); i >= 0 {
				last = last[i+1:]
			}
			if ip := net.ParseIP(strings.TrimSpace(last)); ip != nil {
				return ip.String()
			}
		}
	}
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
