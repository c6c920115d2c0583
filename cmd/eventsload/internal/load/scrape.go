package load

import (
	"bufio"
	"fmt"
	"math"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"
)

// bucket is one cumulative bucket of a Prometheus histogram.
type bucket struct{ le, count float64 }

// scrapeLines returns the lines of the server's /metrics.
func scrapeLines(t Target) ([]string, error) {
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: t.TLS}}
	resp, err := c.Get(strings.TrimSuffix(t.URL, "/") + "/metrics")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	var lines []string
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	return lines, sc.Err()
}

// scrapeHistogram reads the histogram name from the server's /metrics.
func scrapeHistogram(t Target, name string) ([]bucket, error) {
	lines, err := scrapeLines(t)
	if err != nil {
		return nil, err
	}
	var bs []bucket
	prefix := name + `_bucket{le="`
	for _, line := range lines {
		rest, ok := strings.CutPrefix(line, prefix)
		if !ok {
			continue
		}
		le, count, ok := strings.Cut(rest, `"} `)
		if !ok {
			continue
		}
		l, err1 := strconv.ParseFloat(le, 64)
		n, err2 := strconv.ParseFloat(count, 64)
		if err1 == nil && err2 == nil {
			bs = append(bs, bucket{l, n})
		}
	}
	sort.Slice(bs, func(i, j int) bool { return bs[i].le < bs[j].le })
	return bs, nil
}

// counters are the values of the server's counters and gauges, by series
// (name and labels, as /metrics writes them).
type counters map[string]float64

// scrapeCounters reads every counter and gauge of the server's /metrics;
// on error it returns none, so that sums over them are 0.
func scrapeCounters(t Target) (counters, error) {
	lines, err := scrapeLines(t)
	if err != nil {
		return counters{}, err
	}
	cs := counters{}
	for _, line := range lines {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			cs[line[:i]] = v
		}
	}
	return cs, nil
}

// sum returns the sum of the series of name whose labels contain label
// (such as `result="ok"`; "" for all of them).
func (cs counters) sum(name, label string) float64 {
	var total float64
	for series, v := range cs {
		rest, ok := strings.CutPrefix(series, name)
		if ok && (rest == "" || rest[0] == '{') && strings.Contains(rest, label) {
			total += v
		}
	}
	return total
}

// addBrokerCost adds what the server's broker side cost over took, from
// its counters before (m0) and after (m1): the binds and unbinds the
// broker did (a pattern served from a covering or wide binding costs
// none), the messages the broker sent the process, and those of them that
// reached at least one stream.
func (r *Run) addBrokerCost(m0, m1 counters, took time.Duration) {
	if len(m0) == 0 || len(m1) == 0 {
		return
	}
	rate := func(name, label string) float64 { return (m1.sum(name, label) - m0.sum(name, label)) / took.Seconds() }
	const ops = "eventsproxy_broker_bind_operations_total"
	// op="bind" counts the patterns served by a cover too, as result="covered".
	binds := rate(ops, `op="bind"`) - rate(ops, `result="covered"`) + rate(ops, `op="unbind"`)
	r.add("server: broker binds+unbinds/s", "/s", binds)
	r.add("server: messages from the broker/s", "/s", rate("eventsproxy_messages_received_total", ""))
	r.add("server: messages wanted by a stream/s", "/s", rate("eventsproxy_messages_wanted_total", ""))
	r.add("server: wide bindings at end", "", m1.sum("eventsproxy_broker_wide_bindings", ""))
}

// histogramQuantile estimates the q-quantile of cumulative buckets by
// linear interpolation inside the bucket that holds it, as Prometheus's
// histogram_quantile does.
func histogramQuantile(q float64, bs []bucket) time.Duration {
	if len(bs) == 0 || bs[len(bs)-1].count == 0 {
		return 0
	}
	rank := q * bs[len(bs)-1].count
	lo, below := 0.0, 0.0
	for _, b := range bs {
		if b.count >= rank {
			if math.IsInf(b.le, 1) {
				return time.Duration(lo * float64(time.Second))
			}
			frac := 0.0
			if b.count > below {
				frac = (rank - below) / (b.count - below)
			}
			return time.Duration((lo + (b.le-lo)*frac) * float64(time.Second))
		}
		lo, below = b.le, b.count
	}
	return time.Duration(lo * float64(time.Second))
}
