//go:build integration

package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"eventsproxy/internal/rabbittest"
	"eventsproxy/internal/testcert"
)

// operationsDoc is the file whose proxy configurations the edge tests run.
const operationsDoc = "../docs/operations.md"

// edgeStopTimeout bounds the wait for a proxy to exit after SIGTERM.
const edgeStopTimeout = 10 * time.Second

// edge is a reverse proxy (nginx, HAProxy or Caddy) in front of replicas,
// run from the configuration that docs/operations.md gives, serving HTTPS
// with HTTP/2 on a free loopback port. It is stopped at the end of the test.
type edge struct {
	// Name is the proxy's name, for messages.
	Name string
	// URL is its root URL, https://127.0.0.1:PORT.
	URL string

	pool *x509.CertPool
	// cert is the file of the certificate it serves, which pool trusts.
	cert string
}

// edgeKind says how to run one proxy from its block in docs/operations.md.
type edgeKind struct {
	name string
	// binary is the program, looked up on PATH and then in /usr/sbin.
	binary string
	// block returns the configuration that docs/operations.md gives.
	block func(t testing.TB) string
	// config turns the doc's block into the file the test runs, given
	// the test's directory, its listening port, the replicas' addresses
	// and the certificate files.
	config func(t testing.TB, block string, s edgeSetup) string
	// args are the command-line arguments that run it in the foreground
	// on the config file.
	args func(s edgeSetup, configFile string) []string
	// sticky is the line of the block that makes it sticky by client
	// address (see withoutStickiness).
	sticky string
}

// edgeSetup is what the test substitutes into a configuration.
type edgeSetup struct {
	dir      string
	listen   string // 127.0.0.1:PORT
	replicas [2]string
	cert     string
	key      string
	pem      string // cert and key in one file, as HAProxy wants them
	// plain serves HTTP/1.1 without TLS, as behind a load balancer that
	// terminates TLS in front of the proxy: only the line that listens
	// changes.
	plain bool
}

// listenLine returns the replacement of the doc's listening line: the
// doc's own, on the test's address, or a plain one.
func (s edgeSetup) listenLine(tls, plain string) string {
	if s.plain {
		return plain
	}
	return tls
}

// edgeKinds are the proxies that docs/operations.md configures.
var edgeKinds = []edgeKind{
	{
		name: "nginx", binary: "nginx", block: docBlockOf("nginx"),
		config: func(t testing.TB, block string, s edgeSetup) string {
			block = substitute(t, "nginx", block,
				"eventsproxy-1:8080", s.replicas[0],
				"eventsproxy-2:8080", s.replicas[1],
				"listen 443 ssl http2;", s.listenLine("listen "+s.listen+" ssl http2;", "listen "+s.listen+";"),
				"/etc/nginx/tls/events.crt", s.cert,
				"/etc/nginx/tls/events.key", s.key,
			)
			// What nginx.conf around the doc's block says on a real
			// machine, pointed at the test's directory.
			return fmt.Sprintf(`daemon off;
pid %[1]s/nginx.pid;
error_log stderr notice;
worker_processes 1;
events {}
http {
    access_log off;
    client_body_temp_path %[1]s/client_body;
    proxy_temp_path %[1]s/proxy;
    fastcgi_temp_path %[1]s/fastcgi;
    uwsgi_temp_path %[1]s/uwsgi;
    scgi_temp_path %[1]s/scgi;
%[2]s
}
`, s.dir, block)
		},
		args: func(s edgeSetup, configFile string) []string {
			return []string{"-e", "stderr", "-p", s.dir, "-c", configFile}
		},
		sticky: "hash $remote_addr consistent;",
	},
	{
		name: "haproxy", binary: "haproxy", block: docBlockOf("haproxy"),
		config: haproxyConfig,
		args:   haproxyArgs,
		sticky: "balance source",
	},
	{
		name: "caddy", binary: "caddy", block: docBlockOf("caddy"),
		config: caddyConfig,
		args:   caddyArgs,
		sticky: "lb_policy ip_hash",
	},
}

// withoutStickiness returns kind with its sticky line taken out of the
// doc's block: the proxy's default balancing, round robin or random.
func withoutStickiness(kind edgeKind) edgeKind {
	block, sticky := kind.block, kind.sticky
	kind.name += "-not-sticky"
	kind.block = func(t testing.TB) string {
		return substitute(t, kind.name, block(t), sticky, "")
	}
	return kind
}

