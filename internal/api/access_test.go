package api_test

import (
	"bytes"
	"context"
	"crypto"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"eventsproxy/internal/access"
	"eventsproxy/internal/accesstest"
	"eventsproxy/internal/api"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/brokertest"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/sse"
)

// lockedBuffer collects a log that streams write while the test reads it.
type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// accessProxy is the API with access control on the in-process broker,
// with exchanges "private/a" and "public/b"; its log is kept.
type accessProxy struct {
	mb  *membroker.Broker
	b   *broker.Broker
	srv *httptest.Server
	log *lockedBuffer
}

func startAccessProxy(t *testing.T, ac access.Config, cfg api.Config) *accessProxy {
	t.Helper()
	logBuf := &lockedBuffer{}
	log := slog.New(slog.NewTextHandler(logBuf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	az, err := access.Open(ac, log)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	mb := membroker.New()
	mb.DeclareExchange("private/a")
	mb.DeclareExchange("public/b")
	reg := prometheus.NewRegistry()
	cfg.Metrics = metrics.New(reg)
	cfg.MetricsHandler = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	cfg.Access = az
	b := brokertest.Start(t, mb, broker.Config{Metrics: cfg.Metrics})
	h := api.NewHandler(cfg, api.FromBroker(b), log)
	srv := httptest.NewServer(h)
	t.Cleanup(func() { closeServer(t, h, srv) })
	return &accessProxy{mb: mb, b: b, srv: srv, log: logBuf}
}

var secret = []byte("a secret of thirty-two bytes, ok")

// request opens a connect request for bindings (exchange, pattern pairs)
// with the given header; the body is closed when the test ends.
func (p *accessProxy) request(t *testing.T, hdr http.Header, extraQuery string, pairs ...string) *http.Response {
	t.Helper()
	var bs []map[string]string
	for i := 0; i+1 < len(pairs); i += 2 {
		bs = append(bs, map[string]string{"exchange": pairs[i], "routingKeyPattern": pairs[i+1]})
	}
	q, _ := json.Marshal(map[string]any{"bindings": bs})
	ctx, cancel := context.WithCancel(context.Background())
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, connectURL(p.srv.URL, string(q))+extraQuery, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		resp.Body.Close()
	})
	return resp
}

func bearerHeader(tok string) http.Header {
	return http.Header{"Authorization": {"Bearer " + tok}}
}

// nextEvent reads the next event of resp's stream.
func nextEvent(t *testing.T, rd *sse.Reader) sse.Event {
	t.Helper()
	ev, err := rd.Next()
	if err != nil {
		t.Fatalf("stream: %v", err)
	}
	return ev
}

// expectDelivery checks that resp's stream gets ready, then the message
// published on exchange ex with key.
func (p *accessProxy) expectDelivery(t *testing.T, resp *http.Response, ex, key string) {
	t.Helper()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("connect: %s %s", resp.Status, b)
	}
	rd := sse.NewReader(resp.Body)
	if ev := nextEvent(t, rd); ev.Kind != "ready" {
		t.Fatalf("got %s %s, want ready", ev.Kind, ev.Data)
	}
	if err := p.mb.Publish(ex, key, nil, []byte(`{"n":1}`)); err != nil {
		t.Fatal(err)
	}
	if ev := nextEvent(t, rd); ev.Kind != "message" || !strings.Contains(string(ev.Data), `"routingKey":"`+key+`"`) {
		t.Fatalf("got %s %s, want the message on %s", ev.Kind, ev.Data, key)
	}
}

