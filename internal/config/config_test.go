package config

import (
	"errors"
	"flag"
	"strings"
	"testing"
	"time"
)

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func TestLoad(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name  string
		args  []string
		env   map[string]string
		check func(*Config) string
	}{
		{"defaults", []string{"--amqp-url", "amqp://u:p@h/"}, nil, func(c *Config) string {
			if c.Listen != ":8080" || c.PingInterval != 20*time.Second || c.MaxBindings != 64 || c.ClientBuffer != 1000 || c.CORSOrigin != "*" || c.QueuePrefix != "queue/u/eventsproxy/" {
				return "defaults wrong"
			}
			return ""
		}},
		{"environment", nil, map[string]string{"AMQP_URL": "amqps://h", "PING_INTERVAL": "1m30s", "ALLOWED_EXCHANGES": "exchange/a/, exchange/b/", "MAX_BINDINGS": "3"}, func(c *Config) string {
			if c.AMQPURL != "amqps://h" || c.PingInterval != 90*time.Second || len(c.AllowedExchanges) != 2 || c.AllowedExchanges[1] != "exchange/b/" || c.MaxBindings != 3 || c.QueuePrefix != "eventsproxy/" {
				return "environment not applied"
			}
			return ""
		}},
		{"a cluster's nodes", nil, map[string]string{"AMQP_URL": "amqps://u:p@a:5671/vh, amqps://u:p@b:5671/vh"}, func(c *Config) string {
			if c.AMQPURL != "amqps://u:p@a:5671/vh, amqps://u:p@b:5671/vh" || c.QueuePrefix != "queue/u/eventsproxy/" {
				return "a list of URLs not taken"
			}
			return ""
		}},
		{"flags win over environment", []string{"--ping-interval", "5s"}, map[string]string{"AMQP_URL": "amqp://h", "PING_INTERVAL": "1m"}, func(c *Config) string {
			if c.PingInterval != 5*time.Second {
				return "flag did not win"
			}
			return ""
		}},
		{"PORT alone", nil, map[string]string{"AMQP_URL": "amqp://h", "PORT": "9000"}, func(c *Config) string {
			if c.Listen != ":9000" {
				return "PORT ignored: " + c.Listen
			}
			return ""
		}},
		{"LISTEN beats PORT", nil, map[string]string{"AMQP_URL": "amqp://h", "PORT": "9000", "LISTEN": "127.0.0.1:1"}, func(c *Config) string {
			if c.Listen != "127.0.0.1:1" {
				return "LISTEN lost: " + c.Listen
			}
			return ""
		}},
		{"Pulse variables", nil, map[string]string{"PULSE_USERNAME": "me", "PULSE_PASSWORD": "s3cret/", "PULSE_HOSTNAME": "pulse.example.com", "PULSE_VHOST": "/"}, func(c *Config) string {
			if c.AMQPURL != "amqps://me:s3cret%2F@pulse.example.com:5671//" || c.QueuePrefix != "queue/me/eventsproxy/" {
				return "Pulse URL " + c.AMQPURL + " prefix " + c.QueuePrefix
			}
			return ""
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c, err := Load(Serve, tc.args, env(tc.env))
			if err != nil {
				t.Fatal(err)
			}
			if msg := tc.check(c); msg != "" {
				t.Fatalf("%s: %+v", msg, c)
			}
		})
	}
}