// cookieEdgeKinds are the proxies that docs/operations.md makes sticky by
// cookie.
var cookieEdgeKinds = []edgeKind{
	{
		name: "haproxy-cookie", binary: "haproxy",
		// The doc's backend in place of the first block's.
		block: func(t testing.TB) string {
			main := docBlock(t, "haproxy")
			i := strings.Index(main, "\nbackend eventsproxy\n")
			if i < 0 {
				t.Fatalf("the haproxy block of %s has no backend eventsproxy", operationsDoc)
			}
			return main[:i+1] + docBlock(t, "haproxy-cookie")
		},
		config: haproxyConfig,
		args:   haproxyArgs,
	},
	{
		name: "caddy-cookie", binary: "caddy", block: docBlockOf("caddy-cookie"),
		config: caddyConfig,
		args:   caddyArgs,
	},
}

func haproxyConfig(t testing.TB, block string, s edgeSetup) string {
	return substitute(t, "haproxy", block,
		"eventsproxy-1:8080", s.replicas[0],
		"eventsproxy-2:8080", s.replicas[1],
		"bind :443 ssl crt /etc/haproxy/tls/events.pem alpn h2,http/1.1",
		s.listenLine("bind "+s.listen+" ssl crt "+s.pem+" alpn h2,http/1.1", "bind "+s.listen),
	)
}

func haproxyArgs(s edgeSetup, configFile string) []string {
	return []string{"-db", "-f", configFile}
}

func caddyConfig(t testing.TB, block string, s edgeSetup) string {
	// The doc's site gets its certificate from an ACME CA; here it is the
	// test's own; the admin API and the HTTP-to-HTTPS redirect, which
	// would take fixed ports, are off, and so is HTTP/3, whose UDP
	// listener would not be on loopback only.
	block = substitute(t, "caddy", block,
		"eventsproxy-1:8080", s.replicas[0],
		"eventsproxy-2:8080", s.replicas[1],
		"events.example.com {", s.listenLine(s.listen+" {\n\ttls "+s.cert+" "+s.key, "http://"+s.listen+" {"),
	)
	return fmt.Sprintf("{\n    admin off\n    auto_https disable_redirects\n    storage file_system %s/caddy\n    servers {\n        protocols h1 h2\n    }\n}\n\n%s", s.dir, block)
}

func caddyArgs(s edgeSetup, configFile string) []string {
	return []string{"run", "--adapter", "caddyfile", "--config", configFile}
}

// startEdge runs kind in front of the two replicas, with the configuration
// that docs/operations.md gives, and returns once it answers
// /__lbheartbeat__ through to a replica. With plain, it serves HTTP/1.1
// without TLS. A missing binary fails the test: .ci/run installs them.
func startEdge(t testing.TB, kind edgeKind, replicas [2]*proxy, plain bool) *edge {
	t.Helper()
	bin := lookBinary(t, kind.binary)
	dir := t.TempDir()
	cert, key, pool, err := testcert.WriteTo(dir)
	if err != nil {
		t.Fatal(err)
	}
	s := edgeSetup{dir: dir, listen: freeAddr(t), cert: cert, key: key, pem: filepath.Join(dir, "combined.pem"), plain: plain}
	for i, r := range replicas {
		s.replicas[i] = strings.TrimPrefix(r.URL, "http://")
	}
	writeCombinedPEM(t, s)

	configFile := filepath.Join(dir, kind.name+".conf")
	if err := os.WriteFile(configFile, []byte(kind.config(t, kind.block(t), s)), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, kind.args(s, configFile)...)
	cmd.Dir = dir
	// Caddy keeps its state under $HOME and $XDG_*: the test's directory.
	cmd.Env = append(os.Environ(), "HOME="+dir, "XDG_DATA_HOME="+dir, "XDG_CONFIG_HOME="+dir)
	// If the test binary dies, so does the proxy.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out := newLineLog(false)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", kind.name, err)
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		defer func() {
			if t.Failed() {
				t.Logf("%s config:\n%s\n%s output:\n%s", kind.name, readFile(t, configFile), kind.name, out)
			}
		}()
		select {
		case <-exited:
			t.Errorf("%s exited before the end of the test: %v", kind.name, waitErr)
			return
		default:
		}
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(edgeStopTimeout):
			_ = cmd.Process.Kill()
			<-exited
			t.Errorf("%s did not exit within %v of SIGTERM; killed it", kind.name, edgeStopTimeout)
		}
	})

	e := &edge{Name: kind.name, URL: "https://" + s.listen, pool: pool, cert: cert}
	if plain {
		e.Name, e.URL = kind.name+" (plain HTTP)", "http://"+s.listen
	}
	// None of the three says when it is listening in a form to wait for;
	// its first answer is that sign.
	c := e.client(t, "127.0.0.1")
	rabbittest.Poll(t, kind.name+" answers /__lbheartbeat__ with 200", proxyStartTimeout, func() (bool, string) {
		select {
		case <-exited:
			t.Fatalf("%s exited at start: %v\nconfig:\n%s\noutput:\n%s", kind.name, waitErr, readFile(t, configFile), out)
		default:
		}
		resp, err := c.Get(e.URL + "/__lbheartbeat__")
		if err != nil {
			return false, fmt.Sprintf("last: %v", err)
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK, "last: " + resp.Status
	})
	return e
}

