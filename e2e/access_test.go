//go:build integration

package e2e

import (
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// accessSecret is the HMAC secret of the access-control tests.
const accessSecret = "e2e-secret-0123456789abcdef01234567"

// mintToken runs `eventsproxy token` with the secret, as an operator would.
func mintToken(t testing.TB, args ...string) string {
	t.Helper()
	cmd := exec.Command(proxyBinary, append([]string{"token"}, args...)...)
	cmd.Env = append(os.Environ(), "TOKEN_SECRETS="+accessSecret)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("eventsproxy token %q: %v", args, err)
	}
	return strings.TrimSpace(string(out))
}

// TestEventSourceClientToken: the npm eventsource package presents a token
// in an Authorization header; it gets what the token grants, and a binding
// beyond it is refused with an error event that names it.
func TestEventSourceClientToken(t *testing.T) {
	t.Parallel()
	ex, other := newExchange(t), newExchange(t)
	p := startProxy(t, "--token-secrets", accessSecret)
	tok := mintToken(t, "--grant", ex.Name+"=primary.#", "--sub", "e2e", "--ttl", "10m")

	c := startClient(t, eventsourceClient, connectURL(t, p.URL, binding{ex.Name, "primary.a.#"}), "--header", "Authorization: Bearer "+tok)
	checkReady(t, c.expect(t, "ready", eventTimeout))
	payload := map[string]any{"granted": true}
	ex.publish(t, "primary.b", jsonMessage(t, map[string]any{"granted": false}))
	ex.publish(t, "primary.a.x", jsonMessage(t, payload))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, "primary.a.x", []string{}, mustJSON(t, payload))

	refused := startClient(t, eventsourceClient, connectURL(t, p.URL, binding{ex.Name, "primary.#"}, binding{other.Name, "#"}),
		"--header", "Authorization: Bearer "+tok)
	ev := refused.expect(t, "error", eventTimeout)
	var text string
	decodeData(t, ev, &text)
	if !strings.Contains(text, "does not grant") || !strings.Contains(text, other.Name) {
		t.Errorf("error event %q does not name the binding", text)
	}
	if strings.Contains(text, tok) {
		t.Errorf("error event %q holds the token", text)
	}

	// Without a token: 401, which EventSource takes as fatal.
	none := startClient(t, eventsourceClient, connectURL(t, p.URL, binding{ex.Name, "primary.#"}))
	res := none.waitFor(t, "the answer without a token", eventTimeout, func(ev clientEvent) bool { return ev.Type == "response" })
	if res.Status != http.StatusUnauthorized || !strings.HasPrefix(res.Headers["www-authenticate"], "Bearer") {
		t.Errorf("without a token: status %d, WWW-Authenticate %q", res.Status, res.Headers["www-authenticate"])
	}
	if strings.Contains(p.log.String(), tok) {
		t.Error("the service's log holds the token")
	}
}

// TestBrowserCookieCrossOrigin: a page on another origin opens a stream
// with the browser's own EventSource and withCredentials, and the proxy
// takes the token from its cookie. The page (localhost:A) and the proxy
// (localhost:B) are cross-origin but same-site, as an app and its events
// service on two subdomains are, so the browser sends a SameSite=Lax
// cookie.
func TestBrowserCookieCrossOrigin(t *testing.T) {
	t.Parallel()
	needChromium(t)
	pageOrigin := servePage(t, "page.html")

	ex := newExchange(t)
	p := startProxy(t, "--token-secrets", accessSecret, "--token-cookie", "ep_token", "--cors-origin", pageOrigin)
	u, err := url.Parse(p.URL)
	if err != nil {
		t.Fatal(err)
	}
	_, proxyPort, _ := net.SplitHostPort(u.Host)
	proxyURL := "http://localhost:" + proxyPort
	tok := mintToken(t, "--grant", ex.Name+"=#", "--sub", "browser", "--ttl", "10m")

	connect := connectURL(t, proxyURL, binding{ex.Name, "primary.#"})
	c := startClient(t, browserClient, pageOrigin+"/?credentials=1&connect="+url.QueryEscape(connect),
		"--cookie", "ep_token="+tok, "--cookie-url", proxyURL,
		"--screenshot", filepath.Join("artifacts", t.Name()+".png"))
	checkReady(t, c.expect(t, "ready", browserStartTimeout))
	payload := map[string]any{"cookie": true}
	ex.publish(t, "primary.cookie", jsonMessage(t, payload))
	checkMessage(t, c.expect(t, "message", eventTimeout), ex.Name, "primary.cookie", []string{}, mustJSON(t, payload))

	req := c.waitFor(t, "the EventSource's request", eventTimeout, func(ev clientEvent) bool {
		return ev.Type == "request" && strings.HasPrefix(ev.URL, proxyURL+connectPath)
	})
	if !strings.Contains(req.Headers["cookie"], "ep_token=") || req.Headers["origin"] != pageOrigin {
		t.Errorf("the request carried Cookie %q and Origin %q", req.Headers["cookie"], req.Headers["origin"])
	}
	res := c.waitFor(t, "the answer", eventTimeout, func(ev clientEvent) bool {
		return ev.Type == "response" && strings.HasPrefix(ev.URL, proxyURL+connectPath)
	})
	if res.Headers["access-control-allow-origin"] != pageOrigin || res.Headers["access-control-allow-credentials"] != "true" {
		t.Errorf("CORS headers %v", res.Headers)
	}
	checkCounts(t, c, map[string]int{"ready": 1, "message": 1, "error": 0, "pageerror": 0, "console": 0, "requestfailed": 0})
}
