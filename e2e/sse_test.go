//go:build integration

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"testing"
)

// connectPath is the proxy's streaming endpoint (SPEC §1).
const connectPath = "/api/events/v1/connect/"

// binding is one entry of the connect endpoint's bindings list.
type binding struct {
	Exchange          string `json:"exchange"`
	RoutingKeyPattern string `json:"routingKeyPattern"`
}

// connectURL returns the URL at which the proxy streams the messages that
// match bindings.
func connectURL(t testing.TB, proxyURL string, bindings ...binding) string {
	t.Helper()
	b, err := json.Marshal(map[string][]binding{"bindings": bindings})
	if err != nil {
		t.Fatal(err)
	}
	return connectURLRaw(proxyURL, string(b))
}

// connectURLRaw returns the connect URL with query as the bindings parameter,
// valid or not.
func connectURLRaw(proxyURL, query string) string {
	return proxyURL + connectPath + "?bindings=" + url.QueryEscape(query)
}

// sseFrame is one event as read off the wire: its field lines up to the
// blank line that ends it.
type sseFrame struct {
	Lines []string
}

// field returns the values of a field, in order.
func (f sseFrame) field(name string) []string {
	var values []string
	for _, line := range f.Lines {
		key, value, _ := strings.Cut(line, ":")
		if key == name {
			values = append(values, strings.TrimPrefix(value, " "))
		}
	}
	return values
}

// String returns the frame as it was sent.
func (f sseFrame) String() string {
	return strings.Join(f.Lines, "\n") + "\n\n"
}

// readFrame reads one event from an SSE stream, skipping comment lines.
func readFrame(r *bufio.Reader) (sseFrame, error) {
	var f sseFrame
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return f, fmt.Errorf("read SSE stream after %q: %w", f.Lines, err)
		}
		line = strings.TrimSuffix(strings.TrimSuffix(line, "\n"), "\r")
		switch {
		case line == "" && len(f.Lines) > 0:
			return f, nil
		case line == "", strings.HasPrefix(line, ":"):
		default:
			f.Lines = append(f.Lines, line)
		}
	}
}
