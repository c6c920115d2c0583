package accesstest

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/MicahParks/jwkset"
	"github.com/golang-jwt/jwt/v5"
)

// RSAKey returns a new 2048-bit RSA key.
func RSAKey(t testing.TB) *rsa.PrivateKey {
	t.Helper()
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// ECKey returns a new P-256 ECDSA key.
func ECKey(t testing.TB) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// Claims are the claims of a test token: grants for the first n minutes,
// by default.
type Claims = jwt.MapClaims

// Grants returns claims granting the given exchange/pattern pairs for an
// hour to subject sub.
func Grants(sub string, pairs ...string) Claims {
	var gs []map[string]string
	for i := 0; i+1 < len(pairs); i += 2 {
		gs = append(gs, map[string]string{"exchange": pairs[i], "routingKeyPattern": pairs[i+1]})
	}
	c := Claims{"grants": gs, "exp": time.Now().Add(time.Hour).Unix()}
	if sub != "" {
		c["sub"] = sub
	}
	return c
}

// Sign signs claims with key (a []byte secret, *rsa.PrivateKey or
// *ecdsa.PrivateKey) with algorithm alg, naming kid in the header when it
// is not empty.
func Sign(t testing.TB, key any, alg, kid string, claims Claims) string {
	t.Helper()
	tok := jwt.NewWithClaims(jwt.GetSigningMethod(alg), claims)
	if kid != "" {
		tok.Header["kid"] = kid
	}
	s, err := tok.SignedString(key)
	if err != nil {
		t.Fatalf("sign %s: %v", alg, err)
	}
	return s
}

// PEMFile writes the public part of key (a crypto.Signer) to a PEM file in
// a test's temporary directory and returns its name.
func PEMFile(t testing.TB, key crypto.Signer) string {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "public.pem")
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// JWKS serves a JSON Web Key Set on 127.0.0.1 until the test ends. Its
// keys can be changed at any time.
type JWKS struct {
	URL string

	mu      sync.Mutex
	body    []byte
	fetches atomic.Int64
}

// ServeJWKS starts serving the public parts of keys, named by kids.
func ServeJWKS(t testing.TB, keys map[string]crypto.Signer) *JWKS {
	t.Helper()
	j := &JWKS{}
	j.Set(t, keys)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		b := j.body
		j.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write(b)
	}))
	t.Cleanup(srv.Close)
	j.URL = srv.URL + "/.well-known/jwks.json"
	return j
}

// Set replaces the served keys.
func (j *JWKS) Set(t testing.TB, keys map[string]crypto.Signer) {
	t.Helper()
	var set jwkset.JWKSMarshal
	for kid, k := range keys {
		jwk, err := jwkset.NewJWKFromKey(k.Public(), jwkset.JWKOptions{Metadata: jwkset.JWKMetadataOptions{KID: kid}})
		if err != nil {
			t.Fatal(err)
		}
		set.Keys = append(set.Keys, jwk.Marshal())
	}
	b, err := json.Marshal(set)
	if err != nil {
		t.Fatal(err)
	}
	j.mu.Lock()
	j.body = b
	j.mu.Unlock()
}

// Fetches returns how many times the set was fetched.
func (j *JWKS) Fetches() int64 { return j.fetches.Load() }
