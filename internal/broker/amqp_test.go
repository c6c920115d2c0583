package broker

import (
	"context"
	"crypto/tls"
	"io"
	"net/url"
	"testing"
	"time"

	amqp "github.com/rabbitmq/amqp091-go"

	"eventsproxy/internal/testcert"
)

// TestAMQPSpeaksTLSUnderTheClient checks that for an amqps URL the dialer
// does the TLS handshake itself, verifying the broker with the URL's
// cacertfile, and that the AMQP client then speaks AMQP inside it (not TLS
// again): the first bytes the broker reads are AMQP's protocol header.
func TestAMQPSpeaksTLSUnderTheClient(t *testing.T) {
	t.Parallel()
	certFile, keyFile, _ := testcert.Write(t)
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{cert}})
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	header := make(chan []byte, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		b := make([]byte, 8)
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, b); err != nil {
			b = []byte(err.Error())
		}
		header <- b
	}()
	u := "amqps://guest:guest@" + ln.Addr().String() + "/?cacertfile=" + url.QueryEscape(certFile)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := AMQP(AMQPConfig{URL: u}).Dial(ctx); err == nil {
		t.Fatal("Dial succeeded against a listener that is no broker")
	}
	select {
	case got := <-header:
		if want := "AMQP\x00\x00\x09\x01"; string(got) != want {
			t.Fatalf("the broker read %q through TLS, want AMQP's header %q", got, want)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no connection reached the listener")
	}
}

func TestTLSConfigFor(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct{ url, serverName string }{
		{"amqps://pulse.mozilla.org/", "pulse.mozilla.org"},
		{"amqps://10.0.0.1:5671/?server_name_indication=pulse.mozilla.org", "pulse.mozilla.org"},
	} {
		u, err := amqp.ParseURI(tc.url)
		if err != nil {
			t.Fatal(err)
		}
		cfg, err := tlsConfigFor(u)
		if err != nil {
			t.Fatal(err)
		}
		if cfg.ServerName != tc.serverName || cfg.RootCAs != nil || cfg.MinVersion != tls.VersionTLS12 {
			t.Fatalf("%s: ServerName %q, RootCAs %v, MinVersion %x; want %q, the system's roots, TLS 1.2", tc.url, cfg.ServerName, cfg.RootCAs, cfg.MinVersion, tc.serverName)
		}
	}
	u, err := amqp.ParseURI("amqps://h/?cacertfile=/nonexistent")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tlsConfigFor(u); err == nil {
		t.Fatal("a missing cacertfile was accepted")
	}
}
