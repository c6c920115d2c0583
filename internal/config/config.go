package config

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/api"
	"eventsproxy/internal/binding"
	"eventsproxy/internal/broker"
)

// Config is the configuration of `eventsproxy serve`.
type Config struct {
	// Listen is the address to serve HTTP on; default ":8080".
	Listen string
	// AMQPURL is the broker's amqp:// or amqps:// URL, or a comma-separated
	// list of the URLs of a RabbitMQ cluster's nodes. Required; when unset
	// it is built from PULSE_USERNAME, PULSE_PASSWORD, PULSE_HOSTNAME and
	// PULSE_VHOST as the original service did.
	AMQPURL string
	// RootURL is the public root URL of the deployment, e.g.
	// https://tc.example.com; it is only shown in logs and documents.
	RootURL string
	// PingInterval is the time between `ping` events; default
	// api.DefaultPingInterval (20s).
	PingInterval time.Duration
	// WriteTimeout bounds each write to a client; default
	// api.DefaultWriteTimeout (30s).
	WriteTimeout time.Duration
	// ShutdownTimeout bounds the drain on SIGTERM; default 10s.
	ShutdownTimeout time.Duration
	// MaxBindings is the most bindings one stream may ask for; default
	// binding.DefaultMaxBindings (64).
	MaxBindings int
	// MaxPatternHashes is the most # words a pattern may hold once runs of
	// wildcards are collapsed; default binding.DefaultMaxPatternHashes.
	MaxPatternHashes int
	// ClientBuffer is how many messages each stream buffers before the
	// oldest is dropped; default broker.DefaultClientBuffer (1000).
	ClientBuffer int
	// ClientBufferBytes is how many bytes of messages each stream buffers
	// before the oldest are dropped; default broker.DefaultClientBufferBytes
	// (8 MiB).
	ClientBufferBytes int
	// MaxMessageBytes is the largest message body delivered; larger ones
	// are dropped, and the streams they match told so. Default
	// broker.DefaultMaxMessageBytes (4 MiB).
	MaxMessageBytes int
	// AllowedExchanges are exchange-name prefixes; empty allows every
	// exchange but RabbitMQ's internal ones (binding.InternalPrefix).
	AllowedExchanges []string
	// CORSOrigin is sent as Access-Control-Allow-Origin; default "*".
	CORSOrigin string
	// QueuePrefix starts the name of the process's queue; default
	// "queue/<AMQP user>/eventsproxy/" as Pulse requires.
	QueuePrefix string
	// QueueMaxLength caps the messages waiting in the process's queue;
	// default 10000, 0 means no cap.
	QueueMaxLength int
	// QueueMaxBytes caps the bytes waiting in the process's queue; default
	// 64 MiB, 0 means no cap.
	QueueMaxBytes int
	// LogFormat is "text" (default) or "json".
	LogFormat string
	// LogLevel is "debug", "info" (default), "warn" or "error".
	LogLevel string
	// MaxConnections caps the open streams of the process; beyond it new
	// streams are refused with 503. Default 20000, 0 means no cap.
	MaxConnections int
	// MaxConnectionsPerIP caps the open streams of one client address;
	// beyond it new streams are refused with 429. Default 0: no cap.
	MaxConnectionsPerIP int
	// ConnectRate is how many connect requests per second one client
	// address (an IPv6 /64) may make, in bursts of ConnectBurst; beyond it
	// 429. Default 0: no limit. ConnectBurst defaults to 10.
	ConnectRate  float64
	ConnectBurst int
	// BindRate caps the broker binds and unbinds per second of the
	// process, in bursts of one second's worth; default
	// broker.DefaultBindRate, 0 means no cap.
	BindRate float64
	// RebindPeriod is how often each binding held is bound again, which
	// restores one that the broker lost (an exchange deleted and declared
	// again), at most RebindRate re-binds per second; defaults
	// broker.DefaultRebindPeriod and broker.DefaultRebindRate. A zero
	// period turns re-binding off, a zero rate lifts its cap.
	RebindPeriod time.Duration
	RebindRate   float64
	// WideBindKeys is how many patterns of one exchange (held by its
	// streams, or needing binds within a second) make the process bind
	// that exchange wide (primary.# or #) and serve them in process;
	// default broker.DefaultWideKeys, 0 never. WideBindMaxUnwanted is the
	// messages per second a wide binding may bring for no stream before it
	// is narrowed again; default broker.DefaultWideMaxUnwanted, 0 no limit.
	WideBindKeys        int
	WideBindMaxUnwanted float64
	// ResumeWindow is how long a resumable stream lingers after its
	// client left; 0 disables resume. ResumeMaxStreams caps the lingering
	// streams, ResumeBytes the sent messages each keeps for replay.
	ResumeWindow     time.Duration
	ResumeMaxStreams int
	ResumeBytes      int
	// ReadyTimeout bounds a stream's wait for `ready`; default 30s.
	ReadyTimeout time.Duration
	// TrustProxy takes the client address from X-Forwarded-For (its last
	// entry, the one the proxy added) instead of the socket. Default false.
	TrustProxy bool
	// TLSCert and TLSKey, both set, serve HTTPS (and so HTTP/2) with that
	// certificate and key; both empty (the default) serve plain HTTP.
	TLSCert, TLSKey string
	// Access control is off unless a token key or AnonymousGrants is set.
	// TokenSecrets are HMAC secrets (all accepted, for rotation);
	// TokenPublicKeys are PEM files of RSA, ECDSA or Ed25519 public keys;
	// TokenJWKSURL is a JWKS fetched every TokenJWKSRefresh (default
	// access.DefaultJWKSRefresh). TokenAlgorithms are the accepted "alg"
	// values (default: those usual for the keys). TokenIssuer and
	// TokenAudience, when set, must match iss and aud. TokenLeeway is the
	// clock skew allowed (default access.DefaultLeeway). TokenCookie names
	// a cookie that may carry the token (default none). TokenGrantsClaim
	// names the grants' claim (default access.DefaultGrantsClaim).
	TokenSecrets     []string
	TokenPublicKeys  []string
	TokenJWKSURL     string
	TokenJWKSRefresh time.Duration
	TokenAlgorithms  []string
	TokenIssuer      string
	TokenAudience    string
	TokenLeeway      time.Duration
	TokenCookie      string
	TokenGrantsClaim string
	// AnonymousGrants is a JSON list of grants for streams without a
	// token; empty: with access control on, a stream needs a token.
	AnonymousGrants string
	// MaxStreamsPerSubject caps the open streams of one token subject;
	// default 0: no cap.
	MaxStreamsPerSubject int
	// DevRate is how many messages per second `dev` mode's generator
	// publishes; default 3, 0 means none. Only for `dev`.
	DevRate float64
}

