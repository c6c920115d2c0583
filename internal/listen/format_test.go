package listen

import (
	"strings"
	"testing"
	"time"
)

func TestShortExchange(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"exchange/taskcluster-queue/v1/task-completed":   "queue/task-completed",
		"exchange/taskcluster-github/v1/pull-request":    "github/pull-request",
		"exchange/build/v12/done":                        "build/done",
		"exchange/build/latest/done":                     "build/latest/done",
		"exchange/taskcluster-/v1/x":                     "taskcluster-/x",
		"exchange/x":                                     "x",
		"exchange/":                                      "exchange/",
		"amq.topic":                                      "amq.topic",
		"exchanges/taskcluster-queue/v1/task-completed":  "exchanges/taskcluster-queue/v1/task-completed",
		"exchange/taskcluster-queue/v1/task-completed/x": "queue/task-completed/x",
	}
	for in, want := range tests {
		if got := shortExchange(in); got != want {
			t.Errorf("shortExchange(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestClean(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in   string
		max  int
		want string
	}{
		{"abc", 5, "abc"},
		{"abcde", 5, "abcde"},
		{"abcdef", 5, "abcde…"},
		{"h\u00e9llo w\u00f6rld", 7, "h\u00e9llo w…"},
		{"a\x1b[31mb", 10, "a\uFFFD[31mb"},
		{"a\nb\tc\x7f\u0085", 10, "a\uFFFDb\uFFFDc\uFFFD\uFFFD"},
		{"a\u2028b", 10, "a\uFFFDb"},
		{"bad\xffutf8", 10, "bad\uFFFDutf8"},
	}
	for _, tt := range tests {
		if got := clean(tt.in, tt.max); got != tt.want {
			t.Errorf("clean(%q, %d) = %q, want %q", tt.in, tt.max, got, tt.want)
		}
	}
}

func TestAppendJSONLine(t *testing.T) {
	t.Parallel()
	tests := []struct{ name, in, want string }{
		{"as is", `{"a": 1, "b":"<&>"}`, `{"a": 1, "b":"<&>"}` + "\n"},
		{"several data lines", "{\"a\":\n 1}", `{"a":1}` + "\n"},
		{"not JSON on several lines", "a\nb", "a b\n"},
	}
	for _, tt := range tests {
		if got := string(appendJSONLine(nil, []byte(tt.in))); got != tt.want {
			t.Errorf("%s: appendJSONLine(%q) = %q, want %q", tt.name, tt.in, got, tt.want)
		}
	}
}

func TestAppendSummary(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 11, 27, 5, 6, 7, 8e6, time.UTC)
	tests := []struct {
		name  string
		data  string
		color bool
		want  string
	}{
		{
			name: "no routes, string payload",
			data: `{"exchange":"amq.topic","routingKey":"a.b","redelivered":false,"routes":[],"payload":"plain text"}`,
			want: `05:06:07.008  amq.topic  a.b  "plain text"` + "\n",
		},
		{
			name: "one route, redelivered",
			data: `{"exchange":"amq.topic","routingKey":"a.b","redelivered":true,"routes":["x"],"payload":{"n": 1}}`,
			want: `05:06:07.008  amq.topic  a.b  1 route  redelivered  {"n":1}` + "\n",
		},
		{
			name: "properties and headers",
			data: `{"exchange":"amq.topic","routingKey":"a.b","redelivered":false,"routes":[],"payload":1,"properties":{"contentType":"application/json"},"headers":{"a":1,"b":"x"}}`,
			want: `05:06:07.008  amq.topic  a.b  application/json, 2 headers  1` + "\n",
		},
		{
			name: "properties without a content type",
			data: `{"exchange":"amq.topic","routingKey":"a.b","redelivered":false,"routes":[],"payload":1,"properties":{},"headers":{"a":1}}`,
			want: `05:06:07.008  amq.topic  a.b  1 header  1` + "\n",
		},
		{
			name: "long payload cut",
			data: `{"exchange":"amq.topic","routingKey":"k","routes":[],"payload":"` + strings.Repeat("x", 200) + `"}`,
			want: `05:06:07.008  amq.topic  k  "` + strings.Repeat("x", 79) + "…\n",
		},
		{
			name:  "terminal escapes in a message are defused",
			data:  `{"exchange":"amq.topic","routingKey":"a\u001b[2Jb","routes":[],"payload":"\u001b]0;title\u0007"}`,
			color: true,
			want:  "\x1b[2m05:06:07.008\x1b[0m  \x1b[36mamq.topic\x1b[0m  \x1b[32ma\uFFFD[2Jb\x1b[0m  \"\\u001b]0;title\\u0007\"\n",
		},
		{
			name: "not a message object",
			data: `[1,2]`,
			want: "05:06:07.008  (not a message object)  [1,2]\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got := string(appendSummary(nil, []byte(tt.data), at, tt.color))
			if got != tt.want {
				t.Errorf("appendSummary =\n%q\nwant\n%q", got, tt.want)
			}
			if !tt.color && strings.Contains(got, "\x1b") {
				t.Errorf("summary %q has escape codes without colour", got)
			}
		})
	}
}
