//go:build integration

package e2e

import (
	"encoding/json"
	"maps"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// inspectorScript is the script that drives the inspector page (GET /) in
// headless Chromium.
const inspectorScript = "inspector.mjs"

// inspector is the inspector page open in headless Chromium, driven through
// inspector.mjs. Only the test goroutine uses it.
type inspector struct {
	c      *client
	name   string   // the test's name, for screenshot files
	allow  []string // console lines that the test expects, in part
	nextID int
}

// openInspector opens pageURL in headless Chromium through inspector.mjs,
// with its flags (e.g. --color-scheme dark). At the end of the test the
// script saves a screenshot to artifacts/<test name>.png, and the test
// fails if the page threw, logged an error or warning, or failed to load
// anything but an EventSource stream that it closed.
func openInspector(t testing.TB, pageURL string, flags ...string) *inspector {
	t.Helper()
	needChromium(t)
	in := &inspector{name: strings.ReplaceAll(t.Name(), "/", "_")}
	// Registered before the client's cleanup, so it runs after the script
	// has exited and printed all it saw.
	t.Cleanup(func() { in.checkQuiet(t) })
	args := append([]string{pageURL,
		"--wait", strconv.Itoa(int(eventTimeout.Seconds())),
		"--screenshot", filepath.Join("artifacts", in.name+".png"),
	}, flags...)
	in.c = startClient(t, inspectorScript, args...)
	return in
}

// checkQuiet fails the test if the page reported trouble.
func (in *inspector) checkQuiet(t testing.TB) {
	t.Helper()
	if in.c == nil {
		return
	}
	for _, ev := range in.c.all() {
		switch ev.Type {
		case "pageerror", "not-json", "stdout-error":
		case "console":
			if slices.ContainsFunc(in.allow, func(s string) bool { return strings.Contains(ev.Line, s) }) {
				continue
			}
		case "requestfailed":
			// Closing a stream aborts its request: an EventSource's, or a
			// fetch of the connect endpoint (with a token).
			if strings.Contains(ev.Line, `"resourceType":"eventsource"`) ||
				strings.Contains(ev.Line, `"resourceType":"fetch"`) && strings.Contains(ev.URL, connectPath) {
				continue
			}
		default:
			continue
		}
		t.Errorf("%s: %s", inspectorScript, ev.Line)
	}
}

// allowConsole lets the page log console errors and warnings that contain
// part (as JSON text, so quotes are escaped).
func (in *inspector) allowConsole(part string) {
	b, _ := json.Marshal(part)
	in.allow = append(in.allow, string(b[1:len(b)-1]))
}

// do sends the script one command and decodes its result into result
// (unless nil). It fails the test if the script reports the command failed
// or does not answer.
func (in *inspector) do(t testing.TB, op string, args map[string]any, result any) {
	t.Helper()
	in.nextID++
	id := in.nextID
	cmd := maps.Clone(args)
	if cmd == nil {
		cmd = map[string]any{}
	}
	cmd["id"], cmd["op"] = id, op
	line, err := json.Marshal(cmd)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := in.c.stdin.Write(append(line, '\n')); err != nil {
		t.Fatalf("%s: send %s: %v", inspectorScript, line, err)
	}
	// The first command also waits for Chromium to start.
	ev := in.c.waitFor(t, "an answer to "+string(line), browserStartTimeout, func(ev clientEvent) bool {
		if ev.Type != "done" && ev.Type != "failed" {
			return false
		}
		var answer struct {
			ID int `json:"id"`
		}
		return json.Unmarshal([]byte(ev.Line), &answer) == nil && answer.ID == id
	})
	var answer struct {
		Error  string          `json:"error"`
		Result json.RawMessage `json:"result"`
	}
	if err := json.Unmarshal([]byte(ev.Line), &answer); err != nil {
		t.Fatalf("%s: %v: %s", inspectorScript, err, ev.Line)
	}
	if ev.Type == "failed" {
		t.Fatalf("%s: %s failed: %s", inspectorScript, line, answer.Error)
	}
	if result != nil {
		if err := json.Unmarshal(answer.Result, result); err != nil {
			t.Fatalf("%s: %s: decode the result: %v: %s", inspectorScript, line, err, answer.Result)
		}
	}
}

// pageState is the connection state that the page shows.
type pageState struct {
	State string `json:"state"` // idle, connecting, ready, closed or error
	Text  string `json:"text"`
}

// shownMessage is one row of the page's message list.
type shownMessage struct {
	Time        string   `json:"time"`
	Exchange    string   `json:"exchange"`
	RoutingKey  string   `json:"routingKey"`
	Routes      []string `json:"routes"`
	Redelivered bool     `json:"redelivered"`
	Preview     string   `json:"preview"`
	Expanded    bool     `json:"expanded"`
	// Payload is the text of the payload as shown: empty while closed,
	// without the inside of closed nodes.
	Payload string `json:"payload"`
	// Meta is the row's summary of the AMQP properties and headers (the
	// content type, the number of headers); Props the text of their
	// expanded view, empty while closed.
	Meta  string `json:"meta"`
	Props string `json:"props"`
}

// messageList is the page's message list, newest first.
type messageList struct {
	Messages []shownMessage `json:"messages"`
	Rows     int            `json:"rows"`
	// ForeignElements counts images, scripts, frames and links in the list:
	// only markup from a payload could make them.
	ForeignElements int    `json:"foreignElements"`
	Title           string `json:"title"` // the document's title
	Empty           string `json:"empty"` // what the list says when it shows nothing
}

// pageCounts are the toolbar's figures as shown ("1,200").
type pageCounts struct {
	Received string `json:"received"`
	Dropped  string `json:"dropped"`
	Shown    string `json:"shown"`
	Badge    string `json:"badge"` // "N new" while paused, else empty
}

// waitGaps waits until the message list shows n gap markers, and returns
// their texts, newest first.
func (in *inspector) waitGaps(t testing.TB, n int) []string {
	t.Helper()
	var r struct {
		Gaps []string `json:"gaps"`
	}
	in.do(t, "waitGaps", map[string]any{"count": n}, &r)
	return r.Gaps
}

// pageDensity is what the page shows to help with many messages.
type pageDensity struct {
	Heights []float64 `json:"heights"`
	Hues    []struct {
		Exchange string `json:"exchange"`
		Hue      string `json:"hue"`
	} `json:"hues"`
	Rate        string   `json:"rate"`
	Filter      string   `json:"filter"`
	Highlights  int      `json:"highlights"`
	Copied      string   `json:"copied"`
	ExpandedTop *float64 `json:"expandedTop"`
}

func (in *inspector) density(t testing.TB) pageDensity {
	t.Helper()
	var d pageDensity
	in.do(t, "density", nil, &d)
	return d
}

// pageHint is what the page says about the server, and the exchange
// field's suggestions.
type pageHint struct {
	Text        string   `json:"text"`
	Suggestions []string `json:"suggestions"`
}

func (in *inspector) hint(t testing.TB) pageHint {
	t.Helper()
	var h pageHint
	in.do(t, "hint", nil, &h)
	return h
}

// pageBanner is the page's error banner.
type pageBanner struct {
	Visible bool   `json:"visible"`
	Title   string `json:"title"`
	Text    string `json:"text"`
}

// downloadedMessage is one message of the page's JSON download.
type downloadedMessage struct {
	ReceivedAt  string          `json:"receivedAt"`
	Exchange    string          `json:"exchange"`
	RoutingKey  string          `json:"routingKey"`
	Redelivered bool            `json:"redelivered"`
	Routes      []string        `json:"routes"`
	Payload     json.RawMessage `json:"payload"`
	Properties  map[string]any  `json:"properties"`
	Headers     map[string]any  `json:"headers"`
}

func (in *inspector) open(t testing.TB, pageURL string) {
	t.Helper()
	in.do(t, "goto", map[string]any{"url": pageURL}, nil)
}

func (in *inspector) url(t testing.TB) string {
	t.Helper()
	var r struct{ URL string }
	in.do(t, "url", nil, &r)
	return r.URL
}

func (in *inspector) bindings(t testing.TB) []binding {
	t.Helper()
	var r struct{ Bindings []binding }
	in.do(t, "bindings", nil, &r)
	return r.Bindings
}

// setBindings fills the page's binding rows, adding or removing rows.
func (in *inspector) setBindings(t testing.TB, bs ...binding) {
	t.Helper()
	var r struct{ Bindings []binding }
	in.do(t, "setBindings", map[string]any{"bindings": bs}, &r)
	if !reflect.DeepEqual(r.Bindings, bs) {
		t.Fatalf("the page's bindings are %v after filling in %v", r.Bindings, bs)
	}
}

// click clicks the button with this accessible name.
func (in *inspector) click(t testing.TB, name string) {
	t.Helper()
	in.do(t, "click", map[string]any{"name": name}, nil)
}

// fill types text into the field with this accessible name.
func (in *inspector) fill(t testing.TB, label, text string) {
	t.Helper()
	in.do(t, "fill", map[string]any{"label": label, "text": text}, nil)
}

// press presses key in the field with this accessible name, or in the
// page when label is empty, and returns the name of what has the focus then.
func (in *inspector) press(t testing.TB, label, key string) (focused string) {
	t.Helper()
	var r struct{ Focused string }
	in.do(t, "press", map[string]any{"label": label, "key": key}, &r)
	return r.Focused
}

// buttons returns the names of the visible, enabled buttons outside the
// message list.
func (in *inspector) buttons(t testing.TB) []string {
	t.Helper()
	var r struct{ Buttons []string }
	in.do(t, "buttons", nil, &r)
	return r.Buttons
}

func (in *inspector) state(t testing.TB) pageState {
	t.Helper()
	var st pageState
	in.do(t, "state", nil, &st)
	return st
}

func (in *inspector) waitState(t testing.TB, state string) pageState {
	t.Helper()
	var st pageState
	in.do(t, "waitState", map[string]any{"state": state}, &st)
	return st
}

func (in *inspector) messages(t testing.TB) messageList {
	t.Helper()
	var l messageList
	in.do(t, "messages", nil, &l)
	return l
}

// waitMessages waits until the page shows n messages, or n or more when
// atLeast is given and true.
func (in *inspector) waitMessages(t testing.TB, n int, atLeast ...bool) messageList {
	t.Helper()
	more := len(atLeast) > 0 && atLeast[0]
	var l messageList
	in.do(t, "waitMessages", map[string]any{"count": n, "atLeast": more}, &l)
	if len(l.Messages) < n || !more && len(l.Messages) != n {
		t.Fatalf("the page shows %d messages, want %d", len(l.Messages), n)
	}
	return l
}

// waitMessageKeys waits until the page shows n messages and returns their
// routing keys, newest first.
func (in *inspector) waitMessageKeys(t testing.TB, n int) []string {
	t.Helper()
	var r struct{ Keys []string }
	in.do(t, "waitMessages", map[string]any{"count": n, "brief": true}, &r)
	if len(r.Keys) != n {
		t.Fatalf("the page shows %d messages, want %d", len(r.Keys), n)
	}
	return r.Keys
}

// toggle opens or closes the payload of the message at index (0: newest).
func (in *inspector) toggle(t testing.TB, index int) messageList {
	t.Helper()
	var l messageList
	in.do(t, "toggle", map[string]any{"index": index}, &l)
	return l
}

// payloadButton clicks a button of the open payload at index.
func (in *inspector) payloadButton(t testing.TB, index int, name string) messageList {
	t.Helper()
	var l messageList
	in.do(t, "payloadButton", map[string]any{"index": index, "name": name}, &l)
	return l
}

// filter types text into the filter field and returns what is shown then.
func (in *inspector) filter(t testing.TB, text string) messageList {
	t.Helper()
	var l messageList
	in.do(t, "filter", map[string]any{"text": text}, &l)
	return l
}

func (in *inspector) counts(t testing.TB) pageCounts {
	t.Helper()
	var c pageCounts
	in.do(t, "counts", nil, &c)
	return c
}

// waitCounts waits until the counts named in want read as given.
func (in *inspector) waitCounts(t testing.TB, want map[string]string) pageCounts {
	t.Helper()
	args := make(map[string]any, len(want))
	for k, v := range want {
		args[k] = v
	}
	var c pageCounts
	in.do(t, "waitCounts", args, &c)
	return c
}

func (in *inspector) banner(t testing.TB) pageBanner {
	t.Helper()
	var b pageBanner
	in.do(t, "banner", nil, &b)
	return b
}

func (in *inspector) waitBanner(t testing.TB) pageBanner {
	t.Helper()
	var b pageBanner
	in.do(t, "waitBanner", nil, &b)
	return b
}

// waitPing waits for the page to show that a ping came.
func (in *inspector) waitPing(t testing.TB) struct{ Text, Title string } {
	t.Helper()
	var r struct{ Text, Title string }
	in.do(t, "waitPing", nil, &r)
	return r
}

// download clicks Download JSON and returns the file's messages.
func (in *inspector) download(t testing.TB) []downloadedMessage {
	t.Helper()
	var r struct {
		Filename string
		Content  []downloadedMessage
	}
	in.do(t, "download", nil, &r)
	if !strings.HasSuffix(r.Filename, ".json") {
		t.Errorf("the download is named %q, want a .json file", r.Filename)
	}
	return r.Content
}

// screenshot saves the whole page to artifacts/<test name>-<name>.png.
func (in *inspector) screenshot(t testing.TB, name string) {
	t.Helper()
	path := filepath.Join("artifacts", in.name+"-"+name+".png")
	in.do(t, "screenshot", map[string]any{"path": path}, nil)
	t.Logf("screenshot: e2e/%s", path)
}
