package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
	"eventsproxy/internal/config"
	"eventsproxy/internal/metrics"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Option changes what Run serves.
type Option func(*options)

type options struct {
	routes    map[string]http.Handler
	inspector api.InspectorConfig
}

// WithInspector tells the inspector page what fits the service, as `dev`
// names its generator's exchanges.
func WithInspector(c api.InspectorConfig) Option {
	return func(o *options) { o.inspector = c }
}

// WithRoute serves pattern (an http.ServeMux pattern) with h beside the
// service's own routes, as `dev` does its publish endpoint.
func WithRoute(pattern string, h http.Handler) Option {
	return func(o *options) {
		if o.routes == nil {
			o.routes = map[string]http.Handler{}
		}
		o.routes[pattern] = h
	}
}

// Run serves cfg's service on ln with brokers reached through d, until ctx
// is done; then it drains within cfg.ShutdownTimeout and returns. ready, if
// not nil, is called once the service is serving, with its base URL. Run
// returns nil after a clean drain.
func Run(ctx context.Context, cfg *config.Config, d broker.Dialer, ln net.Listener, log *slog.Logger, ready func(url string), opts ...Option) error {
	var o options
	for _, opt := range opts {
		opt(&o)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	m := metrics.New(reg)
	// broker.Config's zero means its default; the flags' zero means off.
	rebindPeriod, rebindRate := cfg.RebindPeriod, cfg.RebindRate
	if rebindPeriod == 0 {
		rebindPeriod = -1
	}
	if rebindRate == 0 {
		rebindRate = -1
	}
	b := broker.New(d, broker.Config{
		ClientBuffer:      cfg.ClientBuffer,
		ClientBufferBytes: cfg.ClientBufferBytes,
		MaxMessageBytes:   cfg.MaxMessageBytes,
		BindRate:          cfg.BindRate,
		BindBurst:         int(max(1, cfg.BindRate)),
		RebindPeriod:      rebindPeriod,
		RebindRate:        rebindRate,
		Wide:              broker.WidePolicy{Keys: cfg.WideBindKeys, MaxUnwanted: cfg.WideBindMaxUnwanted},
		Metrics:           m,
	}, log)
	az, aerr := openAccess(cfg, log)
	if aerr != nil {
		return aerr
	}
	defer az.Close()
	h := api.NewHandler(api.Config{
		PingInterval:    cfg.PingInterval,
		WriteTimeout:    cfg.WriteTimeout,
		CORSOrigin:      cfg.CORSOrigin,
		CORSCredentials: cfg.TokenCookie != "",
		Access:          az,
		Limits: binding.Limits{
			MaxBindings:      cfg.MaxBindings,
			MaxPatternHashes: cfg.MaxPatternHashes,
			AllowedExchanges: cfg.AllowedExchanges,
		},
		MaxConnections:      cfg.MaxConnections,
		MaxConnectionsPerIP: cfg.MaxConnectionsPerIP,
		TrustProxy:          cfg.TrustProxy,
		ConnectRate:         cfg.ConnectRate,
		ConnectBurst:        cfg.ConnectBurst,
		ReadyTimeout:        cfg.ReadyTimeout,
		ResumeWindow:        resumeWindow(cfg.ResumeWindow),
		ResumeMaxStreams:    cfg.ResumeMaxStreams,
		ResumeBytes:         cfg.ResumeBytes,
		Metrics:             m,
		MetricsHandler:      promhttp.HandlerFor(reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelWarn)}),
		Inspector:           o.inspector,
	}, api.FromBroker(b), log)
	var handler http.Handler = h
	if len(o.routes) > 0 {
		mux := http.NewServeMux()
		mux.Handle("/", h)
		for pattern, rh := range o.routes {
			mux.Handle(pattern, rh)
		}
		handler = mux
	}
	srv := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		MaxHeaderBytes:    256 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}

	brokerCtx, stopBroker := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBroker()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = b.Run(brokerCtx)
	}()
	// Serve once the first broker connection attempt is over, so that a
	// client that connects as soon as we say we are listening is served.
	select {
	case <-b.Attempted():
	case <-ctx.Done():
	}
	if err := b.AttemptErr(); errors.Is(err, broker.ErrLoginRefused) {
		// Retrying cannot mend a wrong user or password: say so and stop,
		// rather than serve nothing but 503s.
		log.Error("the broker refused the login; not starting", "broker", d.String(), "err", err)
		_ = ln.Close()
		return err
	}
	serveErr := make(chan error, 1)
	wg.Add(1)
	scheme := "http"
	if cfg.TLSCert != "" {
		scheme = "https"
	}
	go func() {
		defer wg.Done()
		if scheme == "https" {
			// ServeTLS offers HTTP/2, so a browser is not held to six
			// streams per origin.
			serveErr <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
			return
		}
		serveErr <- srv.Serve(ln)
	}()
	url := scheme + "://" + displayAddr(ln.Addr())
	log.Info("listening", "addr", ln.Addr().String(), "url", url, "root_url", cfg.RootURL, "broker", d.String())
	if ready != nil {
		ready(url)
	}

	var err error
	select {
	case <-ctx.Done():
		log.Info("shutting down", "timeout", cfg.ShutdownTimeout)
	case err = <-serveErr:
		log.Error("serve", "err", err)
	}
	h.Shutdown()
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cfg.ShutdownTimeout)
	defer cancel()
	// Only a stream stuck writing to a client that does not read can still
	// be open at the deadline; it has had its error event queued already.
	if serr := srv.Shutdown(shutdownCtx); serr != nil {
		log.Warn("streams still open at the shutdown deadline; closing them", "err", serr)
		_ = srv.Close()
	}
	if werr := h.Wait(shutdownCtx); werr != nil {
		log.Warn("streams still open at the shutdown deadline; closed them", "err", werr)
	}
	stopBroker()
	wg.Wait()
	log.Info("stopped")
	return err
}

