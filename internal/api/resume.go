package api

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/binary"
	"sync"
	"time"

	"eventsproxy/internal/broker"
	"eventsproxy/internal/metrics"
)

// Resumption keeps a resumable stream's subscription alive, detached, for
// the resume window after its client leaves: the broker keeps filling its
// buffer, and the stream keeps the last messages it wrote (its history, up
// to a byte budget), since the client may not have processed them. A
// reconnect with a token takes the stream over. So one resume costs what
// that one stream holds, never a scan of what the whole process saw.

// The defaults of the resume settings.
const (
	DefaultResumeWindow     = 2 * time.Minute
	DefaultResumeMaxStreams = 10000
	DefaultResumeBytes      = 1 << 20
)

// retryMillis is the reconnection time a resumable stream gives
// EventSource in its first bytes.
const retryMillis = 1000

// Why a resume failed: the `reason` of the `gap` event and of
// eventsproxy_resumes_total.
const (
	gapUnknown  = metrics.GapUnknown  // not a token of this process
	gapExpired  = metrics.GapExpired  // its stream stopped lingering
	gapBindings = metrics.GapBindings // asked with other bindings
	gapEvicted  = metrics.GapEvicted  // the history no longer covers it
	gapBroker   = metrics.GapBroker   // the broker connection was lost
)

// token is what an event id of a resumable stream names: the process, the
// stream, the stream's secret and the sequence number of the last message
// written before the event.
//
// Its wire form is URL-safe base64 of epoch, id and secret (24 bytes: 32
// characters, the same for every event of the stream) and then of seq (8
// bytes: 11 characters).
type token struct {
	epoch, id, secret, seq uint64
}

const tokenLen = 43

func (t token) prefix() string {
	var b [24]byte
	binary.BigEndian.PutUint64(b[0:], t.epoch)
	binary.BigEndian.PutUint64(b[8:], t.id)
	binary.BigEndian.PutUint64(b[16:], t.secret)
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// appendSeq appends the seq part of a token to dst.
func appendSeq(dst []byte, seq uint64) []byte {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], seq)
	return base64.RawURLEncoding.AppendEncode(dst, b[:])
}

func parseToken(s string) (token, bool) {
	if len(s) != tokenLen {
		return token{}, false
	}
	b, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil || len(b) != 32 {
		return token{}, false
	}
	return token{
		epoch:  binary.BigEndian.Uint64(b[0:]),
		id:     binary.BigEndian.Uint64(b[8:]),
		secret: binary.BigEndian.Uint64(b[16:]),
		seq:    binary.BigEndian.Uint64(b[24:]),
	}, true
}

func random64() uint64 {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return binary.BigEndian.Uint64(b[:])
}

// sent is an event of a stream's history, with its sequence number: a
// message, or (msg nil) a `gap` for reason, which a client that did not
// process it must be told again as much as a message.
type sent struct {
	seq    uint64
	msg    *broker.Message
	reason string
	size   int
}

// resumable is a resumable stream's state, which outlives its connections.
// The serving stream owns seq and history; a lingering one, the registry.
type resumable struct {
	tok      token
	prefix   string
	bindings string

	seq     uint64
	history []sent
	bytes   int

	sub Subscription
	// kick makes the stream that serves it let go; parked is closed once
	// it did. Both nil while it lingers.
	kick   func()
	parked chan struct{}
	timer  *time.Timer
	// gone: closed for good (expired, cut, taken with other bindings).
	gone bool
}

// remember adds ev, just given seq, to the history and forgets the oldest
// events beyond budget bytes.
func (rs *resumable) remember(ev sent, budget int) {
	rs.history = append(rs.history, ev)
	rs.bytes += ev.size
	drop := 0
	for rs.bytes > budget && drop < len(rs.history) {
		rs.bytes -= rs.history[drop].size
		rs.history[drop] = sent{}
		drop++
	}
	if drop > 0 {
		rs.history = append(rs.history[:0], rs.history[drop:]...)
	}
}

// since returns the history after seq, and whether it covers everything
// after seq.
func (rs *resumable) since(seq uint64) ([]sent, bool) {
	for i, s := range rs.history {
		if s.seq > seq {
			return rs.history[i:], s.seq == seq+1
		}
	}
	return nil, seq == rs.seq
}

// resumes holds the handler's resumable streams: served and lingering.
type resumes struct {
	window   time.Duration
	max      int
	budget   int
	epoch    uint64
	m        *metrics.Metrics
	mu       sync.Mutex
	next     uint64
	streams  map[uint64]*resumable
	lingerN  int
	lingerQ  []*resumable // oldest first, may hold ones no longer lingering
	shutdown bool
}

func newResumes(window time.Duration, max, budget int, m *metrics.Metrics) *resumes {
	return &resumes{window: window, max: max, budget: budget, epoch: random64(), m: m, streams: map[uint64]*resumable{}}
}

