package api_test

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/binding"
)

// rawExchange sends req on a new TCP connection to srvAddr, reads the
// response's status line, and then reads until the server closes the
// connection. The deadline is generous: it only keeps a broken server from
// hanging the test, and what is asserted is the close, not its timing.
func rawExchange(t *testing.T, srvAddr, req string) (status string) {
	t.Helper()
	c, err := net.Dial("tcp", srvAddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(30 * time.Second)); err != nil {
		t.Fatal(err)
	}
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	status, err = br.ReadString('\n')
	if err != nil {
		t.Fatalf("no status line: %v", err)
	}
	if _, err := io.Copy(io.Discard, br); err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("answered %q, but the connection was still open 30s later", strings.TrimSpace(status))
		}
		t.Fatalf("reading to the close: %v", err)
	}
	return strings.TrimSpace(status)
}

// TestBodyRefusedAndConnectionClosed checks that a GET announcing a body
// that never comes is answered at once and its connection closed, on
// every kind of route, without the stream being opened.
func TestBodyRefusedAndConnectionClosed(t *testing.T) {
	t.Parallel()
	fb := &fakeBroker{connected: true, called: make(chan []binding.Binding, 1)}
	srv := newServer(t, fb)
	addr := srv.Listener.Addr().String()
	connect := "/api/events/v1/connect/?bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`)
	for _, path := range []string{"/api/events/v1/ping", "/", "/no/such/thing", connect} {
		for name, hdr := range map[string]string{
			"length":  "Content-Length: 100\r\n",
			"chunked": "Transfer-Encoding: chunked\r\n",
		} {
			t.Run(name+" "+path, func(t *testing.T) {
				t.Parallel()
				got := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: x\r\n"+hdr+"\r\n")
				if got != "HTTP/1.1 413 Request Entity Too Large" {
					t.Errorf("got %q, want 413", got)
				}
			})
		}
	}
	t.Cleanup(func() {
		if len(fb.called) != 0 {
			t.Errorf("a request with a body was subscribed: %v", <-fb.called)
		}
	})
}

func TestOtherMethodsGet405(t *testing.T) {
	t.Parallel()
	srv := newServer(t, &fakeBroker{connected: true})
	for _, path := range []string{"/api/events/v1/connect/", "/api/events/v1/connect", "/api/events/v1/ping",
		"/api/events/v1/reference", "/__heartbeat__", "/__lbheartbeat__", "/__version__", "/", "/inspector/app.js"} {
		for _, method := range []string{http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodOptions, "PROPFIND"} {
			req, _ := http.NewRequest(method, srv.URL+path, nil)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != "GET, HEAD" {
				t.Errorf("%s %s: got %d Allow %q, want 405 with Allow: GET, HEAD", method, path, resp.StatusCode, resp.Header.Get("Allow"))
			}
		}
	}
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/no/such/thing", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("POST to an unknown path: got %d, want 404", resp.StatusCode)
	}
}

// TestHeadOnConnect checks that HEAD gets a stream's header and nothing
// else: no body and no subscription.
func TestHeadOnConnect(t *testing.T) {
	t.Parallel()
	fb := &fakeBroker{connected: true, called: make(chan []binding.Binding, 1)}
	srv := newServer(t, fb)
	connect := "/api/events/v1/connect/?bindings=" + url.QueryEscape(`{"bindings":[{"exchange":"e","routingKeyPattern":"#"}]}`)
	for _, path := range []string{connect, strings.Replace(connect, "connect/", "connect", 1)} {
		req := "HEAD " + path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		c, err := net.Dial("tcp", srv.Listener.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(30 * time.Second))
		_, _ = io.WriteString(c, req)
		all, err := io.ReadAll(c)
		c.Close()
		if err != nil {
			t.Fatalf("HEAD %s: %v after %q", path, err, all)
		}
		head, body, _ := strings.Cut(string(all), "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/1.1 200 OK\r\n") || !strings.Contains(head, "Content-Type: text/event-stream\r\n") || body != "" {
			t.Errorf("HEAD %s: got %q, want 200 with a stream's header and no body", path, all)
		}
		if strings.Contains(head, "Transfer-Encoding") {
			t.Errorf("HEAD %s: header says a body follows: %q", path, head)
		}
	}
	if len(fb.called) != 0 {
		t.Errorf("HEAD subscribed: %v", <-fb.called)
	}
}
