// Package access decides who may watch what: it finds a stream's token (an
// Authorization: Bearer header, a cookie or an access_token query
// parameter), verifies it as a JWT with configured keys (HMAC secrets, RSA
// or ECDSA public keys from PEM files, a JWKS URL refreshed in the
// background) and configured algorithms only, and checks each requested
// binding against the token's grants: a grant names an exchange (exactly, or
// by a prefix ending in "/") and a routing-key pattern that must include the
// requested one. It also holds each token subject to a number of streams,
// and mints tokens with an HMAC secret.
//
// A nil *Authorizer lets everyone bind anything: access control is off.
package access
