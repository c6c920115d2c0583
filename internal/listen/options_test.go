package listen

import (
	"errors"
	"flag"
	"net/url"
	"reflect"
	"strings"
	"testing"
	"time"

	"eventsproxy/internal/binding"
)

func TestParseBinding(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		want    binding.Binding
		wantErr string
	}{
		{in: "amq.topic=#", want: binding.Binding{Exchange: "amq.topic", RoutingKeyPattern: "#"}},
		{in: "exchange/taskcluster-queue/v1/task-completed=primary.*.#",
			want: binding.Binding{Exchange: "exchange/taskcluster-queue/v1/task-completed", RoutingKeyPattern: "primary.*.#"}},
		{in: "ex=", want: binding.Binding{Exchange: "ex", RoutingKeyPattern: ""}},
		// Split at the first '=': a pattern never holds one in practice,
		// but it is a valid routing-key character.
		{in: "a=b=c", want: binding.Binding{Exchange: "a", RoutingKeyPattern: "b=c"}},
		{in: "ex=a.*.b", want: binding.Binding{Exchange: "ex", RoutingKeyPattern: "a.*.b"}},
		{in: "amq.topic", wantErr: `has no '='; write EXCHANGE=PATTERN, e.g. --bind 'amq.topic=#'`},
		{in: "=#", wantErr: "has no exchange"},
		{in: "", wantErr: "has no '='"},
		{in: "ex=a*", wantErr: "* and # must stand alone"},
		{in: "ex=" + strings.Repeat("a", 256), wantErr: "more than the 255 allowed"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			t.Parallel()
			got, err := ParseBinding(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("ParseBinding(%q) error = %v, want one containing %q", tt.in, err, tt.wantErr)
				}
				if code := ExitCode(err); code != ExitUsage {
					t.Errorf("ExitCode = %d, want %d", code, ExitUsage)
				}
				return
			}
			if err != nil {
				t.Fatalf("ParseBinding(%q): %v", tt.in, err)
			}
			if got != tt.want {
				t.Errorf("ParseBinding(%q) = %+v, want %+v", tt.in, got, tt.want)
			}
		})
	}
}

func TestConnectURL(t *testing.T) {
	t.Parallel()
	bs := []binding.Binding{
		{Exchange: "exchange/taskcluster-queue/v1/task-completed", RoutingKeyPattern: "primary.#"},
		{Exchange: "a&b=c d+e", RoutingKeyPattern: "*.x"},
	}
	tests := []struct {
		name, base string
		wantPath   string
		wantQuery  url.Values // besides bindings
		wantErr    bool
	}{
		{name: "base", base: "http://127.0.0.1:8080", wantPath: "/api/events/v1/connect/"},
		{name: "base with slash", base: "http://127.0.0.1:8080/", wantPath: "/api/events/v1/connect/"},
		{name: "root URL with a path", base: "https://tc.example.com/root", wantPath: "/root/api/events/v1/connect/"},
		{name: "connect URL", base: "https://tc.example.com/api/events/v1/connect/", wantPath: "/api/events/v1/connect/"},
		{name: "connect URL without slash", base: "https://tc.example.com/api/events/v1/connect", wantPath: "/api/events/v1/connect/"},
		{name: "old bindings replaced, other parameters kept",
			base:     "http://h/api/events/v1/connect/?bindings=old&x=1#frag",
			wantPath: "/api/events/v1/connect/", wantQuery: url.Values{"x": {"1"}}},
		{name: "no scheme", base: "127.0.0.1:8080", wantErr: true},
		{name: "ftp", base: "ftp://h/", wantErr: true},
		{name: "no host", base: "http:///x", wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			got, err := ConnectURL(tt.base, bs)
			if tt.wantErr {
				if ExitCode(err) != ExitUsage {
					t.Fatalf("ConnectURL(%q) = %q, %v; want a usage error", tt.base, got, err)
				}
				return
			}
			if err != nil {
				t.Fatalf("ConnectURL(%q): %v", tt.base, err)
			}
			u, err := url.Parse(got)
			if err != nil {
				t.Fatal(err)
			}
			if u.Path != tt.wantPath || u.Fragment != "" {
				t.Errorf("ConnectURL(%q) = %q, want path %q and no fragment", tt.base, got, tt.wantPath)
			}
			q := u.Query()
			// What the server does with the query: it must get the
			// bindings back exactly.
			back, err := binding.FromQuery(q, binding.Limits{})
			if err != nil {
				t.Fatalf("server reading %q: %v", got, err)
			}
			if !reflect.DeepEqual(back, bs) {
				t.Errorf("bindings sent = %+v, want %+v", back, bs)
			}
			q.Del("bindings")
			if len(q) != len(tt.wantQuery) || (len(q) > 0 && !reflect.DeepEqual(q, tt.wantQuery)) {
				t.Errorf("other parameters = %v, want %v", q, tt.wantQuery)
			}
		})
	}
}

