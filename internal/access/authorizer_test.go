package access_test

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"eventsproxy/internal/access"
	"eventsproxy/internal/accesstest"
	"eventsproxy/internal/binding"
)

var discard = slog.New(slog.NewTextHandler(io.Discard, nil))

func newAuthorizer(t *testing.T, cfg access.Config) *access.Authorizer {
	t.Helper()
	a, err := access.Open(cfg, discard)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Close)
	return a
}

func bearer(tok string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/api/events/v1/connect/", nil)
	r.Header.Set("Authorization", "Bearer "+tok)
	return r
}

var granted = binding.Binding{Exchange: "exchange/q/v1/task-completed", RoutingKeyPattern: "primary.abc.#"}

// mustAllow checks that r is authorized and may bind granted.
func mustAllow(t *testing.T, a *access.Authorizer, r *http.Request) *access.Principal {
	t.Helper()
	p, err := a.Authorize(r)
	if err != nil {
		t.Fatalf("Authorize: %v", err)
	}
	if err := p.Check([]binding.Binding{granted}); err != nil {
		t.Fatalf("Check: %v", err)
	}
	return p
}

// mustRefuse checks that r's token is refused as invalid, and that the
// error says nothing of tok.
func mustRefuse(t *testing.T, a *access.Authorizer, r *http.Request, tok string) *access.TokenError {
	t.Helper()
	p, err := a.Authorize(r)
	var terr *access.TokenError
	if !errors.As(err, &terr) {
		t.Fatalf("Authorize = %v, %v; want a TokenError", p, err)
	}
	if tok != "" && strings.Contains(err.Error(), tok[strings.LastIndexByte(tok, '.')+1:]) {
		t.Errorf("error %q holds the token", err)
	}
	return terr
}

func claims() accesstest.Claims {
	return accesstest.Grants("alice", "exchange/q/v1/", "primary.#")
}

func TestOff(t *testing.T) {
	t.Parallel()
	a, err := access.Open(access.Config{Cookie: "token"}, discard)
	if err != nil || a != nil {
		t.Fatalf("New without keys = %v, %v; want nil, nil", a, err)
	}
	p, err := a.Authorize(bearer("junk"))
	if p != nil || err != nil {
		t.Fatalf("nil Authorizer: %v, %v", p, err)
	}
	if err := p.Check([]binding.Binding{{Exchange: "x", RoutingKeyPattern: "#"}}); err != nil {
		t.Fatal(err)
	}
	p.Release()
	a.Close()
}

func TestHMACRotation(t *testing.T) {
	t.Parallel()
	old, cur := []byte("old secret, still accepted"), []byte("current secret")
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{cur, old}})
	for _, s := range [][]byte{old, cur} {
		mustAllow(t, a, bearer(accesstest.Sign(t, s, "HS256", "", claims())))
	}
	tok := accesstest.Sign(t, []byte("another secret"), "HS256", "", claims())
	if e := mustRefuse(t, a, bearer(tok), tok); e.Expired {
		t.Error("a bad signature counted as expired")
	}
	// Only configured algorithms: HS256 by default, not HS512.
	tok = accesstest.Sign(t, cur, "HS512", "", claims())
	mustRefuse(t, a, bearer(tok), tok)
	a = newAuthorizer(t, access.Config{HMACSecrets: [][]byte{cur}, Algorithms: []string{"HS512"}})
	mustAllow(t, a, bearer(tok))
}

func TestPublicKeys(t *testing.T) {
	t.Parallel()
	rsaKey, ecKey := accesstest.RSAKey(t), accesstest.ECKey(t)
	keys, err := access.LoadPublicKeys([]string{accesstest.PEMFile(t, rsaKey), accesstest.PEMFile(t, ecKey)})
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, access.Config{PublicKeys: keys})
	mustAllow(t, a, bearer(accesstest.Sign(t, rsaKey, "RS256", "", claims())))
	mustAllow(t, a, bearer(accesstest.Sign(t, ecKey, "ES256", "", claims())))

	// A token signed with another key, one made with "none", and one
	// "signed" with HS256 using the public key as a secret are refused.
	tok := accesstest.Sign(t, accesstest.RSAKey(t), "RS256", "", claims())
	mustRefuse(t, a, bearer(tok), tok)
	none, err := jwt.NewWithClaims(jwt.SigningMethodNone, claims()).SignedString(jwt.UnsafeAllowNoneSignatureType)
	if err != nil {
		t.Fatal(err)
	}
	mustRefuse(t, a, bearer(none), "")
	der, _ := x509.MarshalPKIXPublicKey(rsaKey.Public())
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
	tok = accesstest.Sign(t, pemBytes, "HS256", "", claims())
	mustRefuse(t, a, bearer(tok), tok)
}

