package server_test

import (
	"bufio"
	"encoding/json"
	"net/http"
	"os"
	"regexp"
	"slices"
	"strings"
	"testing"

	"eventsproxy/internal/membroker"
)

// dashboardFile is the Grafana dashboard that deploy/ ships for the
// service's /metrics.
const dashboardFile = "../../deploy/grafana/eventsproxy.json"

// TestDashboardQueriesExist checks that every metric the Grafana dashboard
// queries, and every label it selects or groups by, is one that the
// running service exports on /metrics.
func TestDashboardQueriesExist(t *testing.T) {
	exprs := dashboardExprs(t)
	if len(exprs) < 10 {
		t.Fatalf("%s: %d queries found, want the dashboard's panels", dashboardFile, len(exprs))
	}

	mb := membroker.New()
	mb.DeclareExchange("x")
	u := run(t, mb)
	families := scrape(t, u+"/metrics")

	// Labels that Prometheus adds to every series it scrapes.
	scrapeLabels := []string{"instance", "job"}
	for _, expr := range exprs {
		metricNames, labels := parseQuery(expr)
		if len(metricNames) == 0 {
			t.Errorf("query %q: no metric found in it", expr)
		}
		var known []string
		for _, name := range metricNames {
			fam, ok := families.lookup(name)
			if !ok {
				t.Errorf("query %q: the service exports no metric %q", expr, name)
				continue
			}
			known = append(known, fam...)
		}
		for _, l := range labels {
			if !slices.Contains(known, l) && !slices.Contains(scrapeLabels, l) {
				t.Errorf("query %q: label %q is on none of its metrics (they have %v)", expr, l, known)
			}
		}
	}
}