// client returns an HTTP client of the edge that trusts its certificate,
// speaks HTTP/2 when the edge offers it, and connects from the loopback
// address local, so that a test can be several clients.
func (e *edge) client(t testing.TB, local string) *http.Client {
	t.Helper()
	return e.newClient(t, local, true)
}

// client1 is client speaking HTTP/1.1 only.
func (e *edge) client1(t testing.TB, local string) *http.Client {
	t.Helper()
	return e.newClient(t, local, false)
}

func (e *edge) newClient(t testing.TB, local string, h2 bool) *http.Client {
	t.Helper()
	ip := net.ParseIP(local)
	if ip == nil || !ip.IsLoopback() {
		t.Fatalf("client address %q is not a loopback address", local)
	}
	dialer := &net.Dialer{LocalAddr: &net.TCPAddr{IP: ip}, Timeout: 10 * time.Second}
	tr := &http.Transport{
		DialContext:       dialer.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: e.pool},
		ForceAttemptHTTP2: h2,
	}
	if !h2 {
		// A non-nil empty map turns HTTP/2 off.
		tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr}
}

// docBlock returns the fenced code block of docs/operations.md that follows
// the line <!-- e2e: name -->.
func docBlock(t testing.TB, name string) string {
	t.Helper()
	doc := readFile(t, operationsDoc)
	marker := "<!-- e2e: " + name + " -->\n"
	i := strings.Index(doc, marker)
	if i < 0 || strings.Count(doc, marker) != 1 {
		t.Fatalf("%s must have the line %q once, before the configuration the test runs", operationsDoc, strings.TrimSpace(marker))
	}
	rest := doc[i+len(marker):]
	fence, body, ok := strings.Cut(rest, "\n")
	if !ok || !strings.HasPrefix(fence, "```") {
		t.Fatalf("%s: no code block right after %q", operationsDoc, strings.TrimSpace(marker))
	}
	body, _, ok = strings.Cut(body, "\n```\n")
	if !ok {
		t.Fatalf("%s: the code block after %q does not end", operationsDoc, strings.TrimSpace(marker))
	}
	return body + "\n"
}

// docBlockOf returns a function that returns docBlock(t, name).
func docBlockOf(name string) func(testing.TB) string {
	return func(t testing.TB) string { return docBlock(t, name) }
}

// substitute replaces each old with its new in a configuration block, and
// fails the test when an old is not in the block: the doc changed in a way
// that the test no longer follows.
func substitute(t testing.TB, what, block string, oldNew ...string) string {
	t.Helper()
	for i := 0; i < len(oldNew); i += 2 {
		if !strings.Contains(block, oldNew[i]) {
			t.Fatalf("the %s block of %s no longer contains %q, which the test replaces; update e2e/edge_test.go", what, operationsDoc, oldNew[i])
		}
		block = strings.ReplaceAll(block, oldNew[i], oldNew[i+1])
	}
	return block
}

// lookBinary finds a proxy's program, also in /usr/sbin, which a minimal
// PATH may lack.
func lookBinary(t testing.TB, name string) string {
	t.Helper()
	if p, err := exec.LookPath(name); err == nil {
		return p
	}
	p := filepath.Join("/usr/sbin", name)
	if _, err := os.Stat(p); err == nil {
		return p
	}
	t.Fatalf("%s is not installed (Debian's package %s; .ci/run installs it)", name, name)
	return ""
}

// freeAddr returns a loopback address with a port that was free a moment
// ago, for a program that must be told its port.
func freeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func writeCombinedPEM(t testing.TB, s edgeSetup) {
	t.Helper()
	pem := readFile(t, s.cert) + readFile(t, s.key)
	if err := os.WriteFile(s.pem, []byte(pem), 0o600); err != nil {
		t.Fatal(err)
	}
}

func readFile(t testing.TB, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// get sends a GET with optional header key-value pairs.
func get(ctx context.Context, c *http.Client, url string, header ...string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return c.Do(req)
}