func TestLoadPublicKeysRefusesPrivate(t *testing.T) {
	t.Parallel()
	k := accesstest.ECKey(t)
	der, _ := x509.MarshalPKCS8PrivateKey(k)
	f := t.TempDir() + "/private.pem"
	writeFile(t, f, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}))
	if _, err := access.LoadPublicKeys([]string{f}); err == nil || !strings.Contains(err.Error(), "private key") {
		t.Errorf("LoadPublicKeys(private) = %v", err)
	}
	g := t.TempDir() + "/empty.pem"
	writeFile(t, g, []byte("not PEM"))
	if _, err := access.LoadPublicKeys([]string{g}); err == nil {
		t.Error("LoadPublicKeys accepted a file without PEM")
	}
}

func TestJWKSRotation(t *testing.T) {
	t.Parallel()
	k1, k2 := accesstest.RSAKey(t), accesstest.ECKey(t)
	jwks := accesstest.ServeJWKS(t, map[string]crypto.Signer{"k1": k1})
	a := newAuthorizer(t, access.Config{JWKSURL: jwks.URL, JWKSRefresh: time.Hour})
	mustAllow(t, a, bearer(accesstest.Sign(t, k1, "RS256", "k1", claims())))
	// Without a kid, every key of the set is tried.
	mustAllow(t, a, bearer(accesstest.Sign(t, k1, "RS256", "", claims())))

	// A new key: the first token naming it has the set fetched again.
	jwks.Set(t, map[string]crypto.Signer{"k1": k1, "k2": k2})
	mustAllow(t, a, bearer(accesstest.Sign(t, k2, "ES256", "k2", claims())))

	// Another unknown key id so soon is refused without a fetch.
	fetches := jwks.Fetches()
	tok := accesstest.Sign(t, accesstest.ECKey(t), "ES256", "k3", claims())
	mustRefuse(t, a, bearer(tok), tok)
	if n := jwks.Fetches(); n != fetches {
		t.Errorf("an unknown key id had the set fetched %d times", n-fetches)
	}
	// A token claiming k2 but signed by another key is refused.
	tok = accesstest.Sign(t, k1, "RS256", "k2", claims())
	mustRefuse(t, a, bearer(tok), tok)
}

// TestJWKSRefreshDropsARemovedKey: the set is fetched again in the
// background, so that a key the issuer takes out of it stops verifying
// tokens without a restart (once the tokens verified with it have left the
// cache: each token here is a new one).
func TestJWKSRefreshDropsARemovedKey(t *testing.T) {
	t.Parallel()
	k1, k2 := accesstest.RSAKey(t), accesstest.ECKey(t)
	jwks := accesstest.ServeJWKS(t, map[string]crypto.Signer{"k1": k1})
	a := newAuthorizer(t, access.Config{JWKSURL: jwks.URL, JWKSRefresh: 20 * time.Millisecond})
	signed := func(n int) string {
		c := claims()
		c["jti"] = strconv.Itoa(n) // a token of its own
		return accesstest.Sign(t, k1, "RS256", "k1", c)
	}
	mustAllow(t, a, bearer(signed(0)))
	jwks.Set(t, map[string]crypto.Signer{"k2": k2})
	deadline := time.Now().Add(time.Minute)
	for n := 1; ; n++ {
		if _, err := a.Authorize(bearer(signed(n))); err != nil {
			mustRefuse(t, a, bearer(signed(n)), signed(n))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("a key taken out of the set still verifies tokens after %d fetches", jwks.Fetches())
		}
		time.Sleep(10 * time.Millisecond) // a poll interval: the deadline decides
	}
	mustAllow(t, a, bearer(accesstest.Sign(t, k2, "ES256", "k2", claims())))
}