func TestAccessSigners(t *testing.T) {
	rsaKey, ecKey, jwksKey := accesstest.RSAKey(t), accesstest.ECKey(t), accesstest.ECKey(t)
	keys, err := access.LoadPublicKeys([]string{accesstest.PEMFile(t, rsaKey), accesstest.PEMFile(t, ecKey)})
	if err != nil {
		t.Fatal(err)
	}
	jwks := accesstest.ServeJWKS(t, map[string]crypto.Signer{"k1": jwksKey})
	p := startAccessProxy(t, access.Config{HMACSecrets: [][]byte{secret}, PublicKeys: keys, JWKSURL: jwks.URL}, api.Config{})
	claims := accesstest.Grants("alice", "private/", "primary.#")
	rotated := accesstest.ECKey(t)
	for name, tok := range map[string]func() string{
		"HS256": func() string { return accesstest.Sign(t, secret, "HS256", "", claims) },
		"RS256": func() string { return accesstest.Sign(t, rsaKey, "RS256", "", claims) },
		"ES256": func() string { return accesstest.Sign(t, ecKey, "ES256", "", claims) },
		"JWKS":  func() string { return accesstest.Sign(t, jwksKey, "ES256", "k1", claims) },
		"JWKS rotated": func() string {
			jwks.Set(t, map[string]crypto.Signer{"k1": jwksKey, "k2": rotated})
			return accesstest.Sign(t, rotated, "ES256", "k2", claims)
		},
	} {
		t.Run(name, func(t *testing.T) {
			resp := p.request(t, bearerHeader(tok()), "", "private/a", "primary.abc.#")
			p.expectDelivery(t, resp, "private/a", "primary.abc.x")
		})
	}
}

func TestAccessRefusals(t *testing.T) {
	p := startAccessProxy(t, access.Config{HMACSecrets: [][]byte{secret}, MaxStreamsPerSubject: 1}, api.Config{})
	good := accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("alice", "private/", "primary.#"))
	expired := accesstest.Grants("bob", "private/", "#")
	expired["exp"] = time.Now().Add(-time.Hour).Unix()
	wrongKey := accesstest.Sign(t, []byte("another secret of thirty-two byt"), "HS256", "", accesstest.Grants("carol", "private/", "#"))

	for _, tc := range []struct {
		name, challenge, code, text string
		hdr                         http.Header
	}{
		{"no token", `Bearer realm="eventsproxy"`, "AuthenticationRequired", "needs a token", nil},
		{"wrong key", `Bearer realm="eventsproxy", error="invalid_token", error_description="The token is not valid."`, "InvalidToken", "not valid", bearerHeader(wrongKey)},
		{"expired", `Bearer realm="eventsproxy", error="invalid_token", error_description="The token has expired."`, "InvalidToken", "has expired", bearerHeader(accesstest.Sign(t, secret, "HS256", "", expired))},
		{"garbage", `Bearer realm="eventsproxy", error="invalid_token", error_description="The token is not valid."`, "InvalidToken", "not valid", bearerHeader("x.y.z")},
		{"basic", `Bearer realm="eventsproxy", error="invalid_token", error_description="The token is not valid."`, "InvalidToken", "not valid", http.Header{"Authorization": {"Basic " + good}}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			resp := p.request(t, tc.hdr, "", "private/a", "#")
			if resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("status %s, want 401", resp.Status)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
			}
			if resp.Header.Get("Access-Control-Allow-Origin") != "*" {
				t.Error("no CORS header on the refusal")
			}
			var body struct{ Code, Message string }
			if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
				t.Fatal(err)
			}
			if body.Code != tc.code || !strings.Contains(body.Message, tc.text) {
				t.Errorf("body %+v, want code %s and %q", body, tc.code, tc.text)
			}
		})
	}

	t.Run("not granted", func(t *testing.T) {
		resp := p.request(t, bearerHeader(good), "", "private/a", "primary.#", "public/b", "#")
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("status %s", resp.Status)
		}
		ev := nextEvent(t, sse.NewReader(resp.Body))
		want := `"The token does not grant binding {\"exchange\":\"public/b\",\"routingKeyPattern\":\"#\"}."`
		if ev.Kind != "error" || string(ev.Data) != want {
			t.Fatalf("got %s %s, want error %s", ev.Kind, ev.Data, want)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := p.b.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if bs := p.mb.QueueBindings(p.b.QueueName()); len(bs) != 0 {
			t.Errorf("bindings on the broker: %v", bs)
		}
	})

	t.Run("subject limit", func(t *testing.T) {
		// A subject of its own: the streams above may not have ended yet.
		good := accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("grace", "private/", "primary.#"))
		first := p.request(t, bearerHeader(good), "", "private/a", "primary.x")
		if first.StatusCode != http.StatusOK {
			t.Fatalf("first stream: %s", first.Status)
		}
		if ev := nextEvent(t, sse.NewReader(first.Body)); ev.Kind != "ready" {
			t.Fatalf("first stream: %s %s", ev.Kind, ev.Data)
		}
		second := p.request(t, bearerHeader(good), "", "private/a", "primary.y")
		if second.StatusCode != http.StatusTooManyRequests || second.Header.Get("Retry-After") == "" {
			t.Fatalf("second stream of the subject: %s, want 429 with Retry-After", second.Status)
		}
	})

	// Nothing of a token or a secret in any answer or the log.
	text := p.log.String()
	for _, s := range []string{good, wrongKey, string(secret), good[strings.LastIndexByte(good, '.')+1:]} {
		if strings.Contains(text, s) {
			t.Errorf("the log holds %q:\n%s", s, text)
		}
	}
}

