package load

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram buckets: values below linearMax microseconds each have a bucket;
// above, each power of two is cut into subBuckets, so a quantile is off by
// at most 1/subBuckets (about 3 %). 64-bit microseconds cover every
// duration.
const (
	linearMax  = 64
	subBits    = 5
	subBuckets = 1 << subBits
	nBuckets   = linearMax + (64-7+1)*subBuckets
)

// Histogram records durations for quantiles. Record may be called from any
// number of goroutines at once; it takes a few nanoseconds and does not
// allocate. The zero Histogram is empty and ready to use.
type Histogram struct {
	counts [nBuckets]atomic.Uint64
	n      atomic.Uint64
	max    atomic.Int64
}

func bucketOf(us uint64) int {
	if us < linearMax {
		return int(us)
	}
	e := bits.Len64(us) // 7 or more
	sub := (us >> (e - 1 - subBits)) & (subBuckets - 1)
	return linearMax + (e-7)*subBuckets + int(sub)
}

// bucketMid returns the middle of bucket i's range, in microseconds.
func bucketMid(i int) float64 {
	if i < linearMax {
		return float64(i)
	}
	i -= linearMax
	e := i/subBuckets + 7
	sub := uint64(i % subBuckets)
	lo := (uint64(1) << (e - 1)) | sub<<(e-1-subBits)
	width := uint64(1) << (e - 1 - subBits)
	return float64(lo) + float64(width)/2
}

// Record adds d; a negative d counts as zero.
func (h *Histogram) Record(d time.Duration) {
	if d < 0 {
		d = 0
	}
	h.counts[bucketOf(uint64(d/time.Microsecond))].Add(1)
	h.n.Add(1)
	for {
		m := h.max.Load()
		if int64(d) <= m || h.max.CompareAndSwap(m, int64(d)) {
			return
		}
	}
}

// Count returns how many durations were recorded.
func (h *Histogram) Count() uint64 { return h.n.Load() }

// Max returns the longest duration recorded.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max.Load()) }

// Quantile returns the q-quantile (0 < q <= 1) of what was recorded, or 0
// when nothing was. It should be called once recording has stopped.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.n.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			d := time.Duration(bucketMid(i) * float64(time.Microsecond))
			return min(d, h.Max())
		}
	}
	return h.Max()
}