func TestClaimsChecked(t *testing.T) {
	t.Parallel()
	secret := []byte("secret")
	a := newAuthorizer(t, access.Config{
		HMACSecrets: [][]byte{secret},
		Issuer:      "https://issuer.example",
		Audience:    "eventsproxy",
		Leeway:      5 * time.Second,
	})
	good := func() accesstest.Claims {
		c := claims()
		c["iss"], c["aud"] = "https://issuer.example", []string{"other", "eventsproxy"}
		return c
	}
	p := mustAllow(t, a, bearer(accesstest.Sign(t, secret, "HS256", "", good())))
	if p.Subject != "alice" || time.Until(p.Expiry) < 59*time.Minute {
		t.Errorf("principal %q until %v", p.Subject, p.Expiry)
	}
	// Within the leeway, an expired token and one not valid yet pass.
	c := good()
	c["exp"] = time.Now().Add(-2 * time.Second).Unix()
	c["nbf"] = time.Now().Add(2 * time.Second).Unix()
	mustAllow(t, a, bearer(accesstest.Sign(t, secret, "HS256", "", c)))

	cases := map[string]func(accesstest.Claims){
		"expired":    func(c accesstest.Claims) { c["exp"] = time.Now().Add(-time.Minute).Unix() },
		"not yet":    func(c accesstest.Claims) { c["nbf"] = time.Now().Add(time.Minute).Unix() },
		"no exp":     func(c accesstest.Claims) { delete(c, "exp") },
		"issuer":     func(c accesstest.Claims) { c["iss"] = "https://other.example" },
		"no issuer":  func(c accesstest.Claims) { delete(c, "iss") },
		"audience":   func(c accesstest.Claims) { c["aud"] = "other" },
		"no grants":  func(c accesstest.Claims) { delete(c, "grants") },
		"bad grants": func(c accesstest.Claims) { c["grants"] = "primary.#" },
		"bad pattern": func(c accesstest.Claims) {
			c["grants"] = []map[string]string{{"exchange": "x", "routingKeyPattern": "a#"}}
		},
	}
	for name, change := range cases {
		t.Run(name, func(t *testing.T) {
			c := good()
			change(c)
			tok := accesstest.Sign(t, secret, "HS256", "", c)
			e := mustRefuse(t, a, bearer(tok), tok)
			if e.Expired != (name == "expired") {
				t.Errorf("Expired = %v (%s)", e.Expired, e.Reason)
			}
		})
	}
}

func TestWhereTheTokenIs(t *testing.T) {
	t.Parallel()
	secret := []byte("secret")
	tok := accesstest.Sign(t, secret, "HS256", "", claims())
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}, Cookie: "ep_token"})
	mustAllow(t, a, bearer(tok))

	r := httptest.NewRequest(http.MethodGet, "/c/?bindings=x&access_token="+url.QueryEscape(tok), nil)
	mustAllow(t, a, r)

	r = httptest.NewRequest(http.MethodGet, "/c/", nil)
	r.AddCookie(&http.Cookie{Name: "ep_token", Value: tok})
	mustAllow(t, a, r)

	r = httptest.NewRequest(http.MethodGet, "/c/", nil)
	r.AddCookie(&http.Cookie{Name: "other", Value: tok})
	if _, err := a.Authorize(r); !errors.Is(err, access.ErrNoToken) {
		t.Errorf("another cookie: %v, want ErrNoToken", err)
	}
	// Without a cookie name, cookies are not read.
	b := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}})
	r = httptest.NewRequest(http.MethodGet, "/c/", nil)
	r.AddCookie(&http.Cookie{Name: "ep_token", Value: tok})
	if _, err := b.Authorize(r); !errors.Is(err, access.ErrNoToken) {
		t.Errorf("cookie without --token-cookie: %v, want ErrNoToken", err)
	}
	// Another scheme is refused, not ignored.
	r = httptest.NewRequest(http.MethodGet, "/c/", nil)
	r.Header.Set("Authorization", "Basic "+tok)
	mustRefuse(t, a, r, tok)
	mustRefuse(t, a, bearer("not.a.token"), "")
}

