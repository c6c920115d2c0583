package api

import (
	"errors"
	"net/http"
	"time"

	"eventsproxy/internal/access"
	"eventsproxy/internal/metrics"
)

// textExpired ends a stream whose token expired.
const textExpired = "The token has expired; reconnect with a new one."

// errExpired ends a stream whose token expired.
var errExpired = errors.New("token expired")

// authorize finds and checks r's token. On a refusal it answers (401 with
// WWW-Authenticate, or 429) and returns false; the Principal it returns
// otherwise (nil with access control off) must be released when the
// stream ends. Nothing of the token or the keys goes into the answer or the
// log.
func (h *Handler) authorize(w http.ResponseWriter, r *http.Request) (*access.Principal, bool) {
	p, err := h.cfg.Access.Authorize(r)
	if err == nil {
		return p, true
	}
	m := h.cfg.Metrics
	if errors.Is(err, access.ErrTooManyStreams) {
		m.StreamsRefused.WithLabelValues(metrics.RefusedMaxStreamsPerSubject).Inc()
		refuse(w, http.StatusTooManyRequests, "TooManyStreamsForSubject",
			"Too many open streams for this token's subject; close some or retry later.", 10)
		return nil, false
	}
	m.StreamsRefused.WithLabelValues(metrics.RefusedUnauthorized).Inc()
	challenge := `Bearer realm="eventsproxy"`
	code, text := "AuthenticationRequired", "This service needs a token: an Authorization: Bearer header, a cookie or an access_token query parameter."
	var terr *access.TokenError
	if errors.As(err, &terr) {
		h.log.Debug("token refused", "reason", terr.Reason, "client", h.clientAddr(r))
		code, text = "InvalidToken", "The token is not valid."
		if terr.Expired {
			text = "The token has expired."
		}
		challenge += `, error="invalid_token", error_description="` + text + `"`
	}
	w.Header().Set("WWW-Authenticate", challenge)
	writeJSON(w, http.StatusUnauthorized, errorBody{Code: code, Message: text})
	return nil, false
}

// expiry returns a channel that receives when p's token expires, and a
// function that stops it; nil (never) for a stream without a token.
func expiry(p *access.Principal) (<-chan time.Time, func()) {
	if p == nil || p.Expiry.IsZero() {
		return nil, func() {}
	}
	t := time.NewTimer(time.Until(p.Expiry))
	return t.C, func() { t.Stop() }
}
