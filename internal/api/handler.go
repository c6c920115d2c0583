package api

import (
	"context"
	_ "embed"
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/metrics"
	"eventsproxy/internal/version"
)

// The defaults of Config.
const (
	DefaultPingInterval = 20 * time.Second
	DefaultWriteTimeout = 30 * time.Second
	DefaultCORSOrigin   = "*"
	DefaultReadyTimeout = 30 * time.Second
)

// Config shapes the HTTP API. Zero values mean the defaults given.
type Config struct {
	// PingInterval is the time between `ping` events; default 20s.
	PingInterval time.Duration
	// WriteTimeout bounds each write to a client; a client that does not
	// take its events within it is dropped. Default 30s.
	WriteTimeout time.Duration
	// CORSOrigin is sent as Access-Control-Allow-Origin; default "*".
	CORSOrigin string
	// CORSCredentials sends Access-Control-Allow-Credentials: true, so that
	// a page on CORSOrigin (which must then be an origin, not "*") may
	// open streams with its cookies.
	CORSCredentials bool
	// Access decides what each stream may bind; nil: anything.
	Access *access.Authorizer
	// Limits bound what a client may ask for.
	Limits binding.Limits
	// MaxConnections caps the open streams (503 beyond); zero: no cap.
	MaxConnections int
	// MaxConnectionsPerIP caps the open streams of one client address
	// (429 beyond); zero: no cap.
	MaxConnectionsPerIP int
	// TrustProxy takes the client address from X-Forwarded-For.
	TrustProxy bool
	// ConnectRate is how many connect requests per second one client
	// address (an IPv6 /64) may make, in bursts of up to ConnectBurst
	// (at least 1); beyond it, 429 with Retry-After. Zero: no limit.
	ConnectRate  float64
	ConnectBurst int
	// ReadyTimeout bounds a stream's wait for its bindings, which the
	// broker's bind rate limit may queue; past it the stream gets the
	// error a broker outage gets. Default DefaultReadyTimeout.
	ReadyTimeout time.Duration
	// Metrics receives the API's figures; nil discards them.
	Metrics *metrics.Metrics
	// MetricsHandler serves GET /metrics; nil serves 404 there.
	MetricsHandler http.Handler
	// ResumeWindow is how long a resumable stream lingers after its
	// client left; negative disables resume (zero: the default).
	ResumeWindow time.Duration
	// ResumeMaxStreams caps the lingering streams; the oldest goes first.
	ResumeMaxStreams int
	// ResumeBytes bounds the sent messages a resumable stream keeps for
	// replay.
	ResumeBytes int
	// Inspector tells the inspector page what fits this server.
	Inspector InspectorConfig
}

// Handler serves the API. It is safe for concurrent use. Shutdown ends
// every open stream.
type Handler struct {
	cfg     Config
	broker  Broker
	log     *slog.Logger
	mux     *http.ServeMux
	started time.Time
	limits  *limits
	// res holds the resumable streams; nil with resume disabled.
	res *resumes
	// connectRates limits connects per address; nil: no limit.
	connectRates *connectRates
	// pace is how often a busy stream writes.
	pace *pacer

	shutdownOnce sync.Once
	shutdown     chan struct{}

	// up is closed once the broker connection is seen back, for the
	// streams that wait for it; nil while none waits. One goroutine
	// looks, for all of them (see brokerUp); none starts once upOver
	// (set by Shutdown, so before Wait).
	upMu   sync.Mutex
	up     chan struct{}
	upOver bool

	// streams counts the goroutines of the streams whose connections the
	// handler took from net/http (HTTP/1.x); ending streamsCtx closes
	// those connections.
	streams     sync.WaitGroup
	streamsCtx  context.Context
	killStreams context.CancelFunc
	// runners run HTTP/1.x streams once they are ready.
	runners *runners
}

