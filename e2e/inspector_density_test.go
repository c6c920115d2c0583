//go:build integration

package e2e

import (
	"context"
	"math"
	"net/url"
	"os/exec"
	"strings"
	"testing"
)

// TestInspectorDensity checks what helps with many messages: colours by
// exchange that do not depend on the order of arrival, a compact view, the
// message rate, filter matches highlighted and kept in the address, an
// expanded payload that stays in place, and the bindings as commands.
func TestInspectorDensity(t *testing.T) {
	t.Parallel()
	ex1, ex2 := newExchange(t), newExchange(t)
	p := startProxy(t)
	query := url.Values{"bind": {ex1.Name + "=#", ex2.Name + "=#"}, "connect": {"1"}}
	in := openInspector(t, p.URL+"/?"+query.Encode())
	in.waitState(t, "ready")

	needle := map[string]any{"word": "needle"}
	ex1.publish(t, "a.one", jsonMessage(t, needle))
	ex2.publish(t, "b.two", jsonMessage(t, map[string]any{"word": "hay"}, "route.index.x"))
	ex1.publish(t, "c.three", jsonMessage(t, map[string]any{"word": "hay"}))
	in.waitMessages(t, 3)
	hues := map[string]string{}
	d := in.density(t)
	for _, h := range d.Hues {
		if prev, ok := hues[h.Exchange]; ok && prev != h.Hue {
			t.Errorf("exchange %s has hues %s and %s", h.Exchange, prev, h.Hue)
		}
		hues[h.Exchange] = h.Hue
	}
	if d.Rate == "" || d.Rate == "0" {
		t.Errorf("after 3 messages the rate reads %q", d.Rate)
	}

	// An expanded payload in view stays where it is as messages come in.
	in.toggle(t, 0)
	top := in.density(t).ExpandedTop
	ex2.publish(t, "d.four", jsonMessage(t, map[string]any{"word": "hay"}))
	in.waitMessages(t, 4)
	if now := in.density(t).ExpandedTop; top == nil || now == nil || math.Abs(*now-*top) > 1 {
		t.Errorf("the expanded row moved from %v to %v as a message came in above it", deref(top), deref(now))
	}
	in.toggle(t, 1)

	in.click(t, "Compact")
	for i, h := range in.density(t).Heights {
		if h > 40 {
			t.Errorf("compact row %d is %.0f px high, want one line", i, h)
		}
	}
	in.screenshot(t, "compact")

	in.filter(t, "needle")
	d = in.density(t)
	if d.Highlights < 1 || len(d.Heights) != 1 {
		t.Errorf("filtering for needle shows %d rows with %d highlights, want 1 row and its match highlighted", len(d.Heights), d.Highlights)
	}
	in.screenshot(t, "filtered")

	// The commands for these bindings, which a terminal can run.
	in.click(t, "Copy as listen command")
	wantListen := "eventsproxy listen \\\n  --url " + p.URL + " \\\n  --bind '" + ex1.Name + "=#' \\\n  --bind '" + ex2.Name + "=#'"
	if got := in.density(t).Copied; got != wantListen {
		t.Errorf("Copy as listen command gave\n%s\nwant\n%s", got, wantListen)
	}
	in.click(t, "Copy as curl")
	curl := in.density(t).Copied
	if !strings.HasPrefix(curl, "curl -N '"+p.URL+connectPath+"?bindings=") {
		t.Fatalf("Copy as curl gave %q", curl)
	}
	ctx, cancel := context.WithTimeout(t.Context(), eventTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sh", "-c", curl+" --max-time 3")
	out, _ := cmd.Output() // curl ends with 28 at --max-time
	if !strings.Contains(string(out), "event: ready") {
		t.Errorf("the copied curl command printed %q, want a ready event", out)
	}

	// The filter is in the address: a reload keeps it, and the colours do
	// not depend on which exchange came first.
	u := in.url(t)
	if !strings.Contains(u, "filter=needle") {
		t.Fatalf("the address %s lacks the filter", u)
	}
	in.open(t, u)
	in.waitState(t, "ready")
	if d := in.density(t); d.Filter != "needle" {
		t.Errorf("after a reload the filter is %q, want needle", d.Filter)
	}
	ex2.publish(t, "e.five", jsonMessage(t, needle))
	ex1.publish(t, "f.six", jsonMessage(t, needle))
	in.waitMessages(t, 2)
	for _, h := range in.density(t).Hues {
		if h.Hue != hues[h.Exchange] {
			t.Errorf("after a reload exchange %s has hue %s, before %s", h.Exchange, h.Hue, hues[h.Exchange])
		}
	}

	dark := openInspector(t, u, "--color-scheme", "dark")
	dark.waitState(t, "ready")
	ex1.publish(t, "g.seven", jsonMessage(t, needle))
	dark.waitMessages(t, 1)
	dark.click(t, "Compact")
	dark.screenshot(t, "compact-dark")
}

func deref(f *float64) any {
	if f == nil {
		return nil
	}
	return *f
}
