package config

import (
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"eventsproxy/internal/access"
)

// minSecretBytes is the shortest HMAC secret accepted: HS256's own size.
const minSecretBytes = 32

// Access returns the access-control configuration of c: its PEM files
// read and its anonymous grants compiled. It is not enabled when c gives no
// key and no anonymous grants.
func (c *Config) Access() (access.Config, error) {
	ac := access.Config{
		JWKSURL:              c.TokenJWKSURL,
		JWKSRefresh:          c.TokenJWKSRefresh,
		Algorithms:           c.TokenAlgorithms,
		Issuer:               c.TokenIssuer,
		Audience:             c.TokenAudience,
		Leeway:               c.TokenLeeway,
		Cookie:               c.TokenCookie,
		GrantsClaim:          c.TokenGrantsClaim,
		MaxStreamsPerSubject: c.MaxStreamsPerSubject,
	}
	if c.TokenLeeway == 0 {
		ac.Leeway = -1 // zero asked for: none, not the default
	}
	for _, s := range c.TokenSecrets {
		ac.HMACSecrets = append(ac.HMACSecrets, []byte(s))
	}
	var errs []error
	if len(c.TokenPublicKeys) > 0 {
		keys, err := access.LoadPublicKeys(c.TokenPublicKeys)
		if err != nil {
			errs = append(errs, fmt.Errorf("--token-public-keys: %w", err))
		}
		ac.PublicKeys = keys
	}
	if c.AnonymousGrants != "" {
		gs, err := access.ParseGrants(c.AnonymousGrants)
		if err != nil {
			errs = append(errs, fmt.Errorf("--anonymous-grants: %w", err))
		}
		ac.AnonymousGrants = gs
	}
	return ac, errors.Join(errs...)
}

// validateAccess reports the problems of c's access-control settings.
func (c *Config) validateAccess() []error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }
	ac, err := c.Access()
	if err != nil {
		errs = append(errs, err)
	}
	for i, s := range c.TokenSecrets {
		if len(s) < minSecretBytes {
			bad("--token-secrets: secret %d is %d bytes; use at least %d random bytes (openssl rand -base64 32)", i+1, len(s), minSecretBytes)
		}
	}
	if c.TokenJWKSURL != "" {
		if u, err := url.Parse(c.TokenJWKSURL); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			bad("--token-jwks-url %q is not an http:// or https:// URL", c.TokenJWKSURL)
		}
	}
	if c.TokenJWKSRefresh < 10*time.Second {
		bad("--token-jwks-refresh %v is below 10s", c.TokenJWKSRefresh)
	}
	for _, a := range c.TokenAlgorithms {
		if a == "none" || jwt.GetSigningMethod(a) == nil {
			bad("--token-algorithms: %q is not a JWT signing algorithm (HS256, RS256, ES256, PS256, EdDSA, ...)", a)
		}
	}
	hasKey := len(c.TokenSecrets) > 0 || len(c.TokenPublicKeys) > 0 || c.TokenJWKSURL != ""
	if len(c.TokenAlgorithms) > 0 && !hasKey {
		bad("--token-algorithms needs a key: --token-secrets, --token-public-keys or --token-jwks-url")
	}
	if c.TokenLeeway < 0 {
		bad("--token-leeway %v must not be negative", c.TokenLeeway)
	}
	if c.TokenGrantsClaim == "" {
		bad("--token-grants-claim must not be empty")
	} else if slices.Contains([]string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti"}, c.TokenGrantsClaim) {
		bad("--token-grants-claim %q is a registered claim", c.TokenGrantsClaim)
	}
	if c.MaxStreamsPerSubject < 0 {
		bad("--max-streams-per-subject %d must not be negative", c.MaxStreamsPerSubject)
	}
	if !ac.Enabled() {
		for _, f := range []struct {
			set  bool
			name string
		}{
			{c.TokenCookie != "", "--token-cookie"},
			{c.TokenIssuer != "", "--token-issuer"},
			{c.TokenAudience != "", "--token-audience"},
			{c.MaxStreamsPerSubject > 0, "--max-streams-per-subject"},
		} {
			if f.set {
				bad("%s needs a key: --token-secrets, --token-public-keys or --token-jwks-url", f.name)
			}
		}
	}
	if c.TokenCookie != "" {
		if c.CORSOrigin == "*" {
			bad("--token-cookie needs --cors-origin to name the page's origin (like https://app.example), not *: browsers send cookies across origins only to a server that names their origin and allows credentials")
		}
		if !validCookieName(c.TokenCookie) {
			bad("--token-cookie %q is not a cookie name", c.TokenCookie)
		}
	}
	return errs
}

// validCookieName reports whether s is an RFC 6265 cookie name (a token).
func validCookieName(s string) bool {
	for _, r := range s {
		if r <= ' ' || r >= 0x7f || strings.ContainsRune(`()<>@,;:\\"/[]?={}`, r) {
			return false
		}
	}
	return s != ""
}
