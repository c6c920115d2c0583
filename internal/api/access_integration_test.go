//go:build integration

package api_test

import (
	"crypto"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"eventsproxy/internal/access"
	"eventsproxy/internal/accesstest"
	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/rabbittest"
)

// TestAccessOnRabbitMQ: streams whose tokens are signed with an HMAC
// secret, RSA and ECDSA keys from PEM files, and keys of a JWKS (one added
// while the service runs) get what their grants allow from RabbitMQ, and a
// binding beyond the grants is refused before anything is bound.
func TestAccessOnRabbitMQ(t *testing.T) {
	rsaKey, ecKey, k1, k2 := accesstest.RSAKey(t), accesstest.ECKey(t), accesstest.RSAKey(t), accesstest.ECKey(t)
	keys, err := access.LoadPublicKeys([]string{accesstest.PEMFile(t, rsaKey), accesstest.PEMFile(t, ecKey)})
	if err != nil {
		t.Fatal(err)
	}
	jwks := accesstest.ServeJWKS(t, map[string]crypto.Signer{"k1": k1})
	az, err := access.Open(access.Config{HMACSecrets: [][]byte{secret}, PublicKeys: keys, JWKSURL: jwks.URL},
		slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(az.Close)
	p := startProxy(t, api.Config{Access: az}, broker.Config{})
	conn := rabbittest.Dial(t, "eventsproxy test "+t.Name())
	ch := rabbittest.Channel(t, conn)
	ex := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/v1/access/")
	other := rabbittest.Exchange(t, ch, "exchange/eventsproxy-test/v1/access-other/")
	claims := accesstest.Grants("alice", ex, "primary.#")

	signers := []struct {
		name string
		tok  func() string
	}{
		{"HS256", func() string { return accesstest.Sign(t, secret, "HS256", "", claims) }},
		{"RS256 from PEM", func() string { return accesstest.Sign(t, rsaKey, "RS256", "", claims) }},
		{"ES256 from PEM", func() string { return accesstest.Sign(t, ecKey, "ES256", "", claims) }},
		{"JWKS", func() string { return accesstest.Sign(t, k1, "RS256", "k1", claims) }},
		{"JWKS, a key added", func() string {
			jwks.Set(t, map[string]crypto.Signer{"k1": k1, "k2": k2})
			return accesstest.Sign(t, k2, "ES256", "k2", claims)
		}},
	}
	for i, s := range signers {
		t.Run(s.name, func(t *testing.T) {
			key := "primary.s" + string(rune('a'+i))
			c := openWith(t, p.URL, []binding.Binding{{Exchange: ex, RoutingKeyPattern: key + ".#"}},
				http.Header{"Authorization": {"Bearer " + s.tok()}}, nil)
			c.expect("ready")
			rabbittest.Publish(t, ch, ex, "secondary.x", nil, []byte(`{}`))
			rabbittest.Publish(t, ch, ex, key+".x", nil, []byte(`{}`))
			if m := decodeMessage(t, c.expect("message")); m.RoutingKey != key+".x" {
				t.Fatalf("got %+v", m)
			}
		})
	}

	t.Run("beyond the grants", func(t *testing.T) {
		c := openWith(t, p.URL, []binding.Binding{
			{Exchange: ex, RoutingKeyPattern: "primary.#"},
			{Exchange: other, RoutingKeyPattern: "primary.#"},
		}, http.Header{"Authorization": {"Bearer " + signers[0].tok()}}, nil)
		ev := c.expect("error")
		if !strings.Contains(string(ev.Data), other) {
			t.Fatalf("error %s does not name the binding", ev.Data)
		}
		p.syncBroker(t)
		for _, b := range rabbittest.QueueBindings(t, p.Broker.QueueName()) {
			if b.Source == other {
				t.Fatalf("bound anyway: %v", b)
			}
		}
	})

	t.Run("no token", func(t *testing.T) {
		req, _ := http.NewRequest(http.MethodGet, connectURL(p.URL, bindingsQuery(t, []binding.Binding{{Exchange: ex, RoutingKeyPattern: "#"}})), nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Fatalf("%s %v", resp.Status, resp.Header)
		}
	})
}
