package broker

// Limits bound what a subscription holds for its stream. Messages are
// shared between subscriptions, so each subscription counts in full the
// messages it holds: that is what a stalled stream alone keeps alive.
type Limits struct {
	// ClientBuffer is the most messages a subscription holds before the
	// oldest is dropped; default DefaultClientBuffer.
	ClientBuffer int
	// ClientBufferBytes is the most bytes (see Message.Size) a
	// subscription holds before the oldest messages are dropped; the
	// newest message is always kept. Default DefaultClientBufferBytes.
	ClientBufferBytes int
	// MaxMessageBytes is the largest body delivered; a larger message is
	// dropped (each subscription it matches counts it, and its stream
	// says so with `overflow`) and logged. Default DefaultMaxMessageBytes.
	MaxMessageBytes int
}

// The defaults of Limits. A prompt reader gets through bursts of a
// thousand messages, or of 8 MiB (a thousand 8 KiB messages, several
// bodies of 1 MiB), without a loss; a stalled stream holds at most that.
const (
	DefaultClientBuffer      = 1000
	DefaultClientBufferBytes = 8 << 20
	DefaultMaxMessageBytes   = 4 << 20
)

func (l Limits) withDefaults() Limits {
	if l.ClientBuffer <= 0 {
		l.ClientBuffer = DefaultClientBuffer
	}
	if l.ClientBufferBytes <= 0 {
		l.ClientBufferBytes = DefaultClientBufferBytes
	}
	if l.MaxMessageBytes <= 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return l
}
