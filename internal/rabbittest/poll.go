package rabbittest

import (
	"testing"
	"time"
)

// Poll calls cond until it reports done, and fails the test with what and
// the state that cond reported last once within has passed. It is for state
// that announces no change, such as the management API's lists, a /metrics
// figure, or a process that logs nothing when it is ready: the deadline
// decides, and the pause between looks (10 ms, doubling up to 200 ms) only
// sets how often it looks.
func Poll(tb testing.TB, what string, within time.Duration, cond func() (done bool, state string)) {
	tb.Helper()
	deadline := time.Now().Add(within)
	for pause := 10 * time.Millisecond; ; pause = min(2*pause, 200*time.Millisecond) {
		done, state := cond()
		if done {
			return
		}
		if time.Now().After(deadline) {
			tb.Fatalf("%s: not so within %v: %s", what, within, state)
		}
		time.Sleep(pause)
	}
}
