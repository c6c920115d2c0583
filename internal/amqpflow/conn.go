package amqpflow

import (
	"encoding/binary"
	"net"
	"sync"
)

// Conn is the socket under the AMQP client. It counts the deliveries that
// arrive (basic.deliver frames) and stops reading while max of them have not
// been taken by the consumer (Took); reading resumes once the backlog is down
// to half. While reading is stopped, the broker's replies to anything else
// (binds, say) wait too.
type Conn struct {
	net.Conn
	max int

	mu      sync.Mutex
	drained sync.Cond       // signalled when the backlog is down to max/2
	backlog int             // deliveries arrived and not taken
	waiting bool            // Read waits for the backlog to drain
	open    bool            // read without waiting from now on
	lent    int             // Lend calls not yet Returned: read without waiting
	onWait  chan<- struct{} // if set, told (without blocking) when Read starts waiting

	scan frameScanner // only the reading goroutine uses it
}

// New returns a Conn that reads c and stops reading while max deliveries
// wait for the consumer.
func New(c net.Conn, max int) *Conn {
	f := &Conn{Conn: c, max: max}
	f.drained.L = &f.mu
	return f
}

// NotifyWait registers ch to be told, each time Read starts waiting for the
// backlog to drain; a value that finds ch full is dropped.
func (f *Conn) NotifyWait(ch chan<- struct{}) {
	f.mu.Lock()
	f.onWait = ch
	f.mu.Unlock()
}

// Backlog returns how many deliveries have been read and not taken.
func (f *Conn) Backlog() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.backlog
}

// Read waits while the backlog is full, then reads and counts the
// deliveries read.
func (f *Conn) Read(p []byte) (int, error) {
	f.mu.Lock()
	for !f.open && f.lent == 0 && f.backlog >= f.max {
		f.waiting = true
		if f.onWait != nil {
			select {
			case f.onWait <- struct{}{}:
			default:
			}
		}
		f.drained.Wait()
	}
	f.waiting = false
	f.mu.Unlock()
	n, err := f.Conn.Read(p)
	if d := f.scan.deliveries(p[:n]); d > 0 {
		f.mu.Lock()
		f.backlog += d
		f.mu.Unlock()
	}
	return n, err
}

// Took tells f that the consumer has taken a delivery.
func (f *Conn) Took() {
	f.mu.Lock()
	f.backlog--
	if f.waiting && f.backlog <= f.max/2 {
		f.drained.Signal()
	}
	f.mu.Unlock()
}

// Lend makes f read without waiting until Return: the consumer is about to
// wait for the broker's answer to a request, which may arrive behind more
// deliveries than the bound. What arrives meanwhile is counted as usual,
// and the bound holds again once Return is called.
func (f *Conn) Lend() {
	f.mu.Lock()
	f.lent++
	f.drained.Broadcast()
	f.mu.Unlock()
}

// Return ends a Lend.
func (f *Conn) Return() {
	f.mu.Lock()
	f.lent--
	f.mu.Unlock()
}

// Release makes f read without waiting from now on, so that the client can
// read the broker's answers while the connection closes.
func (f *Conn) Release() {
	f.mu.Lock()
	f.open = true
	f.drained.Broadcast()
	f.mu.Unlock()
}

// Close releases f and closes the connection under it.
func (f *Conn) Close() error {
	f.Release()
	return f.Conn.Close()
}

// AMQP 0-9-1 framing (section 4.2.3 of the specification): a frame is a
// 7-byte header (type, channel, payload size), the payload and a frame-end
// byte. A method frame's payload starts with its class and method ids.
const (
	frameHeaderSize = 7
	frameMethod     = 1
	classBasic      = 60
	methodDeliver   = 60
)

// frameScanner follows the frames in the bytes a connection reads, split
// across reads anywhere, and counts the basic.deliver methods among them.
// The broker sends no protocol header when it accepts ours, so the stream
// starts with a frame. Bytes that are not AMQP make it count garbage, but
// the client fails on those first.
type frameScanner struct {
	head   [frameHeaderSize]byte
	headN  int  // bytes of head read
	inBody bool // reading a frame's payload and frame end
	size   uint64
	pos    uint64 // bytes of payload and frame end read
	ids    [4]byte
}

// deliveries scans b and returns how many basic.deliver methods it has
// seen the ids of.
func (s *frameScanner) deliveries(b []byte) (n int) {
	for len(b) > 0 {
		if !s.inBody {
			k := copy(s.head[s.headN:], b)
			s.headN += k
			b = b[k:]
			if s.headN < frameHeaderSize {
				break
			}
			s.headN, s.inBody, s.pos = 0, true, 0
			s.size = uint64(binary.BigEndian.Uint32(s.head[3:]))
			continue
		}
		k := min(uint64(len(b)), s.size+1-s.pos)
		if s.head[0] == frameMethod && s.size >= uint64(len(s.ids)) && s.pos < uint64(len(s.ids)) {
			got := copy(s.ids[s.pos:], b[:k])
			if s.pos+uint64(got) == uint64(len(s.ids)) &&
				binary.BigEndian.Uint16(s.ids[0:]) == classBasic &&
				binary.BigEndian.Uint16(s.ids[2:]) == methodDeliver {
				n++
			}
		}
		s.pos += k
		b = b[k:]
		if s.pos == s.size+1 {
			s.inBody = false
		}
	}
	return n
}