// Command names the subcommand a Config is for.
type Command string

// The commands that take a Config.
const (
	Serve Command = "serve" // the service, against RabbitMQ
	Dev   Command = "dev"   // the service on an in-process broker
)

// flagSpec ties a flag to its environment variable.
type flagSpec struct {
	name, env string
}

// Load parses args (without the command name) and the environment read
// through getenv into a validated Config for cmd. Flags win over environment
// variables. It returns flag.ErrHelp when args ask for help (Help(cmd) is
// the text to print), an error about the first flag it does not know, and
// otherwise an error listing every problem, one a line. Load writes
// nothing.
func Load(cmd Command, args []string, getenv func(string) string) (*Config, error) {
	c := &Config{}
	var allowed string
	p := &problems{}
	fs, specs := flagSet(cmd, c, &allowed, p)

	// Environment first, so that the command line overrides it.
	for _, s := range specs {
		if v := getenv(s.env); v != "" {
			p.env = s.env
			if err := fs.Set(s.name, v); err != nil {
				p.add(fmt.Errorf("environment %s=%q: %w", s.env, v, err))
			}
			p.env = ""
		}
	}
	if cmd == Serve && getenv("LISTEN") == "" {
		if port := getenv("PORT"); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				p.add(fmt.Errorf("environment PORT=%q is not a port number (1 to 65535)", port))
			} else {
				c.Listen = ":" + port
			}
		}
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil, err
		}
		return nil, &FlagError{msg: flagError(err)}
	}
	if fs.NArg() > 0 {
		p.add(fmt.Errorf("unexpected arguments: %q (every value needs its flag)", fs.Args()))
	}
	if cmd == Serve && c.AMQPURL == "" {
		c.AMQPURL = pulseURL(getenv)
	}
	for _, pre := range strings.Split(allowed, ",") {
		if pre = strings.TrimSpace(pre); pre != "" {
			c.AllowedExchanges = append(c.AllowedExchanges, pre)
		}
	}
	if cmd == Serve && c.QueuePrefix == "" {
		c.QueuePrefix = defaultQueuePrefix(c.AMQPURL)
	}
	if err := c.Validate(cmd); err != nil {
		p.add(fromEnvironment(err, specs, p.onCommandLine, getenv))
	}
	if err := errors.Join(p.list...); err != nil {
		return nil, err
	}
	return c, nil
}

