package api

import (
	"testing"
	"time"
)

// TestPacerFollowsTheWriters counts the streams that write in each window:
// the next window's pace lets that many busy streams make the budget's
// writes a second, within [minPace, maxPace], and a window with no writes
// before it starts again from minPace.
func TestPacerFollowsTheWriters(t *testing.T) {
	p := newPacer()
	p.budget = 1000
	start := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	windows := make([]int64, 100) // one per stream
	at := func(w, streams int) {
		for i := range streams {
			// Each stream writes twice: it counts once.
			for range 2 {
				p.wrote(start.Add(time.Duration(w)*paceWindow+time.Millisecond), &windows[i])
			}
		}
	}
	for _, tc := range []struct {
		window, streams int
		want            time.Duration // the pace once the window began
	}{
		{0, 1, minPace},
		{1, 5, minPace},               // 1 stream wrote in window 0
		{2, 40, 5 * time.Millisecond}, // 5 streams in window 1
		{3, 10, maxPace},              // 40 streams: 40 ms, capped
		{4, 1, 10 * time.Millisecond}, // 10 streams
		{7, 1, minPace},               // windows 5 and 6 were silent
	} {
		at(tc.window, tc.streams)
		if got := p.current(); got != tc.want {
			t.Errorf("window %d: pace %v, want %v", tc.window, got, tc.want)
		}
	}
}

func TestPaceFor(t *testing.T) {
	for _, tc := range []struct {
		n, budget int64
		want      time.Duration
	}{
		{0, 50_000, minPace},
		{1, 50_000, minPace},
		{1000, 50_000, 20 * time.Millisecond},
		{20_000, 50_000, maxPace},
	} {
		if got := paceFor(tc.n, tc.budget); got != tc.want {
			t.Errorf("paceFor(%d, %d) = %v, want %v", tc.n, tc.budget, got, tc.want)
		}
	}
}
