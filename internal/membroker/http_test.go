package membroker

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync/atomic"
	"testing"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

func TestPublishHandler(t *testing.T) {
	t.Parallel()
	mb := New()
	mb.DeclareExchange("amq.topic")
	c := dial(t, mb, binding.Binding{Exchange: "amq.topic", RoutingKeyPattern: "a.#"})
	var asking atomic.Int32
	asking.Store(1)
	c.(broker.PropertyTaker).TakeProperties(&asking)
	co := consume(t, c)
	srv := httptest.NewServer(mb.PublishHandler())
	defer srv.Close()

	// post returns the status and the answer's code field.
	post := func(query, body string) (int, string) {
		t.Helper()
		resp, err := http.Post(srv.URL+PublishPath+"?"+query, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var e PublishError
		if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
			t.Errorf("%s: answer is not JSON: %v", query, err)
		}
		return resp.StatusCode, e.Code
	}
	if code, _ := post("exchange=amq.topic&routingKey=a.b&cc=route.x&cc=route.y", `{"hello": 1}`); code != 200 {
		t.Fatalf("status %d", code)
	}
	m := co.next(t)
	if m.Exchange != "amq.topic" || m.RoutingKey != "a.b" || !reflect.DeepEqual(m.CC, []string{"route.x", "route.y"}) || string(m.Body) != `{"hello": 1}` {
		t.Errorf("got %+v", m)
	}
	// Headers and the content type become the message's.
	if code, _ := post("exchange=amq.topic&routingKey=a.c&header=x-trace=a%3Db&header=n=1", `{}`); code != 200 {
		t.Fatalf("status %d", code)
	}
	m = co.next(t)
	want := amqp.Table{"x-trace": "a=b", "n": "1"}
	if m.Props == nil || m.Props.ContentType != "application/json" || !reflect.DeepEqual(m.Props.Headers, want) || m.Props.Timestamp.IsZero() {
		t.Errorf("properties %+v, want content type application/json and headers %v", m.Props, want)
	}

	for _, tc := range []struct {
		query string
		want  int
		code  string
	}{
		{"exchange=nope&routingKey=a", 404, "ExchangeNotFound"},
		{"routingKey=a", 400, "InputError"},
		{"exchange=amq.topic", 400, "InputError"},
		{"exchange=amq.topic&routingKey=a&routingKey=b", 400, "InputError"},
		{"exchange=amq.topic&routingKey=a&header=novalue", 400, "InputError"},
		{"exchange=amq.topic&routingKey=a&header=CC=x", 400, "InputError"},
	} {
		if status, code := post(tc.query, "x"); status != tc.want || code != tc.code {
			t.Errorf("%s: status %d %q, want %d %q", tc.query, status, code, tc.want, tc.code)
		}
	}
	resp, err := http.Get(srv.URL + PublishPath + "?exchange=amq.topic&routingKey=a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 {
		t.Errorf("GET: status %d, want 405", resp.StatusCode)
	}
}