func TestAccessQueryTokenStaysOutOfLogsAndMetrics(t *testing.T) {
	p := startAccessProxy(t, access.Config{HMACSecrets: [][]byte{secret}}, api.Config{})
	tok := accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("dave", "private/a", "#"))
	resp := p.request(t, nil, "&access_token="+url.QueryEscape(tok), "private/a", "a.b")
	p.expectDelivery(t, resp, "private/a", "a.b")
	resp.Body.Close()
	// A request for a missing page with the token in its query, too.
	nf, err := http.Get(p.srv.URL + "/nowhere?access_token=" + url.QueryEscape(tok))
	if err != nil {
		t.Fatal(err)
	}
	nfBody, _ := io.ReadAll(nf.Body)
	nf.Body.Close()
	m, err := http.Get(p.srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metricsText, _ := io.ReadAll(m.Body)
	m.Body.Close()
	sig := tok[strings.LastIndexByte(tok, '.')+1:]
	for what, text := range map[string]string{"log": p.log.String(), "metrics": string(metricsText), "404": string(nfBody)} {
		if strings.Contains(text, sig) {
			t.Errorf("the %s holds the token:\n%s", what, text)
		}
	}
}

func TestAccessCookieAndCredentials(t *testing.T) {
	p := startAccessProxy(t, access.Config{HMACSecrets: [][]byte{secret}, Cookie: "ep_token"},
		api.Config{CORSOrigin: "https://app.example", CORSCredentials: true})
	tok := accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("erin", "private/a", "#"))
	resp := p.request(t, http.Header{"Cookie": {"ep_token=" + tok}, "Origin": {"https://app.example"}}, "", "private/a", "a")
	if resp.Header.Get("Access-Control-Allow-Origin") != "https://app.example" || resp.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("CORS headers %v", resp.Header)
	}
	p.expectDelivery(t, resp, "private/a", "a")
	refused := p.request(t, nil, "", "private/a", "a")
	if refused.StatusCode != http.StatusUnauthorized || refused.Header.Get("Access-Control-Allow-Credentials") != "true" {
		t.Errorf("without the cookie: %s %v", refused.Status, refused.Header)
	}
}