func TestAnonymousGrants(t *testing.T) {
	t.Parallel()
	public, err := access.ParseGrants(`[{"exchange": "exchange/public/", "routingKeyPattern": "#"}]`)
	if err != nil {
		t.Fatal(err)
	}
	secret := []byte("secret")
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}, AnonymousGrants: public})
	p, err := a.Authorize(httptest.NewRequest(http.MethodGet, "/c/", nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Check([]binding.Binding{{Exchange: "exchange/public/x", RoutingKeyPattern: "a.#"}}); err != nil {
		t.Errorf("public binding: %v", err)
	}
	var denied *access.DeniedError
	if err := p.Check([]binding.Binding{granted}); !errors.As(err, &denied) || !denied.Anonymous {
		t.Errorf("private binding without a token: %v", err)
	}
	// A bad token is refused, not taken as none.
	tok := accesstest.Sign(t, []byte("wrong"), "HS256", "", claims())
	mustRefuse(t, a, bearer(tok), tok)
	// A token's grants replace the anonymous ones.
	p = mustAllow(t, a, bearer(accesstest.Sign(t, secret, "HS256", "", claims())))
	if err := p.Check([]binding.Binding{{Exchange: "exchange/public/x", RoutingKeyPattern: "a.#"}}); err == nil {
		t.Error("a token's holder got the anonymous grants too")
	}
}

func TestMaxStreamsPerSubject(t *testing.T) {
	t.Parallel()
	secret := []byte("secret")
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}, MaxStreamsPerSubject: 2})
	alice := accesstest.Sign(t, secret, "HS256", "", claims())
	bob := accesstest.Sign(t, secret, "HS256", "", accesstest.Grants("bob", "exchange/q/v1/", "#"))
	p1 := mustAllow(t, a, bearer(alice))
	p2 := mustAllow(t, a, bearer(alice))
	if _, err := a.Authorize(bearer(alice)); !errors.Is(err, access.ErrTooManyStreams) {
		t.Fatalf("third stream: %v, want ErrTooManyStreams", err)
	}
	mustAllow(t, a, bearer(bob))
	p1.Release()
	p1.Release() // a second release gives nothing back
	p3 := mustAllow(t, a, bearer(alice))
	if _, err := a.Authorize(bearer(alice)); !errors.Is(err, access.ErrTooManyStreams) {
		t.Fatalf("after one release and a new stream: %v, want ErrTooManyStreams", err)
	}
	p2.Release()
	p3.Release()
}

func TestMint(t *testing.T) {
	t.Parallel()
	secret := []byte("secret")
	tok, err := access.Mint(secret, access.Token{
		Grants:   []access.Grant{{Exchange: "exchange/q/v1/", RoutingKeyPattern: "primary.#"}},
		TTL:      time.Hour,
		Subject:  "carol",
		Audience: "eventsproxy",
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}, Audience: "eventsproxy"})
	if p := mustAllow(t, a, bearer(tok)); p.Subject != "carol" {
		t.Errorf("subject %q", p.Subject)
	}
	if _, err := access.Mint(secret, access.Token{TTL: time.Hour, Algorithm: "RS256"}, time.Now()); err == nil {
		t.Error("Mint accepted RS256 with a secret")
	}
	if _, err := access.Mint(secret, access.Token{}, time.Now()); err == nil {
		t.Error("Mint accepted no expiry")
	}
}

func writeFile(t *testing.T, name string, b []byte) {
	t.Helper()
	if err := os.WriteFile(name, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestVerifiedTokenStillExpires: a token verified once is taken from the
// cache the next time, but not once it has expired.
func TestVerifiedTokenStillExpires(t *testing.T) {
	t.Parallel()
	secret := []byte("secret")
	now := time.Now()
	clock := now
	var mu sync.Mutex
	a := newAuthorizer(t, access.Config{HMACSecrets: [][]byte{secret}, Leeway: -1, Now: func() time.Time {
		mu.Lock()
		defer mu.Unlock()
		return clock
	}})
	c := claims()
	c["exp"] = now.Add(10 * time.Second).Unix()
	tok := accesstest.Sign(t, secret, "HS256", "", c)
	mustAllow(t, a, bearer(tok))
	mustAllow(t, a, bearer(tok))
	mu.Lock()
	clock = now.Add(20 * time.Second)
	mu.Unlock()
	if e := mustRefuse(t, a, bearer(tok), tok); !e.Expired {
		t.Errorf("refused, but not as expired: %s", e.Reason)
	}
}
