package api

import (
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// TestErrorTextsAsDocumented checks that the error texts docs/api.md
// quotes under "Errors" are the texts clients get, word for word: each
// case below makes the service produce one, which must match a text of
// the document, where … stands for a quoted value, N for a number and i
// for a position. The texts clients match on must not drift from their
// contract. Access control's texts are checked likewise.
func TestErrorTextsAsDocumented(t *testing.T) {
	documented := documentedErrorTexts(t)
	long := strings.Repeat("x", 256)
	bad := func(s string, lim binding.Limits) string {
		t.Helper()
		_, err := binding.Parse(s, lim)
		if err == nil {
			t.Fatalf("Parse(%q) accepted it", s)
		}
		return err.Error()
	}
	query := func(q map[string][]string) string {
		t.Helper()
		_, err := binding.FromQuery(q, binding.Limits{})
		if err == nil {
			t.Fatalf("FromQuery(%q) accepted it", q)
		}
		return err.Error()
	}
	one := func(exchange, pattern string) string {
		return fmt.Sprintf(`{"bindings": [{"exchange": %q, "routingKeyPattern": %q}]}`, exchange, pattern)
	}
	none := binding.Limits{}
	bindErr := func(exchange string, cause error) string {
		return classify(&broker.BindError{Binding: binding.Binding{Exchange: exchange, RoutingKeyPattern: "#"}, Err: cause}).text
	}
	texts := []string{
		bad(`{"bindings": [], "x": 1}`, none),
		bad(`{"bindings": {}}`, none),
		bad(`{"bindings": [{"exchange": "e"}]}`, none),
		query(map[string][]string{}),
		query(map[string][]string{"bindings": {"a", "b"}}),
		bad(" ", none),
		bad(`{x`, none),
		bad(`{"bindings": [`, none),
		bad(`{"bindings": []} x`, none),
		bad(`{"bindings":[{"exchange":"amq.topic","routingKeyPattern":"a.`, none),
		bad(`[]`, none),
		bad(`{"bindings": []}`, none),
		bad(`{"bindings": [`+strings.Repeat(`{"exchange": "e", "routingKeyPattern": "#"},`, 64)+`{"exchange": "e", "routingKeyPattern": "#"}]}`, none),
		bad(`{"bindings": ["e"]}`, none),
		bad(`{"bindings": [{"exchange": 1, "routingKeyPattern": "#"}]}`, none),
		bad("{\"bindings\": [{\"exchange\": \"e\xff\", \"routingKeyPattern\": \"#\"}]}", none),
		bad(one("", "#"), none),
		bad(one(long, "#"), none),
		bad(one("e\n", "#"), none),
		bad(one("amq.topic", "#"), binding.Limits{AllowedExchanges: []string{"exchange/taskcluster-"}}),
		bad(one("amq.rabbitmq.trace", "#"), none),
		bad(one("e", "a*"), none),
		bad(one("e", long), none),
		bad(one("e", "a.\t"), none),
		bad("{\"bindings\": [{\"exchange\": \"e\", \"routingKeyPattern\": \"a.\xc3\"}]}", none),
		bad(one("e", "#.a.#.b.#"), none),
		bindErr("exchange/x", broker.ErrExchangeNotFound),
		bindErr("exchange/x", broker.ErrAccessRefused),
		bindErr("amq.fanout", &broker.ExchangeTypeError{Exchange: "amq.fanout", Type: "fanout"}),
		classify(broker.ErrConnectionLost).text,
		classify(errShutdown).text,
		classify(errors.New("something else")).text,
	}
	for _, text := range texts {
		if !matchesAny(documented, text) {
			t.Errorf("docs/api.md's Errors do not quote the text clients get:\n  %s", text)
		}
	}

	// Access control's texts are in its own section, in the second column.
	documented = documentedAccessTexts(t)
	b := binding.Binding{Exchange: "exchange/x", RoutingKeyPattern: "#"}
	for _, text := range []string{
		classify(&access.DeniedError{Binding: b}).text,
		classify(&access.DeniedError{Binding: b, Anonymous: true}).text,
		classify(errExpired).text,
	} {
		if !matchesAny(documented, text) {
			t.Errorf("docs/api.md's Access control does not quote the text clients get:\n  %s", text)
		}
	}
}

// documentedAccessTexts returns a pattern for each text (a code span with
// a space in it) of the second column of the table in docs/api.md's
// "Access control" section.
func documentedAccessTexts(t *testing.T) []*regexp.Regexp {
	t.Helper()
	span := regexp.MustCompile("`([^`]+)`")
	var out []*regexp.Regexp
	for _, line := range strings.Split(docSection(t, "## Access control"), "\n") {
		cols := strings.Split(line, " | ")
		if !strings.HasPrefix(line, "| ") || len(cols) < 3 {
			continue
		}
		for _, m := range span.FindAllStringSubmatch(cols[1], -1) {
			if strings.Contains(m[1], " ") {
				out = append(out, textPattern(m[1]))
			}
		}
	}
	if len(out) < 5 {
		t.Fatalf("found %d texts in docs/api.md's Access control; the parser is broken", len(out))
	}
	return out
}

// docSection returns the section of docs/api.md whose heading starts with
// heading (a "## " line), up to the next such heading.
func docSection(t *testing.T, heading string) string {
	t.Helper()
	b, err := os.ReadFile("../../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(b)
	start := strings.Index(doc, "\n"+heading)
	if start < 0 {
		t.Fatalf("docs/api.md has no %q section", heading)
	}
	section := doc[start+1:]
	if end := strings.Index(section[len(heading):], "\n## "); end >= 0 {
		section = section[:len(heading)+end]
	}
	return section
}

// documentedErrorTexts returns a pattern for each text quoted in the first
// column of the tables of docs/api.md's "Errors" section, one for each
// variant given beside it as "(or `...`)", which replaces the text's end
// from its last colon, and one with routingKeyPattern for "exchange" where
// the row says "(likewise `routingKeyPattern`)".
func documentedErrorTexts(t *testing.T) []*regexp.Regexp {
	t.Helper()
	section := docSection(t, "## Errors\n")
	span := regexp.MustCompile("``(.+?)``|`([^`]+)`")
	var out []*regexp.Regexp
	for _, line := range strings.Split(section, "\n") {
		if !strings.HasPrefix(line, "| `") {
			continue
		}
		first := strings.SplitN(line, " | ", 2)[0]
		spans := span.FindAllStringSubmatch(first, -1)
		main := spans[0][1] + spans[0][2]
		out = append(out, textPattern(main))
		if strings.Contains(first, "(likewise `routingKeyPattern`)") {
			out = append(out, textPattern(strings.Replace(main, "exchange", "routingKeyPattern", 1)))
		}
		if i := strings.Index(first, "(or "); i >= 0 {
			cut := strings.LastIndex(main, ":")
			for _, s := range span.FindAllStringSubmatch(first[i:], -1) {
				alt := s[1] + s[2]
				if cut < 0 {
					continue
				}
				if strings.HasPrefix(alt, ":") {
					out = append(out, textPattern(main[:cut]+alt))
				} else {
					out = append(out, textPattern(main[:cut+1]+" "+alt))
				}
			}
		}
	}
	if len(out) < 20 {
		t.Fatalf("found %d error texts in docs/api.md; the parser is broken", len(out))
	}
	return out
}

// textPattern makes a documented text into a pattern: … is any quoted
// value (cut ones end in ...), {…} any JSON example, N a number, [i] a
// position.
func textPattern(s string) *regexp.Regexp {
	p := regexp.QuoteMeta(s)
	p = strings.ReplaceAll(p, `\{…\}`, `\{.*\}`)
	p = strings.ReplaceAll(p, `"…"`, `".*"(\.\.\.)?`)
	p = strings.ReplaceAll(p, `bindings\[i\]`, `bindings\[\d+\]`)
	p = regexp.MustCompile(`\bN\b`).ReplaceAllString(p, `\d+`)
	return regexp.MustCompile("^" + p + "$")
}

func matchesAny(ps []*regexp.Regexp, s string) bool {
	for _, p := range ps {
		if p.MatchString(s) {
			return true
		}
	}
	return false
}

// TestPropertiesExampleAsDocumented: the example event of docs/api.md's
// "Properties and headers" is what the service sends for that message.
func TestPropertiesExampleAsDocumented(t *testing.T) {
	section := docSection(t, "## Properties and headers")
	i := strings.Index(section, "event: message\n")
	j := strings.Index(section[i:], "\n```")
	if i < 0 || j < 0 {
		t.Fatal("no example event in the section")
	}
	want := section[i:i+j] + "\n"
	m := &broker.Message{Exchange: "amq.topic", RoutingKey: "build.done", CC: []string{"route.index.a"}, Body: []byte(`{"n":1}`),
		Props: &broker.Properties{ContentType: "application/json", DeliveryMode: 2, MessageID: "m-1",
			Timestamp: time.Date(2026, 12, 2, 3, 0, 0, 0, time.UTC), AppID: "ci",
			Headers: amqp.Table{"CC": []any{"route.index.a"}, "x-attempt": int32(3), "x-trace": "abc"}}}
	if got := string(m.FramedProperties(messageHead, messageTail)); got != want {
		t.Fatalf("docs/api.md shows\n%s\nthe service sends\n%s", want, got)
	}
}
