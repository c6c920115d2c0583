package api

import (
	"net/http"
	"time"
)

// Every route of the API answers GET (and HEAD): a request that carries a
// body, or says it will, is refused at once. net/http would otherwise read
// up to 256 KiB of an unread body after the handler returns, with no
// deadline (the server's ReadTimeout stays zero, since streams live for
// hours), so a GET announcing a body that never comes would hold its
// connection, uncounted, for ever.

// guard applies what every request of the API is held to, then passes the
// request to the routes: a request with a body gets 413 and its
// connection closed without the body being read, and the answer to one
// that is not a stream must be taken within WriteTimeout. A stream moves
// its write deadline itself once it starts.
func (h *Handler) guard(w http.ResponseWriter, r *http.Request) {
	rc := http.NewResponseController(w)
	_ = rc.SetWriteDeadline(time.Now().Add(h.cfg.WriteTimeout))
	if r.ContentLength != 0 { // -1: chunked, or HTTP/2 without END_STREAM
		// Reading what remains of the body fails at once, so net/http
		// closes the connection instead of waiting for it.
		_ = rc.SetReadDeadline(time.Now())
		w.Header().Set("Connection", "close")
		if r.Method == http.MethodGet || r.Method == http.MethodHead {
			writeJSON(w, http.StatusRequestEntityTooLarge, errorBody{
				Code:    "RequestBodyNotAllowed",
				Message: "Requests to this service must not have a body.",
			})
			return
		}
	}
	h.mux.ServeHTTP(w, r)
}

// allowOnlyGet answers requests to pattern (a path, without a method) whose
// method its GET route does not take with 405 and an Allow header, so that
// a known path never answers 404.
func (h *Handler) allowOnlyGet(pattern string) {
	h.mux.HandleFunc(pattern, methodNotAllowed)
}

// methodNotAllowed answers 405 with an Allow header.
func methodNotAllowed(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Allow", "GET, HEAD")
	writeJSON(w, http.StatusMethodNotAllowed, errorBody{
		Code:    "MethodNotAllowed",
		Message: "Only GET and HEAD are allowed on " + r.URL.Path + ".",
	})
}

// connectHead answers HEAD on the connect path with the header a stream
// would get, and nothing else: a HEAD response has no body, so it takes no
// stream slot and no broker binding. A broker that is down gets the 503 a
// GET would get.
func (h *Handler) connectHead(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	if h.shuttingDown() {
		refuse(w, http.StatusServiceUnavailable, "ShuttingDown", textShutdown, 1)
		return
	}
	if !h.broker.Connected() {
		refuse(w, http.StatusServiceUnavailable, "ServiceUnavailable", textUnavailable, 5)
		return
	}
	hdr.Set("Content-Type", "text/event-stream")
	hdr.Set("Cache-Control", "no-cache")
	hdr.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
}
