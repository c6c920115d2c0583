package config

import (
	"io"
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
			if c.Listen != ":8080" || c.PingInterval != 20*time.Second || c.MaxBindings != 64 || c.ClientBuffer != 50 || c.CORSOrigin != "*" || c.QueuePrefix != "queue/u/eventsproxy/" {
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
			c, err := Load(Serve, tc.args, env(tc.env), io.Discard)
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
	}, env(map[string]string{"WRITE_TIMEOUT": "soon"}), io.Discard)
	if err == nil {
		t.Fatal("bad configuration accepted")
	}
	text := err.Error()
	for _, want := range []string{"WRITE_TIMEOUT", "--amqp-url must start with amqp://", "--ping-interval", "--client-buffer", "--log-format", "--listen"} {
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
	_, err := Load(Serve, nil, env(nil), io.Discard)
	if err == nil || !strings.Contains(err.Error(), "--amqp-url") {
		t.Fatalf("got %v, want an error asking for --amqp-url", err)
	}
}

func TestLoadRefusesUnknownFlag(t *testing.T) {
	t.Parallel()
	if _, err := Load(Serve, []string{"--no-such-flag"}, env(map[string]string{"AMQP_URL": "amqp://h"}), io.Discard); err == nil {
		t.Fatal("unknown flag accepted")
	}
}
