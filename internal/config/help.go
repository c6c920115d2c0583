package config

import (
	"flag"
	"fmt"
	"strings"
)

// Help returns the text of `eventsproxy serve --help` or `eventsproxy dev
// --help`. Its flags section is made from the flags themselves, so that it
// lists every flag with its variable and default.
func Help(cmd Command) string {
	var b strings.Builder
	if cmd == Dev {
		b.WriteString(devIntro)
	} else {
		b.WriteString(serveIntro)
	}
	b.WriteString("\nFlags (each has an environment variable; a flag wins over its variable):\n")
	var allowed string
	fs, specs := flagSet(cmd, &Config{}, &allowed, &problems{})
	for _, s := range specs {
		writeFlag(&b, fs.Lookup(s.name), s.env)
	}
	if cmd == Dev {
		b.WriteString(devOutro)
	} else {
		b.WriteString(serveOutro)
	}
	return b.String()
}

const serveIntro = `Usage: eventsproxy serve --amqp-url URL [flags]

Run the service: hold one connection and one queue on RabbitMQ, and stream
the messages of its topic exchanges to every client of
GET /api/events/v1/connect/?bindings=... as Server-Sent Events (see
docs/api.md). It logs to stderr and runs until SIGTERM or SIGINT, then
drains: open streams get an error event, the broker connection closes, and
it exits 0.

Bad configuration is refused at start, with every problem listed.
Durations are written like 20s, 500ms or 1m30s.
`

const serveOutro = `
Environment without a flag:
  PORT                     the port to listen on (":PORT") when LISTEN and
                           --listen are unset, as the original service had it
  PULSE_USERNAME, PULSE_PASSWORD, PULSE_HOSTNAME, PULSE_VHOST
                           build the broker URL
                           amqps://USER:PASSWORD@HOST:5671/VHOST when
                           --amqp-url and AMQP_URL are unset

Exit codes:
  0  drained after SIGTERM or SIGINT
  1  cannot serve: the address is in use, the broker refused the user's
     credentials at start, or serving failed
  2  bad command line or configuration (every problem is listed)

Examples:
  eventsproxy serve --amqp-url amqp://guest:guest@127.0.0.1:5672/

  AMQP_URL=amqps://user:secret@pulse.example.com:5671/ \
  ALLOWED_EXCHANGES=exchange/taskcluster- \
  TASKCLUSTER_ROOT_URL=https://tc.example.com \
      eventsproxy serve --listen :8080 --log-format json
`

const devIntro = `Usage: eventsproxy dev [flags]

Run the service as serve does, on an in-process broker with RabbitMQ's
topic semantics instead of RabbitMQ, fed by a generator of realistic
Taskcluster messages (on exchange/taskcluster-queue/v1/...) a few times a
second. It needs nothing installed, and nothing leaves the process. Open
the URL it prints to watch messages in the inspector.

Its broker also has RabbitMQ's amq.topic, so the examples of docs/api.md
work as written. "eventsproxy publish --dev-url URL" publishes a message of
your own into it, through POST /dev/publish, which only dev serves.

It runs until SIGTERM or SIGINT, then drains and exits 0.
Durations are written like 20s, 500ms or 1m30s.
`

const devOutro = `
Exit codes:
  0  drained after SIGTERM or SIGINT
  1  cannot serve, e.g. the address is in use (pick another with --listen)
  2  bad command line or configuration (every problem is listed)

Examples:
  eventsproxy dev
  eventsproxy dev --listen 127.0.0.1:9000 --rate 20

  # in another terminal
  eventsproxy listen --url http://127.0.0.1:8080 \
      --bind 'exchange/taskcluster-queue/v1/task-completed=primary.#'
  eventsproxy publish --dev-url http://127.0.0.1:8080 \
      --exchange amq.topic --routing-key a.b '{"hello": "world"}'
`

// helpWidth is the width the flags section is wrapped to.
const helpWidth = 78

// writeFlag writes f's entry of the flags section: its name and value
// placeholder, then its usage, variable and default, wrapped under it.
func writeFlag(b *strings.Builder, f *flag.Flag, env string) {
	placeholder, usage := flag.UnquoteUsage(f)
	if c, ok := f.Value.(checked); ok {
		switch {
		case c.IsBoolFlag():
			placeholder = ""
		case !strings.Contains(f.Usage, "`"):
			placeholder = valueName(c.Value)
		}
	}
	head := "  --" + f.Name
	if placeholder != "" {
		head += " " + strings.ToUpper(placeholder)
	}
	note := "env " + env
	if f.DefValue != "" && f.DefValue != "false" {
		note += "; default " + f.DefValue
	}
	words := strings.Fields(usage + " (" + note + ")")
	const indent = 27
	line := head
	if len(line) >= indent-1 {
		b.WriteString(line + "\n")
		line = ""
	}
	for _, w := range words {
		switch {
		case line == "":
			line = strings.Repeat(" ", indent) + w
		case len(line) < indent:
			line += strings.Repeat(" ", indent-len(line)) + w
		case len(line)+1+len(w) > helpWidth:
			b.WriteString(line + "\n")
			line = strings.Repeat(" ", indent) + w
		default:
			line += " " + w
		}
	}
	fmt.Fprintln(b, line)
}

// valueName is the placeholder of a flag whose usage names none.
func valueName(v flag.Value) string {
	switch v.(type) {
	case durationValue:
		return "DURATION"
	case intValue, floatValue:
		return "N"
	}
	return "VALUE"
}
