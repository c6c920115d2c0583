package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/sse"
)

// startDev runs `eventsproxy dev` with args until the test ends, and
// returns the base URL it prints and a function that stops it as SIGINT
// would and returns its exit code.
func startDev(t *testing.T, args ...string) (base string, stop func() int) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	stdoutR, stdoutW := io.Pipe()
	stderr := &syncBuffer{}
	exit := make(chan int, 1)
	go func() {
		code := run(ctx, append([]string{"dev"}, args...), func(string) string { return "" }, strings.NewReader(""), stdoutW, stderr)
		stdoutW.Close()
		exit <- code
	}()
	// The first line of stdout says where to look; the rest is drained
	// until the command ends and closes the pipe.
	lines := make(chan string, 1)
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		sc := bufio.NewScanner(stdoutR)
		for sc.Scan() {
			select {
			case lines <- sc.Text():
			default:
			}
		}
		_, _ = io.Copy(io.Discard, stdoutR)
	}()
	code, stopped := -1, false
	stop = func() int {
		if stopped {
			return code
		}
		stopped = true
		cancel()
		select {
		case code = <-exit:
		case <-time.After(15 * time.Second):
			t.Error("dev did not exit within 15s of the signal")
		}
		<-drained
		return code
	}
	t.Cleanup(func() {
		stop()
		if t.Failed() {
			t.Logf("stderr:\n%s", stderr.String())
		}
	})

	var line string
	select {
	case line = <-lines:
	case <-drained:
		t.Fatal("dev ended before printing its URL")
	case <-time.After(10 * time.Second):
		t.Fatal("dev printed nothing within 10s")
	}
	if !strings.Contains(line, "in-process broker") {
		t.Errorf("the first line does not say the broker is in-process: %q", line)
	}
	i := strings.Index(line, "http://")
	if i < 0 {
		t.Fatalf("no URL in %q", line)
	}
	return strings.TrimSuffix(strings.Fields(line[i:])[0], "/"), stop
}

// TestDev runs `eventsproxy dev` as a newcomer would, watches generated
// messages through the printed URL, and stops it as SIGINT would.
func TestDev(t *testing.T) {
	base, stop := startDev(t, "--listen", "127.0.0.1:0", "--rate", "50")

	const exchange = "exchange/taskcluster-queue/v1/task-pending"
	q, err := json.Marshal(map[string]any{"bindings": []map[string]string{{"exchange": exchange, "routingKeyPattern": "#"}}})
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, cancelReq := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelReq()
	req, err := http.NewRequestWithContext(reqCtx, http.MethodGet, base+"/api/events/v1/connect/?properties=1&bindings="+url.QueryEscape(string(q)), nil)
	if err != nil {
		t.Fatal(err)
	}
	client := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
	defer client.CloseIdleConnections()
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	// The client goes before the server, on every path.
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("connect: %s", resp.Status)
	}
	events := sse.NewReader(resp.Body)
	ev, err := events.Next()
	if err != nil || ev.Kind != "ready" {
		t.Fatalf("first event: %q %s (%v), want ready", ev.Kind, ev.Data, err)
	}
	for {
		ev, err = events.Next()
		if err != nil {
			t.Fatalf("reading events: %v", err)
		}
		if ev.Kind != "ping" {
			break
		}
	}
	if ev.Kind != "message" {
		t.Fatalf("event %q %s, want a message", ev.Kind, ev.Data)
	}
	var m struct {
		Exchange   string `json:"exchange"`
		RoutingKey string `json:"routingKey"`
		// The generator's messages have Taskcluster's properties.
		Properties struct {
			ContentType  string `json:"contentType"`
			DeliveryMode int    `json:"deliveryMode"`
		} `json:"properties"`
	}
	if err := json.Unmarshal(ev.Data, &m); err != nil {
		t.Fatalf("message data %s: %v", ev.Data, err)
	}
	if m.Properties.ContentType != "application/json" || m.Properties.DeliveryMode != 2 {
		t.Errorf("message properties %+v, want application/json, persistent", m.Properties)
	}
	if words := strings.Split(m.RoutingKey, "."); m.Exchange != exchange || len(words) != 10 {
		t.Fatalf("message on %q with routing key %q (%d words), want %s and 10 words", m.Exchange, m.RoutingKey, len(words), exchange)
	}
	resp.Body.Close()
	cancelReq()

	if code := stop(); code != 0 {
		t.Fatalf("exit code %d after the signal, want 0", code)
	}
}

// TestDevBadConfiguration checks that dev refuses a bad flag with exit
// code 2 before it listens.
func TestDevBadConfiguration(t *testing.T) {
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"dev", "--rate", "-1"}, func(string) string { return "" }, strings.NewReader(""), &stdout, &stderr)
	if code != 2 || !strings.Contains(stderr.String(), "--rate") {
		t.Fatalf("exit code %d, stderr %q; want 2 and a word about --rate", code, stderr.String())
	}
}
