package config

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const secret32 = "0123456789abcdef0123456789abcdef"

func TestAccessOffByDefault(t *testing.T) {
	t.Parallel()
	c, err := Load(Serve, []string{"--amqp-url", "amqp://h"}, env(nil))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := c.Access()
	if err != nil || ac.Enabled() {
		t.Fatalf("Access() = %+v, %v; want it off", ac, err)
	}
}

func TestAccessLoads(t *testing.T) {
	t.Parallel()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalPKIXPublicKey(k.Public())
	pub := filepath.Join(t.TempDir(), "pub.pem")
	if err := os.WriteFile(pub, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	c, err := Load(Serve, []string{
		"--amqp-url", "amqp://h",
		"--token-public-keys", pub,
		"--token-cookie", "ep_token",
		"--cors-origin", "https://app.example",
		"--anonymous-grants", `[{"exchange": "exchange/public/", "routingKeyPattern": "#"}]`,
		"--max-streams-per-subject", "3",
	}, env(map[string]string{"TOKEN_SECRETS": secret32 + ", " + secret32 + "x", "TOKEN_ALGORITHMS": "HS256,ES256"}))
	if err != nil {
		t.Fatal(err)
	}
	ac, err := c.Access()
	if err != nil {
		t.Fatal(err)
	}
	if !ac.Enabled() || len(ac.HMACSecrets) != 2 || len(ac.PublicKeys) != 1 || len(ac.AnonymousGrants) != 1 ||
		ac.Cookie != "ep_token" || ac.MaxStreamsPerSubject != 3 || len(ac.Algorithms) != 2 || ac.GrantsClaim != "grants" {
		t.Fatalf("Access() = %+v", ac)
	}
}

func TestAccessRefused(t *testing.T) {
	t.Parallel()
	private := filepath.Join(t.TempDir(), "private.pem")
	if err := os.WriteFile(private, []byte("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		args []string
		want string
	}{
		{"cookie with any origin", []string{"--token-secrets", secret32, "--token-cookie", "t"}, "--token-cookie needs --cors-origin to name"},
		{"short secret", []string{"--token-secrets", "hunter2"}, "use at least 32"},
		{"algorithm", []string{"--token-secrets", secret32, "--token-algorithms", "none"}, `"none" is not`},
		{"grants", []string{"--anonymous-grants", `[{"exchange": "x", "routingKeyPattern": "a#"}]`}, "--anonymous-grants"},
		{"private key", []string{"--token-public-keys", private}, "private key"},
		{"missing file", []string{"--token-public-keys", "/nonexistent.pem"}, "--token-public-keys"},
		{"jwks url", []string{"--token-jwks-url", "ftp://x"}, "--token-jwks-url"},
		{"cookie without keys", []string{"--token-cookie", "t", "--cors-origin", "https://a.example"}, "--token-cookie needs a key"},
		{"cookie name", []string{"--token-secrets", secret32, "--token-cookie", "a b", "--cors-origin", "https://a.example"}, "is not a cookie name"},
		{"grants claim", []string{"--token-secrets", secret32, "--token-grants-claim", "sub"}, "registered claim"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			_, err := Load(Serve, append([]string{"--amqp-url", "amqp://h"}, tc.args...), env(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("got %v, want an error with %q", err, tc.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the secret: %v", err)
			}
		})
	}
}
