package api

import (
	"fmt"
	"testing"
	"time"
)

// TestConnectRatesForgetFullBuckets checks that the buckets of addresses
// that stopped connecting go, so that many addresses cannot grow the map
// without end.
func TestConnectRatesForgetFullBuckets(t *testing.T) {
	now := time.Unix(1_000_000, 0)
	c := newConnectRates(1, 2)
	c.now = func() time.Time { return now }
	for i := range 5000 {
		if _, ok := c.take(fmt.Sprintf("10.0.%d.%d", i/256, i%256)); !ok {
			t.Fatalf("first connect of address %d refused", i)
		}
	}
	if n := len(c.buckets); n > 5000 {
		t.Fatalf("%d buckets for 5000 addresses", n)
	}
	// One second later every bucket is full again; the new address that
	// reaches the sweep mark (twice what the last sweep kept) sweeps them.
	now = now.Add(time.Second)
	for i := range 4000 {
		c.take(fmt.Sprintf("10.1.%d.%d", i/256, i%256))
	}
	if n := len(c.buckets); n > 4000 {
		t.Errorf("%d buckets after the old ones filled up; want at most the 4000 new ones", n)
	}
	// A bucket that is not full is kept: its address is still limited.
	c.take("192.0.2.1")
	c.take("192.0.2.1")
	c.sweepLocked(now)
	if _, ok := c.take("192.0.2.1"); ok {
		t.Error("an address's empty bucket was forgotten")
	}
}

func TestRateKey(t *testing.T) {
	for addr, want := range map[string]string{
		"192.0.2.1":          "192.0.2.1",
		"2001:db8:1:2:3::4":  "2001:db8:1:2::/64",
		"2001:db8:1:2::ffff": "2001:db8:1:2::/64",
		"::ffff:192.0.2.1":   "::ffff:192.0.2.1",
		"not an address":     "not an address",
	} {
		if got := rateKey(addr); got != want {
			t.Errorf("rateKey(%q) = %q, want %q", addr, got, want)
		}
	}
}