// dashboardExprs returns the PromQL of every panel target and template
// variable of the dashboard, rows' nested panels included.
func dashboardExprs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	type panel struct {
		Targets []struct {
			Expr string `json:"expr"`
		} `json:"targets"`
		Panels []json.RawMessage `json:"panels"`
	}
	var dash struct {
		Panels     []json.RawMessage `json:"panels"`
		Templating struct {
			List []struct {
				Type       string `json:"type"`
				Definition string `json:"definition"`
			} `json:"list"`
		} `json:"templating"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	var exprs []string
	var walk func([]json.RawMessage)
	walk = func(raw []json.RawMessage) {
		for _, r := range raw {
			var p panel
			if err := json.Unmarshal(r, &p); err != nil {
				t.Fatalf("%s: a panel: %v", dashboardFile, err)
			}
			for _, target := range p.Targets {
				exprs = append(exprs, target.Expr)
			}
			walk(p.Panels)
		}
	}
	walk(dash.Panels)
	for _, v := range dash.Templating.List {
		if v.Type == "query" {
			exprs = append(exprs, v.Definition)
		}
	}
	return exprs
}

var (
	queryStrings   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	queryRanges    = regexp.MustCompile(`\[[^\]]*\]`)
	queryVariables = regexp.MustCompile(`\$\w+`)
	queryGrouping  = regexp.MustCompile(`\b(?:by|without)\s*\(([^)]*)\)`)
	queryMatchers  = regexp.MustCompile(`\{([^}]*)\}`)
	queryMatcher   = regexp.MustCompile(`([a-zA-Z_]\w*)\s*(?:=~|!~|!=|=)`)
	queryLabelVals = regexp.MustCompile(`^label_values\(\s*([a-zA-Z_:][\w:]*)\s*,\s*([a-zA-Z_]\w*)\s*\)$`)
	queryIdents    = regexp.MustCompile(`[a-zA-Z_:][\w:]*\s*\(?`)
)

// queryKeywords are PromQL's words that are neither functions nor metrics.
var queryKeywords = []string{"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless", "offset"}

// parseQuery returns the metric names and label names that a PromQL
// expression (or Grafana's label_values(metric, label)) uses. It knows
// enough PromQL for a dashboard: selectors with matchers, functions,
// aggregations with by or without, ranges, arithmetic and Grafana's
// variables.
func parseQuery(expr string) (metricNames, labels []string) {
	if m := queryLabelVals.FindStringSubmatch(expr); m != nil {
		return []string{m[1]}, []string{m[2]}
	}
	s := queryStrings.ReplaceAllString(expr, `""`)
	s = queryRanges.ReplaceAllString(s, "")
	s = queryVariables.ReplaceAllString(s, "")
	for _, m := range queryGrouping.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(m[1], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labels = append(labels, l)
			}
		}
	}
	s = queryGrouping.ReplaceAllString(s, "")
	for _, m := range queryMatchers.FindAllStringSubmatch(s, -1) {
		for _, l := range queryMatcher.FindAllStringSubmatch(m[1], -1) {
			labels = append(labels, l[1])
		}
	}
	s = queryMatchers.ReplaceAllString(s, "")
	for _, id := range queryIdents.FindAllString(s, -1) {
		if strings.HasSuffix(id, "(") || slices.Contains(queryKeywords, id) {
			continue
		}
		metricNames = append(metricNames, strings.TrimSpace(id))
	}
	return metricNames, labels
}

// metricFamilies maps the name of each family on /metrics to the label
// names of its samples.
type metricFamilies map[string][]string

// lookup returns the label names of a series name: a family's own, or a
// histogram's or summary's _bucket (with le), _count or _sum.
func (f metricFamilies) lookup(name string) ([]string, bool) {
	if labels, ok := f[name]; ok {
		return labels, true
	}
	for _, suffix := range []string{"_bucket", "_count", "_sum"} {
		if base, ok := strings.CutSuffix(name, suffix); ok {
			if labels, ok := f[base]; ok {
				if suffix == "_bucket" {
					labels = append(slices.Clip(labels), "le")
				}
				return labels, true
			}
		}
	}
	return nil, false
}

// scrape reads the Prometheus text format at u into its families.
func scrape(t *testing.T, u string) metricFamilies {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	families := make(metricFamilies)
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(nil, 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if rest, ok := strings.CutPrefix(line, "# TYPE "); ok {
			name, _, _ := strings.Cut(rest, " ")
			families[name] = nil
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		name, rest, _ := strings.Cut(line, "{")
		if i := strings.IndexByte(name, ' '); i >= 0 {
			name, rest = name[:i], ""
		}
		base := name
		for _, suffix := range []string{"_bucket", "_count", "_sum"} {
			if b, ok := strings.CutSuffix(name, suffix); ok {
				if _, isFamily := families[b]; isFamily {
					base = b
				}
			}
		}
		for _, l := range queryMatcher.FindAllStringSubmatch(rest, -1) {
			if l[1] != "le" && !slices.Contains(families[base], l[1]) {
				families[base] = append(families[base], l[1])
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if _, ok := families["eventsproxy_streams_open"]; !ok {
		t.Fatalf("%s has no eventsproxy_streams_open: not the service's metrics", u)
	}
	return families
}

// TestParseQuery pins what the dashboard check takes out of PromQL.
func TestParseQuery(t *testing.T) {
	for _, tc := range []struct {
		expr           string
		metrics, label []string
	}{
		{`sum(eventsproxy_streams_open{instance=~"$instance"})`, []string{"eventsproxy_streams_open"}, []string{"instance"}},
		{`sum by (why) (rate(eventsproxy_streams_ended_total{instance=~"$instance"}[$__rate_interval]))`, []string{"eventsproxy_streams_ended_total"}, []string{"why", "instance"}},
		{`histogram_quantile(0.99, sum by (le) (rate(x_bucket{a="b{c}"}[5m])))`, []string{"x_bucket"}, []string{"le", "a"}},
		{`process_open_fds / process_max_fds`, []string{"process_open_fds", "process_max_fds"}, nil},
		{`label_values(eventsproxy_streams_open, instance)`, []string{"eventsproxy_streams_open"}, []string{"instance"}},
	} {
		m, l := parseQuery(tc.expr)
		if !slices.Equal(m, tc.metrics) || !slices.Equal(l, tc.label) {
			t.Errorf("parseQuery(%q) = %q, %q; want %q, %q", tc.expr, m, l, tc.metrics, tc.label)
		}
	}
}
