package access

import (
	"context"
	"crypto"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"eventsproxy/internal/binding"
)

// DefaultGrantsClaim is the claim that holds a token's grants.
const DefaultGrantsClaim = "grants"

// DefaultLeeway is the clock skew allowed on exp and nbf.
const DefaultLeeway = 30 * time.Second

// Config says which tokens are accepted and what streams without one may
// bind. Access control is on when it has a key or anonymous grants.
type Config struct {
	// HMACSecrets verify HS256/384/512 tokens; several allow rotation: a
	// token signed with any of them is accepted.
	HMACSecrets [][]byte
	// PublicKeys verify RSA, ECDSA and Ed25519 tokens (LoadPublicKeys).
	PublicKeys []crypto.PublicKey
	// JWKSURL is a JSON Web Key Set fetched at start and every
	// JWKSRefresh (default DefaultJWKSRefresh), and at once when a token
	// names a key id the set lacks.
	JWKSURL     string
	JWKSRefresh time.Duration
	// HTTPClient fetches the JWKS; nil uses http.DefaultClient.
	HTTPClient *http.Client
	// Algorithms are the accepted "alg" values; the token's own header is
	// never trusted beyond them. Empty: those usual for the configured
	// keys (HS256, RS256, ES256/384/512 by curve, EdDSA).
	Algorithms []string
	// Issuer and Audience, when not empty, must be the token's iss and one
	// of its aud.
	Issuer, Audience string
	// Leeway is the clock skew allowed on exp and nbf; default
	// DefaultLeeway, negative for none.
	Leeway time.Duration
	// Cookie is the name of a cookie that may carry the token; empty: none.
	Cookie string
	// GrantsClaim names the claim that holds the grants; default
	// DefaultGrantsClaim.
	GrantsClaim string
	// AnonymousGrants is what a stream without a token may bind; nil: a
	// stream needs a token.
	AnonymousGrants Grants
	// MaxStreamsPerSubject caps the open streams of one token subject
	// (sub); zero: no cap.
	MaxStreamsPerSubject int
	// Now is the clock tokens are checked by; nil: time.Now. For tests.
	Now func() time.Time
}

// Enabled reports whether c turns access control on.
func (c *Config) Enabled() bool {
	return len(c.HMACSecrets) > 0 || len(c.PublicKeys) > 0 || c.JWKSURL != "" || c.AnonymousGrants != nil
}

// Errors of Authorize; api turns them into answers.
var (
	// ErrNoToken: the request has no token and anonymous streams are not
	// allowed.
	ErrNoToken = errors.New("no token")
	// ErrTooManyStreams: the token's subject has MaxStreamsPerSubject
	// streams open.
	ErrTooManyStreams = errors.New("too many streams for the token's subject")
)

// TokenError is a token that was refused. Reason is for the log; it holds
// neither the token nor the keys. Expired says whether the token was
// otherwise good but past its exp.
type TokenError struct {
	Reason  string
	Expired bool
}

func (e *TokenError) Error() string { return "invalid token: " + e.Reason }

// Authorizer checks the tokens of connect requests. It is safe for
// concurrent use; a nil *Authorizer lets every stream bind anything.
type Authorizer struct {
	cfg    Config
	keys   *keyring
	parser *jwt.Parser
	log    *slog.Logger
	cancel context.CancelFunc
	done   chan struct{} // closed when the JWKS refresh has stopped

	cache verifiedCache

	mu        sync.Mutex
	bySubject map[string]int
}

// Open makes the Authorizer of cfg, or returns nil when cfg does not turn
// access control on. With a JWKS URL it fetches the set before it returns
// (a failure is logged: tokens signed with its keys are refused until a
// fetch works) and keeps it fresh in a goroutine of its own until Close.
func Open(cfg Config, log *slog.Logger) (*Authorizer, error) {
	if !cfg.Enabled() {
		return nil, nil
	}
	if cfg.GrantsClaim == "" {
		cfg.GrantsClaim = DefaultGrantsClaim
	}
	if cfg.Leeway == 0 {
		cfg.Leeway = DefaultLeeway
	} else if cfg.Leeway < 0 {
		cfg.Leeway = 0
	}
	if len(cfg.Algorithms) == 0 {
		cfg.Algorithms = defaultAlgorithms(&cfg)
	}
	log = log.With("component", "access")
	keys := newKeyring(&cfg)
	opts := []jwt.ParserOption{
		jwt.WithValidMethods(cfg.Algorithms),
		jwt.WithLeeway(cfg.Leeway),
		jwt.WithExpirationRequired(),
	}
	if cfg.Now != nil {
		opts = append(opts, jwt.WithTimeFunc(cfg.Now))
	}
	if cfg.Issuer != "" {
		opts = append(opts, jwt.WithIssuer(cfg.Issuer))
	}
	if cfg.Audience != "" {
		opts = append(opts, jwt.WithAudience(cfg.Audience))
	}
	ctx, cancel := context.WithCancel(context.Background())
	a := &Authorizer{
		cfg:       cfg,
		keys:      keys,
		parser:    jwt.NewParser(opts...),
		log:       log,
		cancel:    cancel,
		done:      make(chan struct{}),
		bySubject: make(map[string]int),
	}
	if cfg.JWKSURL == "" {
		close(a.done)
		return a, nil
	}
	keys.jwks = newJWKS(cfg.JWKSURL, cfg.HTTPClient, log)
	keys.jwks.refresh(ctx)
	refresh := cfg.JWKSRefresh
	if refresh <= 0 {
		refresh = DefaultJWKSRefresh
	}
	go func() {
		defer close(a.done)
		keys.jwks.run(ctx, refresh)
	}()
	return a, nil
}

