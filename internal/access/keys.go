package access

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rsa"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"slices"
	"time"

	"github.com/golang-jwt/jwt/v5"
)

// DefaultJWKSRefresh is how often a JWKS is fetched again when Config
// does not say.
const DefaultJWKSRefresh = 15 * time.Minute

// jwksUnknownKeyEvery is the least time between two fetches of the JWKS
// caused by tokens naming a key it does not hold: a new key is then picked
// up at once, and a stream of made-up key ids costs one fetch per period.
const jwksUnknownKeyEvery = 10 * time.Second

// LoadPublicKeys reads RSA, ECDSA and Ed25519 public keys from PEM files
// ("PUBLIC KEY", "RSA PUBLIC KEY" or "CERTIFICATE" blocks; a file may hold
// several). A private key is refused: the service needs only the public
// part, and should never hold more.
func LoadPublicKeys(files []string) ([]crypto.PublicKey, error) {
	var keys []crypto.PublicKey
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, err
		}
		n := 0
		for {
			var block *pem.Block
			block, b = pem.Decode(b)
			if block == nil {
				break
			}
			k, err := publicKey(block)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", f, err)
			}
			keys = append(keys, k)
			n++
		}
		if n == 0 {
			return nil, fmt.Errorf("%s: no PEM public key in it", f)
		}
	}
	return keys, nil
}

func publicKey(block *pem.Block) (crypto.PublicKey, error) {
	var k any
	var err error
	switch block.Type {
	case "PUBLIC KEY":
		k, err = x509.ParsePKIXPublicKey(block.Bytes)
	case "RSA PUBLIC KEY":
		k, err = x509.ParsePKCS1PublicKey(block.Bytes)
	case "CERTIFICATE":
		var c *x509.Certificate
		if c, err = x509.ParseCertificate(block.Bytes); err == nil {
			k = c.PublicKey
		}
	case "PRIVATE KEY", "RSA PRIVATE KEY", "EC PRIVATE KEY", "ENCRYPTED PRIVATE KEY":
		return nil, errors.New("holds a private key; give the public key only (openssl pkey -pubout)")
	default:
		return nil, fmt.Errorf("PEM block %q is not a public key", block.Type)
	}
	if err != nil {
		return nil, err
	}
	switch k.(type) {
	case *rsa.PublicKey, *ecdsa.PublicKey, ed25519.PublicKey:
		return k, nil
	}
	return nil, fmt.Errorf("unsupported public key type %T", k)
}

// defaultAlgorithms returns the algorithms the configured keys are usually
// used with: HS256 for secrets, RS256 for RSA keys, ES256, ES384 or ES512
// by the curve of ECDSA keys, EdDSA for Ed25519 keys, RS256 and ES256 for
// a JWKS.
func defaultAlgorithms(c *Config) []string {
	var algs []string
	add := func(a string) {
		if !slices.Contains(algs, a) {
			algs = append(algs, a)
		}
	}
	if len(c.HMACSecrets) > 0 {
		add("HS256")
	}
	for _, k := range c.PublicKeys {
		switch k := k.(type) {
		case *rsa.PublicKey:
			add("RS256")
		case *ecdsa.PublicKey:
			switch k.Curve {
			case elliptic.P384():
				add("ES384")
			case elliptic.P521():
				add("ES512")
			default:
				add("ES256")
			}
		case ed25519.PublicKey:
			add("EdDSA")
		}
	}
	if c.JWKSURL != "" {
		add("RS256")
		add("ES256")
	}
	return algs
}

// keyring finds the keys that may have signed a token. It is safe for
// concurrent use.
type keyring struct {
	hmac   []jwt.VerificationKey // []byte secrets
	public []jwt.VerificationKey // crypto.PublicKey
	jwks   *jwks                 // nil without a JWKS URL
}

func newKeyring(c *Config) *keyring {
	k := &keyring{}
	for _, s := range c.HMACSecrets {
		k.hmac = append(k.hmac, s)
	}
	for _, p := range c.PublicKeys {
		k.public = append(k.public, p)
	}
	return k
}

// keyfunc gives jwt the keys of the token's kind: the secrets for HMAC,
// the public keys (and the JWKS's key named by kid, or all of them) for
// the others. The algorithm is already one of the configured ones: jwt
// checks it first, and each key is tried only with its own kind of
// algorithm.
func (k *keyring) keyfunc(t *jwt.Token) (any, error) {
	if _, ok := t.Method.(*jwt.SigningMethodHMAC); ok {
		if len(k.hmac) == 0 {
			return nil, errors.New("no HMAC secret configured")
		}
		return jwt.VerificationKeySet{Keys: k.hmac}, nil
	}
	keys := slices.Clone(k.public)
	if k.jwks != nil {
		kid, _ := t.Header["kid"].(string)
		keys = append(keys, k.jwks.keys(t, kid)...)
	}
	if len(keys) == 0 {
		return nil, errors.New("no public key for the token")
	}
	return jwt.VerificationKeySet{Keys: keys}, nil
}
