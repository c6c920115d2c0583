//go:build integration

package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The documents whose shell examples TestDocExamples runs.
var exampleDocs = []string{"../README.md", "../docs/api.md"}

// docExample is one example of a document: a paragraph of a ```sh block
// (they hold several, apart by blank lines), or a whole ```js or ```python
// block.
type docExample struct {
	doc  string
	line int    // where the example starts in doc
	lang string // sh, js or python
	text string
}

func (e docExample) String() string { return fmt.Sprintf("%s:%d", e.doc, e.line) }

// exampleLangs are the languages of the blocks that docExamples returns.
var exampleLangs = []string{"sh", "js", "python"}

// docExamples returns the examples of every block of exampleDocs in one of
// exampleLangs, a block's indentation (inside a list item) taken off.
func docExamples(t testing.TB) []docExample {
	t.Helper()
	var out []docExample
	for _, doc := range exampleDocs {
		var (
			lang   string // of the block we are in, or ""
			indent string
			cur    []string
			start  int
		)
		flush := func() {
			if len(cur) > 0 {
				out = append(out, docExample{doc: strings.TrimPrefix(doc, "../"), line: start, lang: lang, text: strings.Join(cur, "\n") + "\n"})
			}
			cur = nil
		}
		for i, line := range strings.Split(readFile(t, doc), "\n") {
			trimmed := strings.TrimLeft(line, " ")
			switch {
			case lang == "" && strings.HasPrefix(trimmed, "```") && slices.Contains(exampleLangs, trimmed[3:]):
				lang, indent = trimmed[3:], line[:len(line)-len(trimmed)]
			case lang != "" && trimmed == "```":
				flush()
				lang = ""
			case lang == "sh" && strings.TrimSpace(line) == "":
				flush()
			case lang != "":
				if len(cur) == 0 {
					start = i + 1
				}
				cur = append(cur, strings.TrimPrefix(line, indent))
			}
		}
	}
	return out
}

// exampleCheck says how TestDocExamples knows that an example worked.
type exampleCheck struct {
	// match picks the examples it is for: a part of their text.
	match string
	// skip, when set, says why the example is not run here.
	skip string
	// output is what the example's output must come to hold. An example
	// that streams is stopped then; one that ends must also exit 0.
	output string
	// ends says that the example ends by itself.
	ends bool
	// file, when set, must exist after the example, holding output.
	file string
}

// exampleChecks covers every shell example of exampleDocs; the test fails
// on an example that none matches, so that a new example gets a check.
var exampleChecks = []exampleCheck{
	{match: "go run ./cmd/eventsproxy dev   #", skip: "the README's first block: the test runs dev itself, and make test is the suite this test is part of"},
	{match: "--bind 'exchange/taskcluster-queue/v1/task-completed=primary.#' | jq .payload.status.taskId", output: `"`},
	{match: "publish --dev-url http://127.0.0.1:8080", output: `published`, ends: true},
	{match: "curl -N -G", output: "event: ready"},
	{match: `q=$(jq -rn`, output: "event: ready"},
	{match: "curl -sN -G http://", output: `"routingKey":"a.b"`},
	// Against dev, which has no access control, the token is minted and
	// sent but not needed; e2e/access_test.go has a service that needs it.
	{match: "eventsproxy token --sub dashboard", output: `"routingKey":"a.b"`},
	{match: "--bind 'amq.topic=a.#' | jq -c '{routingKey, payload}'", output: `"routingKey":"a.b"`},
	{match: "Ak6jrFDeTq2LkfdYRo7N-A.#", output: "listening: 1 binding"},
	{match: "--count 1 --timeout 10s > message.json", ends: true, file: "message.json", output: `"routingKey":"build.42.done"`},
	// Code for pages, run as a page's module script in Chromium.
	{match: "console.log('bound; nothing published from now on is missed')", output: "bound; nothing published"},
	{match: "https://events.example.com/api/events/v1/connect/", output: "bound: nothing published"},
	{match: "import { EventsClient } from", output: "bound: nothing published"},
	{match: "let queued = null;", output: "shown: a.b"},
	{match: "import { EventSource } from 'eventsource';", output: "routingKey: 'a.b'"},
	{match: "def events(base_url, bindings):", output: "a.b ['index.x']"},
}

