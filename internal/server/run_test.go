package server_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/goleak"

	"eventsproxy/internal/config"
	"eventsproxy/internal/membroker"
	"eventsproxy/internal/server"
	"eventsproxy/internal/sse"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m)
}

// run starts the service on an in-process broker with args (dev's flags)
// and returns its URL; it stops at the end of the test.
func run(t *testing.T, mb *membroker.Broker, args ...string) string {
	t.Helper()
	cfg, err := config.Load(config.Dev, append([]string{"--listen", "127.0.0.1:0"}, args...), func(string) string { return "" }, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan string, 1)
	done := make(chan error, 1)
	go func() {
		done <- server.Run(ctx, cfg, mb, ln, slog.New(slog.NewTextHandler(io.Discard, nil)), func(u string) { ready <- u })
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("server.Run: %v", err)
		}
	})
	select {
	case u := <-ready:
		return u
	case err := <-done:
		t.Fatalf("server.Run ended: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("server not ready within 10s")
	}
	return ""
}

// TestHTTP2OverTLS serves with --tls-cert/--tls-key and streams to Go's
// HTTP/2 client.
func TestHTTP2OverTLS(t *testing.T) {
	certFile, keyFile, pool := selfSigned(t)
	mb := membroker.New()
	mb.DeclareExchange("x")
	u := run(t, mb, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(u, "https://") {
		t.Fatalf("URL %q, want https", u)
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}, ForceAttemptHTTP2: true}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u+"/api/events/v1/connect/?bindings="+url.QueryEscape(`{"bindings":[{"exchange":"x","routingKeyPattern":"#"}]}`), nil)
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.ProtoMajor != 2 || resp.StatusCode != http.StatusOK {
		t.Fatalf("got %s %d, want HTTP/2 200", resp.Proto, resp.StatusCode)
	}
	r := sse.NewReader(resp.Body)
	if ev, err := r.Next(); err != nil || ev.Kind != "ready" {
		t.Fatalf("first event %q (%v)", ev.Kind, err)
	}
	if err := mb.Publish("x", "a.b", nil, []byte(`{"over":"h2"}`)); err != nil {
		t.Fatal(err)
	}
	if ev, err := r.Next(); err != nil || ev.Kind != "message" || !strings.Contains(string(ev.Data), `"payload":{"over":"h2"}`) {
		t.Fatalf("got %q %s (%v)", ev.Kind, ev.Data, err)
	}
}

// TestOversizedRequestRefused checks that headers beyond the limit (a
// bindings query of 300 KiB) are refused before any handler runs.
func TestOversizedRequestRefused(t *testing.T) {
	u := run(t, membroker.New())
	resp, err := http.Get(u + "/api/events/v1/connect/?bindings=" + strings.Repeat("a", 300<<10))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d, want 431", resp.StatusCode)
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key to files and
// returns them with a pool that trusts the certificate.
func selfSigned(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "eventsproxy test"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	pool = x509.NewCertPool()
	pool.AddCert(cert)
	return certFile, keyFile, pool
}