// AMQP returns the dialer of the RabbitMQ that cfg names, for Run; the
// broker sees its connections under name.
func AMQP(cfg *config.Config, name string) broker.Dialer {
	return broker.AMQP(broker.AMQPConfig{
		URL:            cfg.AMQPURL,
		ConnectionName: name,
		QueuePrefix:    cfg.QueuePrefix,
		QueueMaxLength: cfg.QueueMaxLength,
		QueueMaxBytes:  cfg.QueueMaxBytes,
	})
}

// openAccess opens cfg's access control: nil when it is off.
func openAccess(cfg *config.Config, log *slog.Logger) (*access.Authorizer, error) {
	ac, err := cfg.Access()
	if err != nil {
		return nil, err
	}
	az, err := access.Open(ac, log)
	if err != nil {
		return nil, fmt.Errorf("access control: %w", err)
	}
	if az != nil {
		log.Info("access control on", "hmac_secrets", len(ac.HMACSecrets), "public_keys", len(ac.PublicKeys),
			"jwks", ac.JWKSURL != "", "cookie", ac.Cookie, "anonymous_grants", len(ac.AnonymousGrants))
	}
	return az, nil
}

// NewLogger returns the logger cfg asks for, writing to w.
func NewLogger(cfg *config.Config, w io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(cfg.LogLevel))
	opts := &slog.HandlerOptions{Level: level}
	if cfg.LogFormat == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}

// displayAddr returns addr as a person can open it: an unspecified host
// (":8080", "[::]:8080") becomes localhost.
func displayAddr(addr net.Addr) string {
	tcp, ok := addr.(*net.TCPAddr)
	if !ok || !tcp.IP.IsUnspecified() {
		return addr.String()
	}
	return net.JoinHostPort("localhost", strconv.Itoa(tcp.Port))
}

// resumeWindow maps the flag, where 0 disables resume, to api.Config's
// field, where 0 is the default.
func resumeWindow(d time.Duration) time.Duration {
	if d <= 0 {
		return -1
	}
	return d
}