// TestConnectURLEncoding pins the exact query, as curl users would write it.
func TestConnectURLEncoding(t *testing.T) {
	t.Parallel()
	got, err := ConnectURL("http://127.0.0.1:8080", []binding.Binding{{Exchange: "amq.topic", RoutingKeyPattern: "a.#"}})
	if err != nil {
		t.Fatal(err)
	}
	want := "http://127.0.0.1:8080/api/events/v1/connect/?bindings=" +
		"%7B%22bindings%22%3A%5B%7B%22exchange%22%3A%22amq.topic%22%2C%22routingKeyPattern%22%3A%22a.%23%22%7D%5D%7D"
	if got != want {
		t.Errorf("ConnectURL =\n%s\nwant\n%s", got, want)
	}
}

func env(kv ...string) func(string) string {
	m := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		m[kv[i]] = kv[i+1]
	}
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	o, err := Load([]string{"--url", "http://h:1", "--bind", "a=#", "--bind", "exchange/x/v1/y=p.*", "--json", "--count", "3", "--timeout", "5s", "--resume", "--properties"}, env())
	if err != nil {
		t.Fatal(err)
	}
	want := &Options{
		URL: "http://h:1",
		Bindings: []binding.Binding{
			{Exchange: "a", RoutingKeyPattern: "#"},
			{Exchange: "exchange/x/v1/y", RoutingKeyPattern: "p.*"},
		},
		JSON: true, Count: 3, Timeout: 5 * time.Second, Resume: true, Properties: true,
	}
	if !reflect.DeepEqual(o, want) {
		t.Errorf("Load = %+v, want %+v", o, want)
	}

	o, err = Load([]string{"--url", "http://h:1", "--bind", "a=#", "--bind", "b=#", "--bind", "a=#"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if want := []binding.Binding{{Exchange: "a", RoutingKeyPattern: "#"}, {Exchange: "b", RoutingKeyPattern: "#"}}; !reflect.DeepEqual(o.Bindings, want) {
		t.Errorf("repeated --bind: Bindings = %+v, want %+v", o.Bindings, want)
	}

	o, err = Load([]string{"--url", "http://h:1", "--bind", "a=#"}, env())
	if err != nil {
		t.Fatal(err)
	}
	if o.Timeout != DefaultTimeout || o.Count != 0 || o.JSON || o.NoColor || o.Resume || o.Properties {
		t.Errorf("defaults = %+v", o)
	}
}

func TestLoadColor(t *testing.T) {
	t.Parallel()
	args := []string{"--url", "http://h:1", "--bind", "a=#"}
	tests := []struct {
		name    string
		args    []string
		getenv  func(string) string
		noColor bool
	}{
		{"default", args, env(), false},
		{"flag", append(args[:len(args):len(args)], "--no-color"), env(), true},
		{"NO_COLOR", args, env("NO_COLOR", "1"), true},
		{"NO_COLOR empty", args, env("NO_COLOR", ""), false},
		{"dumb terminal", args, env("TERM", "dumb"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := Load(tt.args, tt.getenv)
			if err != nil {
				t.Fatal(err)
			}
			if o.NoColor != tt.noColor {
				t.Errorf("NoColor = %v, want %v", o.NoColor, tt.noColor)
			}
		})
	}
}

func TestLoadUsageErrors(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		args []string
		want []string // each in the error text
	}{
		{"nothing", nil, []string{"--url is required", "at least one --bind"}},
		{"no bind", []string{"--url", "http://h"}, []string{"at least one --bind EXCHANGE=PATTERN is required"}},
		{"no url", []string{"--bind", "a=#"}, []string{"--url is required"}},
		{"bad bind", []string{"--url", "http://h", "--bind", "a"}, []string{`--bind "a" has no '='`}},
		{"two bad binds", []string{"--url", "http://h", "--bind", "a", "--bind", "=b"}, []string{`"a" has no '='`, `"=b" has no exchange`}},
		{"bad url", []string{"--url", "h:80", "--bind", "a=#"}, []string{`--url "h:80" is not an http:// or https:// URL`}},
		{"unknown flag", []string{"--nope"}, []string{"flag provided but not defined: -nope"}},
		{"bad count", []string{"--url", "http://h", "--bind", "a=#", "--count", "x"}, []string{"invalid value"}},
		{"negative count", []string{"--url", "http://h", "--bind", "a=#", "--count", "-1"}, []string{"--count -1 must not be negative"}},
		{"negative timeout", []string{"--url", "http://h", "--bind", "a=#", "--timeout", "-1s"}, []string{"--timeout -1s must not be negative"}},
		{"bad timeout", []string{"--url", "http://h", "--bind", "a=#", "--timeout", "30"}, []string{"invalid value"}},
		{"argument", []string{"--url", "http://h", "--bind", "a=#", "b=#"}, []string{"unexpected arguments"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			o, err := Load(tt.args, env())
			if err == nil {
				t.Fatalf("Load = %+v, want an error", o)
			}
			if code := ExitCode(err); code != ExitUsage {
				t.Errorf("ExitCode(%v) = %d, want %d", err, code, ExitUsage)
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
		})
	}
}

func TestLoadHelp(t *testing.T) {
	t.Parallel()
	for _, arg := range []string{"-h", "--help", "-help"} {
		if _, err := Load([]string{arg}, env()); !errors.Is(err, flag.ErrHelp) {
			t.Errorf("Load(%s) error = %v, want flag.ErrHelp", arg, err)
		}
	}
}

// TestHelpNamesEveryFlag keeps Help and the flags Load defines together.
func TestHelpNamesEveryFlag(t *testing.T) {
	t.Parallel()
	for _, f := range []string{"--url", "--bind", "--json", "--no-color", "--count", "--timeout", "--resume", "--properties", "NO_COLOR"} {
		if !strings.Contains(Help, f) {
			t.Errorf("Help does not mention %s", f)
		}
	}
	for code := ExitOK; code <= ExitTimeout; code++ {
		if !strings.Contains(Help, "\n  "+string(rune('0'+code))+"  ") {
			t.Errorf("Help does not explain exit code %d", code)
		}
	}
}

func TestLoadToken(t *testing.T) {
	t.Parallel()
	o, err := Load([]string{"--url", "http://h:1", "--bind", "a=#"}, env("EVENTSPROXY_TOKEN", "from.the.env"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Token != "from.the.env" {
		t.Errorf("Token %q from EVENTSPROXY_TOKEN", o.Token)
	}
	o, err = Load([]string{"--url", "http://h:1", "--bind", "a=#", "--token", "from.the.flag"}, env("EVENTSPROXY_TOKEN", "from.the.env"))
	if err != nil {
		t.Fatal(err)
	}
	if o.Token != "from.the.flag" {
		t.Errorf("Token %q: the flag should win", o.Token)
	}
	if _, err := Load([]string{"--url", "http://h:1", "--bind", "a=#", "--token", "Bearer x"}, env()); err == nil {
		t.Error("a token with a space was accepted")
	}
}