// add registers a new resumable stream, served by the caller.
func (r *resumes) add(bindings string, sub Subscription, kick func()) *resumable {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.next++
	rs := &resumable{tok: token{epoch: r.epoch, id: r.next, secret: random64()}, bindings: bindings, sub: sub, kick: kick, parked: make(chan struct{})}
	rs.prefix = rs.tok.prefix()
	r.streams[rs.tok.id] = rs
	return rs
}

// take finds the stream that tok names and hands it to the caller, which
// serves it from now on; or says why it cannot. A stream still served
// elsewhere (its old connection not yet seen to be gone) is made to let go
// first; wait bounds that.
func (r *resumes) take(s string, bindings string, kick func(), wait <-chan struct{}) (*resumable, string) {
	tok, ok := parseToken(s)
	if !ok || tok.epoch != r.epoch {
		return nil, gapUnknown
	}
	for {
		r.mu.Lock()
		rs := r.streams[tok.id]
		if rs == nil || r.shutdown {
			r.mu.Unlock()
			if tok.id == 0 || tok.id > r.next {
				return nil, gapUnknown
			}
			return nil, gapExpired
		}
		if subtle.ConstantTimeEq(int32(rs.tok.secret>>32), int32(tok.secret>>32))&subtle.ConstantTimeEq(int32(rs.tok.secret), int32(tok.secret)) != 1 || rs.parked == nil && tok.seq > rs.seq {
			r.mu.Unlock()
			return nil, gapUnknown
		}
		if rs.parked != nil {
			// Served: make it let go, then look again.
			parked, k := rs.parked, rs.kick
			r.mu.Unlock()
			k()
			select {
			case <-parked:
				continue
			case <-wait:
				return nil, gapExpired
			}
		}
		if tok.seq > rs.seq {
			r.mu.Unlock()
			return nil, gapUnknown
		}
		r.unlinger(rs)
		if rs.bindings != bindings {
			r.drop(rs)
			r.mu.Unlock()
			rs.sub.Close()
			return nil, gapBindings
		}
		rs.kick, rs.parked = kick, make(chan struct{})
		r.mu.Unlock()
		return rs, ""
	}
}

// park lets rs linger, detached, for the window; it is closed then unless
// taken over. It returns false (and rs is dropped) when it cannot linger.
func (r *resumes) park(rs *resumable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(rs.parked)
	rs.parked, rs.kick = nil, nil
	if r.shutdown {
		r.drop(rs)
		rs.sub.Close()
		return
	}
	for r.lingerN >= r.max && len(r.lingerQ) > 0 {
		old := r.lingerQ[0]
		r.lingerQ = r.lingerQ[1:]
		if old.timer != nil && !old.gone && old.parked == nil {
			r.unlinger(old)
			r.drop(old)
			old.sub.Close()
		}
	}
	r.lingerN++
	r.m.ResumeLingering.Inc()
	r.m.ResumePinnedBytes.Add(float64(rs.bytes))
	r.lingerQ = append(r.lingerQ, rs)
	rs.timer = time.AfterFunc(r.window, func() {
		r.mu.Lock()
		defer r.mu.Unlock()
		if rs.timer == nil || rs.gone {
			return
		}
		r.unlinger(rs)
		r.drop(rs)
		rs.sub.Close()
	})
}

// unlinger ends rs's lingering, if it lingers; r.mu is held.
func (r *resumes) unlinger(rs *resumable) {
	if rs.timer == nil {
		return
	}
	rs.timer.Stop()
	rs.timer = nil
	r.lingerN--
	r.m.ResumeLingering.Dec()
	r.m.ResumePinnedBytes.Sub(float64(rs.bytes))
	if len(r.lingerQ) > 2*r.lingerN+16 {
		q := r.lingerQ[:0]
		for _, l := range r.lingerQ {
			if l.timer != nil {
				q = append(q, l)
			}
		}
		clear(r.lingerQ[len(q):])
		r.lingerQ = q
	}
}

// drop forgets rs; r.mu is held.
func (r *resumes) drop(rs *resumable) {
	rs.gone = true
	delete(r.streams, rs.tok.id)
}

// end forgets rs, served by the caller, whose stream ended for good.
func (r *resumes) end(rs *resumable) {
	r.mu.Lock()
	defer r.mu.Unlock()
	close(rs.parked)
	rs.parked, rs.kick = nil, nil
	r.drop(rs)
}

// close ends every lingering stream and any that would linger from now on.
func (r *resumes) close() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.shutdown = true
	for _, rs := range r.streams {
		if rs.parked == nil && rs.timer != nil {
			r.unlinger(rs)
			r.drop(rs)
			rs.sub.Close()
		}
	}
}