// TestDocExamples runs each example of the README and docs/api.md (shell
// with bash, JavaScript for Node.js with node, JavaScript for pages in
// Chromium, Python with python3 and requests),
// as written, against `eventsproxy dev`: with only the address of the service
// (http://127.0.0.1:8080, or a public host name) replaced by that of a dev
// on a free port, `go run ./cmd/eventsproxy` by the built binary, and
// `eventsproxy` found on PATH. While they run, messages are published into
// dev on amq.topic for them to see (a.b, build.42.done). Each runs under a
// pseudo-terminal, as a person would run it, so that jq and awk write each
// line as it comes.
func TestDocExamples(t *testing.T) {
	for _, tool := range []string{"bash", "script", "curl", "jq", "awk", "node"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is not installed; the documented examples need it (.ci/run installs it)", tool)
		}
	}
	python := pythonWithRequests(t)
	dev := startDev(t, "--rate", "50")
	stopPublishing := publishInto(t, dev.URL, "a.b", "build.42.done")
	defer stopPublishing()
	binDir := filepath.Dir(proxyBinary)

	for _, ex := range docExamples(t) {
		var check *exampleCheck
		for i := range exampleChecks {
			if strings.Contains(ex.text, exampleChecks[i].match) {
				if check != nil {
					t.Fatalf("%s: two checks match:\n%s", ex, ex.text)
				}
				check = &exampleChecks[i]
			}
		}
		if check == nil {
			t.Errorf("%s: no check in exampleChecks for this example; add one:\n%s", ex, ex.text)
			continue
		}
		t.Run(ex.String(), func(t *testing.T) {
			if check.skip != "" {
				t.Skip(check.skip)
			}
			script := ex.text
			for _, r := range [][2]string{
				{"go run ./cmd/eventsproxy", "eventsproxy"},
				{"http://127.0.0.1:8080", dev.URL},
				{"https://tc.example.com", dev.URL},
				{"https://events.example.com", dev.URL},
			} {
				script = strings.ReplaceAll(script, r[0], r[1])
			}
			runExample(t, ex.lang, script, binDir, python, check)
		})
	}
}

// exampleTimeout bounds the wait for one example to show what it must, or
// to end: generous, since it includes starting Chromium on a busy machine
// (40 s seen while the rest of the suite ran).
const exampleTimeout = 3 * time.Minute

// ansi matches the colour sequences of jq and listen on a terminal.
var ansi = regexp.MustCompile("\x1b\\[[0-9;]*m")

