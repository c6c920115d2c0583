package access

import (
	"net/http"
	"strings"
)

// QueryParameter is the query parameter that may carry a token (RFC 6750
// §2.3), for clients that can set neither a header nor a cookie. Whatever
// logs or counts requests must leave it out.
const QueryParameter = "access_token"

// errMalformed is an Authorization header that is not "Bearer <token>".
type malformedError struct{}

func (malformedError) Error() string { return "the Authorization header is not Bearer" }

// extract returns the request's token: from the Authorization header, else
// the access_token query parameter, else the cookie named cookie (when
// cookie is not empty). It returns "" when there is none; an Authorization
// header of another scheme is an error, so that a client that meant to
// send a token hears that it was not taken.
func extract(r *http.Request, cookie string) (string, error) {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, ok := strings.Cut(strings.TrimSpace(h), " ")
		if !ok || !strings.EqualFold(scheme, "Bearer") || strings.TrimSpace(tok) == "" {
			return "", malformedError{}
		}
		return strings.TrimSpace(tok), nil
	}
	if r.URL.RawQuery != "" && strings.Contains(r.URL.RawQuery, QueryParameter) {
		if tok := r.URL.Query().Get(QueryParameter); tok != "" {
			return tok, nil
		}
	}
	if cookie != "" {
		if c, err := r.Cookie(cookie); err == nil && c.Value != "" {
			return c.Value, nil
		}
	}
	return "", nil
}