// NewHandler returns the API handler; it starts no goroutines.
func NewHandler(cfg Config, b Broker, log *slog.Logger) *Handler {
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = DefaultPingInterval
	}
	if cfg.WriteTimeout <= 0 {
		cfg.WriteTimeout = DefaultWriteTimeout
	}
	if cfg.CORSOrigin == "" {
		cfg.CORSOrigin = DefaultCORSOrigin
	}
	if cfg.Metrics == nil {
		cfg.Metrics = metrics.Discard()
	}
	if cfg.ReadyTimeout <= 0 {
		cfg.ReadyTimeout = DefaultReadyTimeout
	}
	h := &Handler{
		cfg:      cfg,
		broker:   readyBound{b, cfg.ReadyTimeout},
		log:      log.With("component", "api"),
		mux:      http.NewServeMux(),
		started:  time.Now(),
		limits:   newLimits(cfg.MaxConnections, cfg.MaxConnectionsPerIP),
		shutdown: make(chan struct{}),

		connectRates: newConnectRates(cfg.ConnectRate, cfg.ConnectBurst),
		pace:         newPacer(),
	}
	if cfg.ResumeWindow == 0 {
		cfg.ResumeWindow = DefaultResumeWindow
	}
	if cfg.ResumeMaxStreams <= 0 {
		cfg.ResumeMaxStreams = DefaultResumeMaxStreams
	}
	if cfg.ResumeBytes <= 0 {
		cfg.ResumeBytes = DefaultResumeBytes
	}
	h.cfg = cfg
	if cfg.ResumeWindow > 0 {
		h.res = newResumes(cfg.ResumeWindow, cfg.ResumeMaxStreams, cfg.ResumeBytes, cfg.Metrics)
	}
	h.streamsCtx, h.killStreams = context.WithCancel(context.Background())
	h.runners = newRunners(runnerIdle, h.shutdown)
	for _, rt := range h.routes() {
		h.get(rt.path, rt.handler)
	}
	h.mux.HandleFunc("GET /api/events/v1/connect", h.connect)
	h.allowOnlyGet("/api/events/v1/connect")
	h.mux.HandleFunc("HEAD /api/events/v1/connect/{$}", h.connectHead)
	h.mux.HandleFunc("HEAD /api/events/v1/connect", h.connectHead)
	h.routePreflight()
	h.routeInspectorAssets()
	h.allowOnlyGet("/inspector/")
	h.mux.HandleFunc("/", h.notFound)
	return h
}

// route is one GET path of the API and what serves it.
type route struct {
	path    string
	handler http.Handler
}

// routes returns the API's GET paths, each of which the reference
// describes; the inspector's assets under /inspector/ aside.
func (h *Handler) routes() []route {
	rs := []route{
		{"/api/events/v1/connect/", http.HandlerFunc(h.connect)},
		{"/api/events/v1/ping", http.HandlerFunc(h.ping)},
		{"/api/events/v1/reference", http.HandlerFunc(h.reference)},
		{clientJSPath, http.HandlerFunc(h.clientJS)},
		{"/__lbheartbeat__", http.HandlerFunc(h.lbheartbeat)},
		{"/__heartbeat__", http.HandlerFunc(h.heartbeat)},
		{"/__version__", http.HandlerFunc(h.version)},
		{"/", h.inspectorPage()},
	}
	if h.cfg.MetricsHandler != nil {
		rs = append(rs, route{"/metrics", h.cfg.MetricsHandler})
	}
	return rs
}

// get routes GET path (exactly: a trailing slash is not a subtree) to fn.
func (h *Handler) get(path string, fn http.Handler) {
	pattern := "GET " + path
	if strings.HasSuffix(path, "/") {
		pattern += "{$}"
	}
	h.mux.Handle(pattern, fn)
	h.allowOnlyGet(strings.TrimPrefix(pattern, "GET "))
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.guard(w, r)
}

// Shutdown tells every open stream, and every stream that starts from now
// on, to send an `error` event and end. It does not wait for them: the
// http.Server's Shutdown waits for HTTP/2 streams, and Wait for the others.
// It is safe to call more than once.
func (h *Handler) Shutdown() {
	h.shutdownOnce.Do(func() {
		close(h.shutdown)
		h.upMu.Lock()
		h.upOver = true
		h.upMu.Unlock()
		if h.res != nil {
			h.res.close()
		}
	})
}

// Wait waits until the streams that the handler took from net/http (every
// HTTP/1.x stream) have ended; call it after Shutdown and once the
// http.Server stopped taking requests. If ctx ends first, Wait closes the
// connections of the streams still open, waits for them to end and returns
// ctx's error.
func (h *Handler) Wait(ctx context.Context) error {
	done := make(chan struct{})
	go func() {
		h.streams.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		h.killStreams()
		<-done
		return ctx.Err()
	}
}

func (h *Handler) shuttingDown() bool {
	select {
	case <-h.shutdown:
		return true
	default:
		return false
	}
}

func (h *Handler) ping(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"alive":  true,
		"uptime": time.Since(h.started).Seconds(),
	})
}

// referenceJSON is the OpenAPI 3 description of the API.
//
//go:embed reference.json
var referenceJSON []byte

func (h *Handler) reference(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	_, _ = w.Write(referenceJSON)
}

func (h *Handler) version(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, version.Get())
}

func (h *Handler) lbheartbeat(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{})
}

func (h *Handler) heartbeat(w http.ResponseWriter, r *http.Request) {
	if !h.broker.Connected() {
		writeJSON(w, http.StatusServiceUnavailable, map[string]any{"broker": "down"})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"broker": "up"})
}

func (h *Handler) notFound(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusNotFound, errorBody{
		Code:    "ResourceNotFound",
		Message: "No such resource: " + r.URL.Path,
	})
}

// errorBody is the JSON body of a refused request.
type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
