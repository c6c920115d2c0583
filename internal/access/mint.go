package access

import (
	"errors"
	"fmt"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// Token describes a token to mint.
type Token struct {
	// Grants are what the token allows to bind.
	Grants []Grant
	// TTL is how long the token is valid from now; it must be positive.
	TTL time.Duration
	// Subject, Issuer and Audience go into sub, iss and aud when not empty.
	Subject, Issuer, Audience string
	// Algorithm is HS256 (default), HS384 or HS512.
	Algorithm string
	// GrantsClaim names the grants' claim; default DefaultGrantsClaim.
	GrantsClaim string
}

// Mint signs t with secret, for operators and tests; now is the time of
// issue.
func Mint(secret []byte, t Token, now time.Time) (string, error) {
	if len(secret) == 0 {
		return "", errors.New("no secret")
	}
	if t.TTL <= 0 {
		return "", errors.New("the expiry must be positive")
	}
	if _, err := CompileGrants(t.Grants); err != nil {
		return "", err
	}
	alg := t.Algorithm
	if alg == "" {
		alg = "HS256"
	}
	m, ok := jwt.GetSigningMethod(alg).(*jwt.SigningMethodHMAC)
	if !ok {
		return "", fmt.Errorf("algorithm %q is not HS256, HS384 or HS512", alg)
	}
	name := t.GrantsClaim
	if name == "" {
		name = DefaultGrantsClaim
	}
	grants := t.Grants
	if grants == nil {
		grants = []Grant{}
	}
	c := jwt.MapClaims{
		name:  grants,
		"iat": now.Unix(),
		"exp": now.Add(t.TTL).Unix(),
	}
	if t.Subject != "" {
		c["sub"] = t.Subject
	}
	if t.Issuer != "" {
		c["iss"] = t.Issuer
	}
	if t.Audience != "" {
		c["aud"] = t.Audience
	}
	return jwt.NewWithClaims(m, c).SignedString(secret)
}