func TestAccessAnonymousGrants(t *testing.T) {
	public, err := access.ParseGrants(`[{"exchange": "public/", "routingKeyPattern": "#"}]`)
	if err != nil {
		t.Fatal(err)
	}
	p := startAccessProxy(t, access.Config{HMACSecrets: [][]byte{secret}, AnonymousGrants: public}, api.Config{})
	p.expectDelivery(t, p.request(t, nil, "", "public/b", "x.#"), "public/b", "x.y")
	resp := p.request(t, nil, "", "private/a", "#")
	ev := nextEvent(t, sse.NewReader(resp.Body))
	if ev.Kind != "error" || !strings.Contains(string(ev.Data), "needs a token") {
		t.Fatalf("anonymous private binding: %s %s", ev.Kind, ev.Data)
	}
}

// openExpiring opens a stream on private/a whose token expires as soon as
// it is ready, with extraQuery, and returns its `ready` event once the
// stream has ended with an error saying the token expired. The
// Authorizer's clock stands an hour back, so the token is good at
// admission and expired for the stream's timer; tokens minted with
// accesstest.Grants are good for both.
func openExpiring(t *testing.T, extraQuery string) (*accessProxy, sse.Event) {
	t.Helper()
	exp := time.Now().Add(-time.Hour).Truncate(time.Second)
	p := startAccessProxy(t, access.Config{
		HMACSecrets: [][]byte{secret},
		Leeway:      -1,
		Now:         func() time.Time { return exp.Add(-time.Minute) },
	}, api.Config{})
	c := accesstest.Grants("frank", "private/a", "#")
	c["exp"] = exp.Unix()
	resp := p.request(t, bearerHeader(accesstest.Sign(t, secret, "HS256", "", c)), extraQuery, "private/a", "#")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %s", resp.Status)
	}
	rd := sse.NewReader(resp.Body)
	ready := nextEvent(t, rd)
	if ready.Kind != "ready" {
		t.Fatalf("got %s %s, want ready", ready.Kind, ready.Data)
	}
	if ev := nextEvent(t, rd); ev.Kind != "error" || !strings.Contains(string(ev.Data), "expired") {
		t.Fatalf("got %s %s, want an error saying the token expired", ev.Kind, ev.Data)
	}
	if _, err := rd.Next(); err != io.EOF {
		t.Fatalf("after the error: %v, want the end of the stream", err)
	}
	return p, ready
}

// TestAccessTokenExpires: a stream ends with an error when its token
// expires.
func TestAccessTokenExpires(t *testing.T) {
	openExpiring(t, "")
}

// TestAccessExpiredResumableStreamResumes: a resumable stream that its
// token's expiry ends lingers like one whose client left, so that a
// reconnect with a fresh token and the last event id continues it, with
// what was published meanwhile and no gap.
func TestAccessExpiredResumableStreamResumes(t *testing.T) {
	p, ready := openExpiring(t, "&resume=1")
	if ready.ID == "" || ready.ID == "-" {
		t.Fatalf("ready has id %q, want a resume token", ready.ID)
	}
	// Published while the client fetches a new token.
	for _, key := range []string{"k.1", "k.2"} {
		if err := p.mb.Publish("private/a", key, nil, []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	hdr := bearerHeader(accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("frank", "private/a", "#")))
	hdr.Set("Last-Event-ID", ready.ID)
	again := p.request(t, hdr, "&resume=1", "private/a", "#")
	if again.StatusCode != http.StatusOK {
		t.Fatalf("reconnect: %s", again.Status)
	}
	rd := sse.NewReader(again.Body)
	if ev := nextEvent(t, rd); ev.Kind != "ready" {
		t.Fatalf("reconnect: got %s %s, want ready", ev.Kind, ev.Data)
	}
	if err := p.mb.Publish("private/a", "k.3", nil, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{"k.1", "k.2", "k.3"} {
		if ev := nextEvent(t, rd); ev.Kind != "message" || !strings.Contains(string(ev.Data), `"routingKey":"`+key+`"`) {
			t.Fatalf("reconnect: got %s %s, want the message on %s", ev.Kind, ev.Data, key)
		}
	}
}
