//go:build integration

package main

import (
	"reflect"
	"strings"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/rabbittest"
)

// TestPublishMessage checks what reaches the broker: a queue bound to the
// exchange gets the body, content type and CC header as an AMQP array of
// strings.
func TestPublishMessage(t *testing.T) {
	checkLeaks(t)
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "eventsproxy-test-publish/")
	q, err := ch.QueueDeclare("", false, true, true, false, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := ch.QueueBind(q.Name, "#", ex, false, nil); err != nil {
		t.Fatal(err)
	}

	code, stderr := runPublish(t, []string{"--amqp-url", rabbittest.URL(), "--exchange", ex, "--routing-key", "a.b",
		"--cc", "route.x", "--cc", "c.d", "--content-type", "text/plain", "--header", "x-trace=a=b", "--header", "n=1",
		"--", "-body starting with a dash"}, noEnvironment, nil)
	if code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	want := `published 26 bytes to exchange "` + ex + `" with routing key "a.b": confirmed` + "\n"
	if stderr != want {
		t.Errorf("stderr %q, want %q", stderr, want)
	}
	// The broker confirms a message once its queues have it.
	d, ok, err := ch.Get(q.Name, true)
	if err != nil || !ok {
		t.Fatalf("get from queue: ok=%v err=%v", ok, err)
	}
	if string(d.Body) != "-body starting with a dash" || d.ContentType != "text/plain" || d.RoutingKey != "a.b" || d.Exchange != ex {
		t.Errorf("delivery: body %q, content type %q, routing key %q, exchange %q", d.Body, d.ContentType, d.RoutingKey, d.Exchange)
	}
	if want := (amqp.Table{"CC": []any{"route.x", "c.d"}, "x-trace": "a=b", "n": "1"}); !reflect.DeepEqual(d.Headers, want) {
		t.Errorf("headers %#v, want %#v", d.Headers, want)
	}

	// Without --cc there is no CC header; the content type defaults to JSON.
	code, stderr = runPublish(t, []string{"--amqp-url", rabbittest.URL(), "--exchange", ex, "--routing-key", "", "{}"}, noEnvironment, nil)
	if code != 0 {
		t.Fatalf("exit code %d, stderr %q", code, stderr)
	}
	d, ok, err = ch.Get(q.Name, true)
	if err != nil || !ok {
		t.Fatalf("get from queue: ok=%v err=%v", ok, err)
	}
	if _, has := d.Headers["CC"]; has || d.ContentType != "application/json" || d.RoutingKey != "" {
		t.Errorf("delivery: headers %v, content type %q, routing key %q", d.Headers, d.ContentType, d.RoutingKey)
	}
}

func TestPublishMissingExchange(t *testing.T) {
	checkLeaks(t)
	missing := rabbittest.Unique("eventsproxy-test-missing/")
	code, stderr := runPublish(t, []string{"--amqp-url", rabbittest.URL(), "--exchange", missing, "--routing-key", "a", "{}"}, noEnvironment, nil)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := `exchange "` + missing + `" does not exist on amqp://`; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not contain %q", stderr, want)
	}
	assertNoPassword(t, stderr)
}

func TestPublishCannotConnect(t *testing.T) {
	checkLeaks(t)
	code, stderr := runPublish(t, []string{"--amqp-url", "amqp://guest:s3cret@127.0.0.1:1/", "--exchange", "x", "--routing-key", "a", "{}"}, noEnvironment, nil)
	if code != 1 {
		t.Errorf("exit code %d, want 1", code)
	}
	if want := "cannot connect to amqp://guest:xxxxx@127.0.0.1:1/"; !strings.Contains(stderr, want) {
		t.Errorf("stderr %q does not contain %q", stderr, want)
	}
	if strings.Contains(stderr, "s3cret") {
		t.Errorf("stderr %q shows the password", stderr)
	}
}

// assertNoPassword fails when text shows the password of rabbittest.URL.
func assertNoPassword(t testing.TB, text string) {
	t.Helper()
	u := rabbittest.URL()
	if i, j := strings.Index(u, "://"), strings.Index(u, "@"); i >= 0 && j > i {
		if _, pw, ok := strings.Cut(u[i+3:j], ":"); ok && strings.Contains(text, ":"+pw+"@") {
			t.Errorf("%q shows the broker password", text)
		}
	}
}

func TestPublishUsage(t *testing.T) {
	url := "amqp://guest:s3cret@127.0.0.1:5672/"
	tests := []struct {
		name   string
		args   []string
		getenv func(string) string
		code   int
		out    string // in stdout when code is 0, else in stderr
	}{
		{"help", []string{"--help"}, noEnvironment, 0, "Usage: eventsproxy publish"},
		{"nothing", nil, noEnvironment, 2, "--amqp-url (or AMQP_URL) is required"},
		{"no exchange", []string{"--amqp-url", url, "--routing-key", "a", "{}"}, noEnvironment, 2, "--exchange is required"},
		{"no routing key", []string{"--amqp-url", url, "--exchange", "x", "{}"}, noEnvironment, 2, "--routing-key is required"},
		{"http URL", []string{"--amqp-url", "http://guest:s3cret@h/", "--exchange", "x", "--routing-key", "a", "{}"}, noEnvironment, 2,
			`--amqp-url must start with amqp:// or amqps://, not "http://"`},
		{"URL without host", []string{"--amqp-url", "amqp://guest:s3cret@/", "--exchange", "x", "--routing-key", "a", "{}"}, noEnvironment, 2,
			"--amqp-url amqp://guest:xxxxx@/ has no host"},
		{"two bodies", []string{"--amqp-url", url, "--exchange", "x", "--routing-key", "a", "{}", "{}"}, noEnvironment, 2, "one BODY at most"},
		{"flag after body", []string{"--amqp-url", url, "--exchange", "x", "{}", "--routing-key", "a"}, noEnvironment, 2, "one BODY at most"},
		{"unknown flag", []string{"--nope"}, noEnvironment, 2, "flag provided but not defined"},
		{"bad timeout", []string{"--amqp-url", url, "--exchange", "x", "--routing-key", "a", "--timeout", "0s", "{}"}, noEnvironment, 2, "--timeout 0s must be positive"},
		{"bad header", []string{"--amqp-url", url, "--exchange", "x", "--routing-key", "a", "--header", "novalue", "--header", "CC=x", "{}"}, noEnvironment, 2,
			"--header \"novalue\" must be NAME=VALUE\n--header CC: use --cc for routing keys"},
		{"no body and no stdin", []string{"--amqp-url", url, "--exchange", "x", "--routing-key", "a"}, noEnvironment, 2, "no BODY argument and no stdin"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := checkRun(t, append([]string{"publish"}, tt.args...), tt.getenv, tt.code, tt.out)
			if strings.Contains(out, "s3cret") {
				t.Errorf("output %q shows the password", out)
			}
		})
	}
}