func TestLoadReportsEveryProblem(t *testing.T) {
	t.Parallel()
	_, err := Load(Serve, []string{
		"--amqp-url", "http://user:hunter2@h/",
		"--ping-interval", "10ms",
		"--client-buffer", "0",
		"--log-format", "xml",
		"--listen", "nonsense",
	}, env(map[string]string{"WRITE_TIMEOUT": "soon"}))
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	text := err.Error()
	for _, want := range []string{"WRITE_TIMEOUT", "must start with amqp://", "--ping-interval", "--client-buffer", "--log-format", "--listen"} {
		if !strings.Contains(text, want) {
			t.Errorf("error does not mention %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "hunter2") {
		t.Errorf("error shows the password:\n%s", text)
	}
}

func TestLoadRequiresBroker(t *testing.T) {
	t.Parallel()
	_, err := Load(Serve, nil, env(nil))
	if err == nil || !strings.Contains(err.Error(), "--amqp-url") {
		t.Fatalf("got %v, want an error asking for --amqp-url", err)
	}
}

func TestLoadRefusesUnknownFlag(t *testing.T) {
	t.Parallel()
	if _, err := Load(Serve, []string{"--no-such-flag"}, env(map[string]string{"AMQP_URL": "amqp://h"})); err == nil {
		t.Fatal("unknown flag accepted")
	}
}

// TestLoadMessages checks the texts of common mistakes: each quotes what
// was typed and says what is expected, and one bad value does not hide
// the others.
func TestLoadMessages(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		args []string
		env  map[string]string
		want []string
		not  []string
	}{
		{"duration without a unit, and the rest listed",
			[]string{"--amqp-url", "amqp://h", "--ping-interval", "5", "--client-buffer", "0", "--log-level", "loud"}, nil,
			[]string{`--ping-interval "5" needs a unit: durations are written like 5s,`, "--client-buffer 0", `--log-level "loud"`},
			[]string{"parse error"}},
		{"duration nonsense", []string{"--amqp-url", "amqp://h", "--write-timeout", "soon"}, nil,
			[]string{`--write-timeout "soon" is not a duration; write one like 20s`}, nil},
		{"duration in the environment", []string{"--amqp-url", "amqp://h"}, map[string]string{"SHUTDOWN_TIMEOUT": "10"},
			[]string{`environment SHUTDOWN_TIMEOUT="10" needs a unit`}, nil},
		{"number", []string{"--amqp-url", "amqp://h", "--max-bindings", "many", "--max-connections", "99999999999999999999"}, nil,
			[]string{`--max-bindings "many" is not a whole number`, `--max-connections "99999999999999999999" is out of range`}, nil},
		{"boolean", []string{"--amqp-url", "amqp://h", "--trust-proxy=maybe"}, nil,
			[]string{`--trust-proxy "maybe" must be true or false`}, nil},
		{"broker URL without a scheme", []string{"--amqp-url", "localhost:5674"}, nil,
			[]string{`--amqp-url "localhost:5674" must start with amqp:// or amqps://, e.g. amqp://localhost:5674/`}, nil},
		{"broker URL without a scheme, with a password", []string{"--amqp-url", "me:hunter2@localhost:5674"}, nil,
			[]string{`--amqp-url "me:xxxxx@localhost:5674" must start with amqp://`}, []string{"hunter2"}},
		{"broker URL of another scheme", []string{"--amqp-url", "http://me:hunter2@h/"}, nil,
			[]string{`--amqp-url "http://me:xxxxx@h/" must start with amqp:// or amqps://`}, []string{"hunter2", "e.g."}},
		{"a cluster's URLs, one bad", []string{"--amqp-url", "amqp://me:hunter2@a/,me:hunter2@b:5672,,amqp://me:hunter2@/"}, nil,
			[]string{`--amqp-url's URL 2 of 4 "me:xxxxx@b:5672" must start with amqp://`, "--amqp-url's URL 3 of 4 is empty", `--amqp-url's URL 4 of 4 "amqp://me:xxxxx@/" has no host`},
			[]string{"hunter2", "URL 1 of 4"}},
		{"a cluster's URLs of several users", []string{"--amqp-url", "amqp://a:p@h1/,amqp://b:p@h2/"}, nil,
			[]string{"--amqp-url lists URLs of 2 different users"}, nil},
		{"PORT not a number", nil, map[string]string{"AMQP_URL": "amqp://h", "PORT": "abc", "MAX_BINDINGS": "0"},
			[]string{`environment PORT="abc" is not a port number`, "--max-bindings (from MAX_BINDINGS) 0"}, nil},
		{"from the environment", []string{"--amqp-url", "amqp://h", "--client-buffer", "0"}, map[string]string{"LISTEN": "nonsense", "PING_INTERVAL": "10ms", "CLIENT_BUFFER": "5"},
			[]string{`--listen (from LISTEN) "nonsense" is not host:port`, "--ping-interval (from PING_INTERVAL) 10ms is below 1s", "\n--client-buffer 0 must be"}, nil},
		{"listen port not a number", []string{"--amqp-url", "amqp://h", "--listen", ":http-alt"}, nil,
			[]string{`--listen ":http-alt": the port "http-alt" is not a number`}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(Serve, tc.args, env(tc.env))
			if err == nil {
				t.Fatal("accepted")
			}
			if _, ok := errors.AsType[*FlagError](err); ok {
				t.Fatalf("a FlagError, want the list of problems: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not say %q:\n%s", w, err)
				}
			}
			for _, w := range tc.not {
				if strings.Contains(err.Error(), w) {
					t.Errorf("error says %q:\n%s", w, err)
				}
			}
		})
	}
}

func TestLoadFlagErrors(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--no-such-flag"}, "unknown flag --no-such-flag"},
		{[]string{"-no-such-flag=3"}, "unknown flag --no-such-flag"},
		{[]string{"--amqp-url"}, "flag --amqp-url needs a value"},
	} {
		_, err := Load(Serve, tc.args, env(map[string]string{"AMQP_URL": "amqp://h"}))
		if _, ok := errors.AsType[*FlagError](err); !ok || err.Error() != tc.want {
			t.Errorf("Load(%q) = %v (%T), want FlagError %q", tc.args, err, err, tc.want)
		}
	}
	if _, err := Load(Dev, []string{"--help"}, env(nil)); !errors.Is(err, flag.ErrHelp) {
		t.Errorf("--help: %v, want flag.ErrHelp", err)
	}
}

// TestHelp checks that the help of serve and dev lists every flag, written
// with two dashes, with its variable, and says what the command does, its
// exit codes and examples.
func TestHelp(t *testing.T) {
	t.Parallel()
	for _, cmd := range []Command{Serve, Dev} {
		h := Help(cmd)
		var allowed string
		_, specs := flagSet(cmd, &Config{}, &allowed, &problems{})
		for _, s := range specs {
			if !strings.Contains(h, "\n  --"+s.name+" ") && !strings.Contains(h, "\n  --"+s.name+"\n") {
				t.Errorf("%s help lists no --%s", cmd, s.name)
			}
			if !strings.Contains(strings.Join(strings.Fields(h), " "), "env "+s.env) {
				t.Errorf("%s help does not name %s", cmd, s.env)
			}
		}
		for _, w := range []string{"Usage: eventsproxy " + string(cmd), "Exit codes:", "Examples:", "  2  bad command line"} {
			if !strings.Contains(h, w) {
				t.Errorf("%s help lacks %q", cmd, w)
			}
		}
		for i, line := range strings.Split(h, "\n") {
			if len(line) > 80 {
				t.Errorf("%s help line %d is %d wide: %q", cmd, i+1, len(line), line)
			}
			if strings.HasPrefix(strings.TrimSpace(line), "-") && !strings.HasPrefix(strings.TrimSpace(line), "--") {
				t.Errorf("%s help line %d has a single-dash flag: %q", cmd, i+1, line)
			}
		}
	}
}