// runExample runs script, in lang, under a pseudo-terminal in a directory
// of its own, until its output holds check.output (then it is stopped,
// unless it ends by itself), and checks what it left.
func runExample(t *testing.T, lang, script, binDir, python string, check *exampleCheck) {
	dir := t.TempDir()
	var file, run string
	switch lang {
	case "sh":
		file, run = "example.sh", "bash example.sh"
		script = "set -eo pipefail\n" + script
	case "js":
		if !strings.Contains(script, "from 'eventsource'") {
			runPageExample(t, script, check)
			return
		}
		// Node.js finds the eventsource package through the link to e2e's
		// node_modules.
		nodeModules, err := filepath.Abs("node_modules")
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(nodeModules, filepath.Join(dir, "node_modules")); err != nil {
			t.Fatal(err)
		}
		file, run = "example.mjs", "node example.mjs"
	case "python":
		file, run = "example.py", python+" -u example.py"
	}
	if err := os.WriteFile(filepath.Join(dir, file), []byte(script), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), exampleTimeout)
	defer cancel()
	// script(1) gives the example a terminal; -e passes its exit status on.
	cmd := exec.CommandContext(ctx, "script", "-qefc", run, "/dev/null")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "PATH="+binDir+string(os.PathListSeparator)+os.Getenv("PATH"), "NO_COLOR=1", "SHELL=/bin/bash")
	cmd.Stdin = nil
	out := &notifyBuffer{wrote: make(chan struct{}, 1)}
	cmd.Stdout, cmd.Stderr = out, out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	has := func() bool { return strings.Contains(ansi.ReplaceAllString(out.String(), ""), check.output) }
	defer func() {
		if t.Failed() {
			t.Logf("the example, as run:\n%s\noutput:\n%s", script, out)
		}
	}()

	if check.ends {
		select {
		case err := <-exited:
			if err != nil {
				t.Fatalf("exit: %v", err)
			}
		case <-ctx.Done():
			t.Fatalf("did not end within %v", exampleTimeout)
		}
		if check.file != "" {
			b, err := os.ReadFile(filepath.Join(dir, check.file))
			if err != nil || !bytes.Contains(b, []byte(check.output)) {
				t.Fatalf("%s: %q (%v), want it to hold %q", check.file, b, err, check.output)
			}
		} else if !has() {
			t.Fatalf("the output does not hold %q", check.output)
		}
		return
	}
	for !has() {
		select {
		case err := <-exited:
			t.Fatalf("ended (%v) before its output held %q", err, check.output)
		case <-out.wrote:
		case <-ctx.Done():
			t.Fatalf("its output did not hold %q within %v", check.output, exampleTimeout)
		}
	}
	// Done: stop it as Ctrl-C would stop the whole pipeline.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}

// pythonWithRequests returns a python3 that can import requests: the one
// on PATH, or Debian's, which python3-requests serves.
func pythonWithRequests(t *testing.T) string {
	t.Helper()
	for _, p := range []string{"python3", "/usr/bin/python3"} {
		if exec.Command(p, "-c", "import requests").Run() == nil {
			return p
		}
	}
	t.Fatal("no python3 that can import requests; the Python example needs it (Debian's python3-requests; .ci/run installs it)")
	return ""
}

// runPageExample runs script as the module script of a page, in Chromium,
// until the page's console says check.output. The page is served from an
// origin of its own, as pages that use the service are.
func runPageExample(t *testing.T, script string, check *exampleCheck) {
	page := "<!doctype html>\n<title>example</title>\n<script type=\"module\">\n" + script + "</script>\n"
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		_, _ = io.WriteString(w, page)
	}))
	defer srv.Close()
	c := startClient(t, "page-example.mjs", srv.URL+"/")
	c.waitFor(t, fmt.Sprintf("the console to say %q", check.output), exampleTimeout, func(ev clientEvent) bool {
		if ev.Type == "pageerror" {
			t.Errorf("the page failed: %s", ev.Line)
		}
		return ev.Type == "console" && strings.Contains(ev.Line, check.output)
	})
	c.stop(t)
}

// publishInto publishes a small JSON message with each routing key to
// amq.topic of the dev at base, through its publish endpoint, over and
// over until the returned function is called.
func publishInto(t *testing.T, base string, keys ...string) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() {
		client := &http.Client{Timeout: 10 * time.Second}
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for n := 0; ; n++ {
			for _, k := range keys {
				q := url.Values{"exchange": {"amq.topic"}, "routingKey": {k}, "cc": {"route.index.x"}}
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, base+"/dev/publish?"+q.Encode(), strings.NewReader(fmt.Sprintf(`{"n": %d}`, n)))
				if err != nil {
					t.Error(err)
					return
				}
				resp, err := client.Do(req)
				if ctx.Err() != nil {
					return
				}
				if err != nil {
					t.Errorf("publish into dev: %v", err)
					return
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("publish into dev: %s", resp.Status)
					return
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	})
	return func() {
		cancel()
		wg.Wait()
	}
}

// notifyBuffer collects output and signals each write on wrote.
type notifyBuffer struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (n *notifyBuffer) Write(p []byte) (int, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	select {
	case n.wrote <- struct{}{}:
	default:
	}
	return n.b.Write(p)
}

func (n *notifyBuffer) String() string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.b.String()
}