// AllowsAnonymous reports whether a stream without a token may bind
// anything: access control is off (a is nil), or it has anonymous grants.
func (a *Authorizer) AllowsAnonymous() bool {
	return a == nil || a.cfg.AnonymousGrants != nil
}

// Close stops the JWKS refresh and waits for it. It is safe on a nil
// Authorizer, and to call more than once.
func (a *Authorizer) Close() {
	if a != nil {
		a.cancel()
		<-a.done
	}
}

// Principal is whom a stream is for: a token's subject and grants, or an
// anonymous stream's grants. The nil *Principal, given when access control
// is off, may bind anything. A Principal is used by one stream.
type Principal struct {
	// Subject is the token's sub; "" for an anonymous stream.
	Subject string
	// Expiry is when the token expires (the leeway added); zero when
	// the stream has no token.
	Expiry time.Time

	grants    Grants
	anonymous bool
	release   func()
}

// Check returns a *DeniedError for the first of bs that p may not bind.
func (p *Principal) Check(bs []binding.Binding) error {
	if p == nil {
		return nil
	}
	return p.grants.Check(bs, p.anonymous)
}

// Release gives back the subject's stream slot; call it once, when the
// stream ends. It is safe on a nil Principal.
func (p *Principal) Release() {
	if p != nil && p.release != nil {
		p.release()
		p.release = nil
	}
}

// claims are a token's claims: the registered ones and the grants.
type claims struct {
	jwt.RegisteredClaims
	grants json.RawMessage
	name   string
}

func (c *claims) UnmarshalJSON(b []byte) error {
	if err := json.Unmarshal(b, &c.RegisteredClaims); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	c.grants = all[c.name]
	return nil
}

// Authorize finds and verifies r's token. It returns the stream's
// Principal (nil when a is nil), or ErrNoToken, a *TokenError or
// ErrTooManyStreams. The Principal must be released when the stream ends.
func (a *Authorizer) Authorize(r *http.Request) (*Principal, error) {
	if a == nil {
		return nil, nil
	}
	tok, err := extract(r, a.cfg.Cookie)
	if err != nil {
		return nil, &TokenError{Reason: err.Error()}
	}
	if tok == "" {
		if a.cfg.AnonymousGrants == nil {
			return nil, ErrNoToken
		}
		return &Principal{grants: a.cfg.AnonymousGrants, anonymous: true}, nil
	}
	v, err := a.verify(tok)
	if err != nil {
		return nil, err
	}
	p := &Principal{Subject: v.subject, Expiry: v.expiry, grants: v.grants}
	if a.cfg.MaxStreamsPerSubject > 0 && p.Subject != "" {
		if !a.acquire(p.Subject) {
			return nil, ErrTooManyStreams
		}
		sub := p.Subject
		p.release = func() { a.releaseSubject(sub) }
	}
	return p, nil
}

// verify returns what tok grants, from the cache when it was verified
// lately.
func (a *Authorizer) verify(tok string) (*verified, error) {
	now := a.now()
	if v := a.cache.get(tok, now); v != nil {
		return v, nil
	}
	c := &claims{name: a.cfg.GrantsClaim}
	if _, err := a.parser.ParseWithClaims(tok, c, a.keys.keyfunc); err != nil {
		return nil, &TokenError{Reason: reason(err), Expired: errors.Is(err, jwt.ErrTokenExpired)}
	}
	if len(c.grants) == 0 {
		return nil, &TokenError{Reason: fmt.Sprintf("no %q claim", a.cfg.GrantsClaim)}
	}
	raw, err := decodeGrants(c.grants)
	if err != nil {
		return nil, &TokenError{Reason: err.Error()}
	}
	grants, err := CompileGrants(raw)
	if err != nil {
		return nil, &TokenError{Reason: err.Error()}
	}
	v := &verified{
		subject: c.Subject,
		expiry:  c.ExpiresAt.Add(a.cfg.Leeway),
		grants:  grants,
		until:   now.Add(verifiedFor),
	}
	if c.NotBefore != nil {
		v.notYet = c.NotBefore.Add(-a.cfg.Leeway)
	}
	a.cache.put(tok, v)
	return v, nil
}

func (a *Authorizer) now() time.Time {
	if a.cfg.Now != nil {
		return a.cfg.Now()
	}
	return time.Now()
}

// reason says why jwt refused a token, in words that hold nothing of the
// token or the keys.
func reason(err error) string {
	for _, e := range []error{
		jwt.ErrTokenMalformed, jwt.ErrTokenSignatureInvalid, jwt.ErrTokenUnverifiable,
		jwt.ErrTokenExpired, jwt.ErrTokenNotValidYet, jwt.ErrTokenRequiredClaimMissing,
		jwt.ErrTokenInvalidIssuer, jwt.ErrTokenInvalidAudience, jwt.ErrTokenUsedBeforeIssued,
	} {
		if errors.Is(err, e) {
			return e.Error()
		}
	}
	return "token is invalid"
}

func (a *Authorizer) acquire(sub string) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.bySubject[sub] >= a.cfg.MaxStreamsPerSubject {
		return false
	}
	a.bySubject[sub]++
	return true
}

func (a *Authorizer) releaseSubject(sub string) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if n := a.bySubject[sub] - 1; n > 0 {
		a.bySubject[sub] = n
	} else {
		delete(a.bySubject, sub)
	}
}