// fromEnvironment names the variable in each of Validate's problems with a
// flag that was set by its environment variable alone ("--listen (from
// LISTEN) ..."), so that the reader knows where to look.
func fromEnvironment(err error, specs []flagSpec, onCommandLine map[string]bool, getenv func(string) string) error {
	joined, ok := err.(interface{ Unwrap() []error })
	if !ok {
		return err
	}
	var out []error
	for _, e := range joined.Unwrap() {
		msg := e.Error()
		for _, s := range specs {
			if rest, ok := strings.CutPrefix(msg, "--"+s.name+" "); ok && !onCommandLine[s.name] && getenv(s.env) != "" {
				e = fmt.Errorf("--%s (from %s) %s", s.name, s.env, rest)
				break
			}
		}
		out = append(out, e)
	}
	return errors.Join(out...)
}

// FlagError is a command line that could not be parsed at all, such as an
// unknown flag. Its text is one line.
type FlagError struct{ msg string }

func (e *FlagError) Error() string { return e.msg }

// flagError rewrites the flag package's texts in the -- style of our help.
func flagError(err error) string {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return "unknown flag --" + strings.TrimPrefix(name, "-")
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return "flag --" + strings.TrimPrefix(name, "-") + " needs a value"
	}
	return msg
}

// flagSet defines cmd's flags on a new FlagSet, storing into c (and the
// raw --allowed-exchanges into allowed), and returns it with each flag's
// environment variable, in the order Help lists them. A value that cannot
// be set is reported to p.
func flagSet(cmd Command, c *Config, allowed *string, p *problems) (*flag.FlagSet, []flagSpec) {
	fs := flag.NewFlagSet("eventsproxy "+string(cmd), flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {}
	var specs []flagSpec
	define := func(v flag.Value, name, env, usage string) {
		fs.Var(checked{Value: v, name: name, p: p}, name, usage)
		specs = append(specs, flagSpec{name, env})
	}
	str := func(ptr *string, name, env, def, usage string) {
		*ptr = def
		define((*stringValue)(ptr), name, env, usage)
	}
	dur := func(ptr *time.Duration, name, env string, def time.Duration, usage string) {
		*ptr = def
		define(durationValue{ptr}, name, env, usage)
	}
	num := func(ptr *int, name, env string, def int, usage string) {
		*ptr = def
		define(intValue{ptr}, name, env, usage)
	}
	float := func(ptr *float64, name, env string, def float64, usage string) {
		*ptr = def
		define(floatValue{ptr}, name, env, usage)
	}
	boolean := func(ptr *bool, name, env string, usage string) {
		define(boolValue{ptr}, name, env, usage)
	}
	if cmd == Dev {
		str(&c.Listen, "listen", "LISTEN", "127.0.0.1:8080", "`address` to serve HTTP on")
		float(&c.DevRate, "rate", "DEV_RATE", 3, "messages per second the generator publishes; 0 for none")
	} else {
		str(&c.Listen, "listen", "LISTEN", ":8080", "`address` to serve HTTP on; PORT alone is honoured too")
		str(&c.AMQPURL, "amqp-url", "AMQP_URL", "", "broker `URL`, amqp:// or amqps://, or the URLs of a cluster's nodes separated by commas; built from PULSE_USERNAME, PULSE_PASSWORD, PULSE_HOSTNAME, PULSE_VHOST when unset")
		str(&c.QueuePrefix, "queue-prefix", "QUEUE_PREFIX", "", "start of the process's queue name; when unset, queue/<AMQP user>/eventsproxy/ as Pulse requires")
		num(&c.QueueMaxLength, "queue-max-length", "QUEUE_MAX_LENGTH", 10000, "most messages waiting in the process's queue; 0 for no cap")
		num(&c.QueueMaxBytes, "queue-max-bytes", "QUEUE_MAX_BYTES", 64<<20, "most bytes waiting in the process's queue; 0 for no cap")
	}
	str(&c.RootURL, "root-url", "TASKCLUSTER_ROOT_URL", "", "public root `URL` of the deployment")
	dur(&c.PingInterval, "ping-interval", "PING_INTERVAL", api.DefaultPingInterval, "time between ping events")
	dur(&c.WriteTimeout, "write-timeout", "WRITE_TIMEOUT", api.DefaultWriteTimeout, "time a client has to take each write before it is dropped")
	dur(&c.ShutdownTimeout, "shutdown-timeout", "SHUTDOWN_TIMEOUT", 10*time.Second, "longest drain on SIGTERM")
	num(&c.MaxBindings, "max-bindings", "MAX_BINDINGS", binding.DefaultMaxBindings, "most bindings one stream may ask for")
	num(&c.MaxPatternHashes, "max-pattern-hashes", "MAX_PATTERN_HASHES", binding.DefaultMaxPatternHashes, "most # words a routing-key pattern may hold, runs of wildcards such as #.*.# counting once")
	num(&c.ClientBuffer, "client-buffer", "CLIENT_BUFFER", broker.DefaultClientBuffer, "messages buffered per stream before the oldest is dropped")
	num(&c.ClientBufferBytes, "client-buffer-bytes", "CLIENT_BUFFER_BYTES", broker.DefaultClientBufferBytes, "bytes of messages buffered per stream before the oldest are dropped")
	num(&c.MaxMessageBytes, "max-message-bytes", "MAX_MESSAGE_BYTES", broker.DefaultMaxMessageBytes, "largest message body delivered; a larger one is dropped, and the streams it matches get overflow")
	str(allowed, "allowed-exchanges", "ALLOWED_EXCHANGES", "", "comma-separated exchange-name `prefixes`; empty allows all but RabbitMQ's internal amq.rabbitmq.* (which only a prefix starting with amq.rabbitmq. allows)")
	str(&c.CORSOrigin, "cors-origin", "CORS_ORIGIN", api.DefaultCORSOrigin, "Access-Control-Allow-Origin of streams")
	num(&c.MaxConnections, "max-connections", "MAX_CONNECTIONS", 20000, "most open streams; beyond it new ones get 503; 0 for no cap")
	num(&c.MaxConnectionsPerIP, "max-connections-per-ip", "MAX_CONNECTIONS_PER_IP", 0, "most open streams of one client address; beyond it new ones get 429; 0 for no cap")
	float(&c.ConnectRate, "connect-rate", "CONNECT_RATE", 0, "connect requests per second one client address (IPv6: its /64) may make; beyond it 429; 0 for no limit")
	num(&c.ConnectBurst, "connect-burst", "CONNECT_BURST", 10, "connect requests one address may make at once before --connect-rate applies")
	float(&c.BindRate, "bind-rate", "BIND_RATE", broker.DefaultBindRate, "broker binds and unbinds per second for all streams together; new streams wait for ready; 0 for no cap")
	dur(&c.RebindPeriod, "rebind-period", "REBIND_PERIOD", broker.DefaultRebindPeriod, "each binding held is bound again this often, which restores one the broker lost; 0 turns it off")
	float(&c.RebindRate, "rebind-rate", "REBIND_RATE", broker.DefaultRebindRate, "most re-binds per second (--rebind-period); 0 for no cap")
	num(&c.WideBindKeys, "wide-bind-keys", "WIDE_BIND_KEYS", broker.DefaultWideKeys, "patterns of one exchange (held at once, or new within a second) at which it is bound wide (primary.# or #) and matched in process; 0 never")
	float(&c.WideBindMaxUnwanted, "wide-bind-max-unwanted", "WIDE_BIND_MAX_UNWANTED", broker.DefaultWideMaxUnwanted, "messages per second a wide binding may bring for no stream before the exchange is narrowed again; 0 for no limit")
	dur(&c.ReadyTimeout, "ready-timeout", "READY_TIMEOUT", api.DefaultReadyTimeout, "longest a stream waits for its bindings before it gets an error")
	dur(&c.ResumeWindow, "resume-window", "RESUME_WINDOW", api.DefaultResumeWindow, "how long a resumable stream (resume=1) lingers for its client to reconnect; 0 disables resume")
	num(&c.ResumeMaxStreams, "resume-max-streams", "RESUME_MAX_STREAMS", api.DefaultResumeMaxStreams, "most lingering resumable streams; beyond it the oldest goes")
	num(&c.ResumeBytes, "resume-bytes", "RESUME_BYTES", api.DefaultResumeBytes, "bytes of sent messages a resumable stream keeps for replay")
	boolean(&c.TrustProxy, "trust-proxy", "TRUST_PROXY", "take the client address from the last X-Forwarded-For entry; only behind a proxy that sets that header")
	str(&c.TLSCert, "tls-cert", "TLS_CERT", "", "certificate `file` (PEM) to serve HTTPS and HTTP/2 with; needs --tls-key")
	str(&c.TLSKey, "tls-key", "TLS_KEY", "", "private key `file` (PEM) for --tls-cert")
	list := func(ptr *[]string, name, env, usage string) {
		define((*listValue)(ptr), name, env, usage)
	}
	list(&c.TokenSecrets, "token-secrets", "TOKEN_SECRETS", "comma-separated HMAC `secrets` that tokens may be signed with (at least 32 bytes each; prefer the environment)")
	list(&c.TokenPublicKeys, "token-public-keys", "TOKEN_PUBLIC_KEYS", "comma-separated PEM `files` of RSA, ECDSA or Ed25519 public keys that tokens may be signed with")
	str(&c.TokenJWKSURL, "token-jwks-url", "TOKEN_JWKS_URL", "", "`URL` of a JSON Web Key Set that tokens may be signed with")
	dur(&c.TokenJWKSRefresh, "token-jwks-refresh", "TOKEN_JWKS_REFRESH", access.DefaultJWKSRefresh, "time between fetches of the JWKS")
	list(&c.TokenAlgorithms, "token-algorithms", "TOKEN_ALGORITHMS", "comma-separated accepted token `algorithms` (default: HS256, RS256, ES256/384/512 or EdDSA, by the keys given)")
	str(&c.TokenIssuer, "token-issuer", "TOKEN_ISSUER", "", "required `iss` of tokens")
	str(&c.TokenAudience, "token-audience", "TOKEN_AUDIENCE", "", "required `aud` of tokens")
	dur(&c.TokenLeeway, "token-leeway", "TOKEN_LEEWAY", access.DefaultLeeway, "clock skew allowed on a token's exp and nbf")
	str(&c.TokenCookie, "token-cookie", "TOKEN_COOKIE", "", "`name` of a cookie that may carry the token (needs a named --cors-origin)")
	str(&c.TokenGrantsClaim, "token-grants-claim", "TOKEN_GRANTS_CLAIM", access.DefaultGrantsClaim, "`claim` of a token that lists its grants")
	str(&c.AnonymousGrants, "anonymous-grants", "ANONYMOUS_GRANTS", "", "JSON list of `grants` [{exchange, routingKeyPattern}] for streams without a token")
	num(&c.MaxStreamsPerSubject, "max-streams-per-subject", "MAX_STREAMS_PER_SUBJECT", 0, "most open streams of one token subject (sub); beyond it new ones get 429; 0 for no cap")
	str(&c.LogFormat, "log-format", "LOG_FORMAT", "text", "log format: text or json")
	str(&c.LogLevel, "log-level", "LOG_LEVEL", "info", "log level: debug, info, warn or error")

	return fs, specs
}

// pulseURL builds the broker URL from the original service's variables, as
// Taskcluster's Pulse library does; "" when PULSE_HOSTNAME is unset.
func pulseURL(getenv func(string) string) string {
	host := getenv("PULSE_HOSTNAME")
	if host == "" {
		return ""
	}
	u := url.URL{
		Scheme: "amqps",
		Host:   net.JoinHostPort(host, "5671"),
		Path:   "/" + getenv("PULSE_VHOST"),
	}
	if user := getenv("PULSE_USERNAME"); user != "" {
		u.User = url.UserPassword(user, getenv("PULSE_PASSWORD"))
	}
	return u.String()
}

func defaultQueuePrefix(amqpURL string) string {
	u, err := url.Parse(broker.SplitURLs(amqpURL)[0])
	if err != nil || u.User == nil || u.User.Username() == "" {
		return "eventsproxy/"
	}
	return "queue/" + u.User.Username() + "/eventsproxy/"
}

// didYouMean suggests an amqp:// URL for s, which lacks the scheme, when
// it looks like host:port or a bare host: ", e.g. amqp://localhost:5674/".
func didYouMean(s string) string {
	if strings.Contains(s, "://") {
		return ""
	}
	s = redact(s)
	if !strings.Contains(s, "/") {
		s += "/"
	}
	return ", e.g. amqp://" + s
}

// redact returns the URL s as typed, with what could be a password
// replaced by xxxxx: whatever follows the first ':' of the part before
// the last '@'. Unlike url.URL.Redacted it also hides the password of a
// URL without a scheme, user:password@host, in which url.Parse sees none.
func redact(s string) string {
	at := strings.LastIndex(s, "@")
	if at < 0 {
		return s
	}
	start := 0
	if i := strings.Index(s[:at], "://"); i >= 0 {
		start = i + len("://")
	}
	colon := strings.Index(s[start:at], ":")
	if colon < 0 {
		return s
	}
	return s[:start+colon+1] + "xxxxx" + s[at:]
}

// validateAMQPURLs returns the problems of list, a broker URL or a
// comma-separated list of a cluster's nodes' URLs.
func validateAMQPURLs(list string) []error {
	var errs []error
	urls := broker.SplitURLs(list)
	users := map[string]bool{}
	for i, raw := range urls {
		flag := "--amqp-url"
		if len(urls) > 1 {
			flag = fmt.Sprintf("--amqp-url's URL %d of %d", i+1, len(urls))
		}
		bad := func(format string, args ...any) {
			errs = append(errs, fmt.Errorf(flag+" "+format, args...))
		}
		switch u, err := url.Parse(raw); {
		case raw == "":
			bad("is empty; separate the nodes' URLs with single commas")
		case err != nil:
			bad("is not a URL; write it like amqp://user:password@host:5672/vhost")
		case u.Scheme != "amqp" && u.Scheme != "amqps":
			bad("%q must start with amqp:// or amqps://%s", redact(raw), didYouMean(raw))
		case u.Host == "":
			bad("%q has no host", redact(raw))
		default:
			users[u.User.Username()] = true
		}
	}
	if len(users) > 1 {
		// The queue's name starts with the user's (Pulse's rule), and a
		// cluster's nodes share their users.
		errs = append(errs, fmt.Errorf("--amqp-url lists URLs of %d different users; a cluster's nodes take the same one", len(users)))
	}
	return errs
}

// Validate reports every problem of c, as a Config for cmd, at once; nil
// when c is usable.
func (c *Config) Validate(cmd Command) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	if c.Listen == "" {
		bad("--listen must not be empty")
	} else if _, port, err := net.SplitHostPort(c.Listen); err != nil {
		bad("--listen %q is not host:port, e.g. 127.0.0.1:8080 or :8080", c.Listen)
	} else if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		bad("--listen %q: the port %q is not a number from 0 to 65535", c.Listen, port)
	}
	switch {
	case cmd == Dev:
		if c.DevRate < 0 || c.DevRate > 10000 {
			bad("--rate %v must be between 0 and 10000", c.DevRate)
		}
	case c.AMQPURL == "":
		bad("--amqp-url (or AMQP_URL, or PULSE_HOSTNAME) is required")
	default:
		errs = append(errs, validateAMQPURLs(c.AMQPURL)...)
	}
	if c.RootURL != "" {
		if u, err := url.Parse(c.RootURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("--root-url %q is not an http:// or https:// URL", c.RootURL)
		}
	}
	if c.PingInterval < time.Second {
		bad("--ping-interval %v is below 1s", c.PingInterval)
	}
	if c.WriteTimeout < 100*time.Millisecond {
		bad("--write-timeout %v is below 100ms", c.WriteTimeout)
	}
	if c.ShutdownTimeout <= 0 {
		bad("--shutdown-timeout %v must be positive", c.ShutdownTimeout)
	}
	if c.MaxBindings < 1 {
		bad("--max-bindings %d must be at least 1", c.MaxBindings)
	}
	if c.MaxPatternHashes < 1 {
		bad("--max-pattern-hashes %d must be at least 1", c.MaxPatternHashes)
	}
	if c.ClientBuffer < 1 {
		bad("--client-buffer %d must be at least 1", c.ClientBuffer)
	}
	if c.ClientBufferBytes < 1 {
		bad("--client-buffer-bytes %d must be at least 1", c.ClientBufferBytes)
	}
	if c.MaxMessageBytes < 1 {
		bad("--max-message-bytes %d must be at least 1", c.MaxMessageBytes)
	}
	if c.CORSOrigin == "" || strings.ContainsAny(c.CORSOrigin, "\r\n") {
		bad("--cors-origin must be a single non-empty header value")
	}
	if c.QueueMaxLength < 0 {
		bad("--queue-max-length %d must not be negative", c.QueueMaxLength)
	}
	if c.QueueMaxBytes < 0 {
		bad("--queue-max-bytes %d must not be negative", c.QueueMaxBytes)
	}
	if c.MaxConnections < 0 {
		bad("--max-connections %d must not be negative", c.MaxConnections)
	}
	if c.MaxConnectionsPerIP < 0 {
		bad("--max-connections-per-ip %d must not be negative", c.MaxConnectionsPerIP)
	}
	if c.MaxConnections > 0 && c.MaxConnectionsPerIP > c.MaxConnections {
		bad("--max-connections-per-ip %d is above --max-connections %d", c.MaxConnectionsPerIP, c.MaxConnections)
	}
	if c.ConnectRate < 0 {
		bad("--connect-rate %v must not be negative", c.ConnectRate)
	}
	if c.ConnectBurst < 1 {
		bad("--connect-burst %d must be at least 1", c.ConnectBurst)
	}
	if c.WideBindKeys < 0 {
		bad("--wide-bind-keys %d must not be negative", c.WideBindKeys)
	}
	if c.WideBindMaxUnwanted < 0 {
		bad("--wide-bind-max-unwanted %v must not be negative", c.WideBindMaxUnwanted)
	}
	if c.BindRate < 0 {
		bad("--bind-rate %v must not be negative", c.BindRate)
	}
	if c.RebindPeriod != 0 && c.RebindPeriod < time.Second {
		bad("--rebind-period %v is below 1s (0 turns re-binding off)", c.RebindPeriod)
	}
	if c.RebindRate < 0 {
		bad("--rebind-rate %v must not be negative", c.RebindRate)
	}
	if c.ReadyTimeout < time.Second {
		bad("--ready-timeout %v is below 1s", c.ReadyTimeout)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		bad("--tls-cert and --tls-key go together")
	}
	if c.LogFormat != "text" && c.LogFormat != "json" {
		bad("--log-format %q must be text or json", c.LogFormat)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		bad("--log-level %q must be debug, info, warn or error", c.LogLevel)
	}
	errs = append(errs, c.validateAccess()...)
	return errors.Join(errs...)
}

// listValue is a comma-separated flag; setting it again replaces it, so
// that a flag wins over its environment variable.
type listValue []string

func (l *listValue) String() string { return strings.Join(*l, ",") }

func (l *listValue) Set(s string) error {
	*l = nil
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			*l = append(*l, v)
		}
	}
	return nil
}
