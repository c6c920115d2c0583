package load

import (
	"encoding/json"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Metric is one figure of a run.
type Metric struct {
	Name  string  `json:"name"`
	Unit  string  `json:"unit,omitempty"`
	Value float64 `json:"value"`
}

// Run is what one run of a scenario measured.
type Run struct {
	Metrics []Metric `json:"metrics"`
	// Notes say what went wrong, if anything (the first error seen).
	Notes []string `json:"notes,omitempty"`
	// LoadAvg is /proc/loadavg's first three fields as the run started.
	LoadAvg string `json:"loadavg"`
}

func (r *Run) add(name, unit string, v float64) {
	r.Metrics = append(r.Metrics, Metric{Name: name, Unit: unit, Value: v})
}

func (r *Run) addMs(name string, d time.Duration) {
	r.add(name, "ms", float64(d)/float64(time.Millisecond))
}

func (r *Run) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// Get returns the value of the metric named name, and whether there is one.
func (r *Run) Get(name string) (float64, bool) {
	for _, m := range r.Metrics {
		if m.Name == name {
			return m.Value, true
		}
	}
	return 0, false
}

// addUsage adds the CPU each party used between u and v.
func (r *Run) addUsage(u, v usage, serverKnown bool) {
	server, tool, broker, others := u.cores(v)
	if serverKnown {
		r.add("server CPU", "cores", server)
	}
	r.add("tool CPU", "cores", tool)
	if u.broker > 0 || v.broker > 0 {
		r.add("RabbitMQ CPU", "cores", broker)
	}
	r.add("other CPU on the machine", "cores", others)
}

// Report is a scenario's runs and their medians.
type Report struct {
	Scenario string   `json:"scenario"`
	Params   string   `json:"params"`
	Runs     []Run    `json:"runs"`
	Median   []Metric `json:"median"`
}

// Summarize fills Median: each metric's median over the runs that have it.
func (rep *Report) Summarize() {
	rep.Median = nil
	var names []Metric
	for _, r := range rep.Runs {
		for _, m := range r.Metrics {
			if !slices.ContainsFunc(names, func(n Metric) bool { return n.Name == m.Name }) {
				names = append(names, Metric{Name: m.Name, Unit: m.Unit})
			}
		}
	}
	for _, n := range names {
		var vs []float64
		for _, r := range rep.Runs {
			if v, ok := r.Get(n.Name); ok {
				vs = append(vs, v)
			}
		}
		n.Value = median(vs)
		rep.Median = append(rep.Median, n)
	}
}

func median(vs []float64) float64 {
	if len(vs) == 0 {
		return math.NaN()
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// WriteTable writes the report as a table: a row per metric, a column per
// run and the median.
func (rep *Report) WriteTable(w io.Writer) {
	fmt.Fprintf(w, "\n== %s: %s\n", rep.Scenario, rep.Params)
	for i, r := range rep.Runs {
		fmt.Fprintf(w, "   run %d: load average at start %s\n", i+1, r.LoadAvg)
		for _, n := range r.Notes {
			fmt.Fprintf(w, "   run %d: %s\n", i+1, n)
		}
	}
	rows := [][]string{{"metric", "unit"}}
	for i := range rep.Runs {
		rows[0] = append(rows[0], fmt.Sprintf("run %d", i+1))
	}
	rows[0] = append(rows[0], "median")
	for _, m := range rep.Median {
		row := []string{m.Name, m.Unit}
		for _, r := range rep.Runs {
			if v, ok := r.Get(m.Name); ok {
				row = append(row, format(v))
			} else {
				row = append(row, "-")
			}
		}
		rows = append(rows, append(row, format(m.Value)))
	}
	width := make([]int, len(rows[0]))
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], utf8.RuneCountInString(c))
		}
	}
	for _, row := range rows {
		var b strings.Builder
		for i, c := range row {
			pad := strings.Repeat(" ", width[i]-utf8.RuneCountInString(c))
			if i < 2 {
				b.WriteString(c + pad + "  ")
			} else {
				b.WriteString("  " + pad + c)
			}
		}
		fmt.Fprintln(w, strings.TrimRight(b.String(), " "))
	}
}

func format(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a == math.Trunc(a) && a < 1e12:
		return fmt.Sprintf("%.0f", v)
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

// WriteJSON writes the reports as one JSON document.
func WriteJSON(w io.Writer, reps []*Report) error {
	// NaN is not JSON: a missing median becomes null.
	type metric struct {
		Name  string   `json:"name"`
		Unit  string   `json:"unit,omitempty"`
		Value *float64 `json:"value"`
	}
	conv := func(ms []Metric) []metric {
		out := make([]metric, len(ms))
		for i, m := range ms {
			out[i] = metric{Name: m.Name, Unit: m.Unit}
			if !math.IsNaN(m.Value) {
				v := m.Value
				out[i].Value = &v
			}
		}
		return out
	}
	type run struct {
		Metrics []metric `json:"metrics"`
		Notes   []string `json:"notes,omitempty"`
		LoadAvg string   `json:"loadavg"`
	}
	type report struct {
		Scenario string   `json:"scenario"`
		Params   string   `json:"params"`
		Runs     []run    `json:"runs"`
		Median   []metric `json:"median"`
	}
	var out []report
	for _, r := range reps {
		o := report{Scenario: r.Scenario, Params: r.Params, Median: conv(r.Median)}
		for _, ru := range r.Runs {
			o.Runs = append(o.Runs, run{Metrics: conv(ru.Metrics), Notes: ru.Notes, LoadAvg: ru.LoadAvg})
		}
		out = append(out, o)
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
