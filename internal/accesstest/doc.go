// Package accesstest makes signing keys, signed tokens, PEM files and a
// JWKS served on 127.0.0.1, for tests of access control.
package accesstest
