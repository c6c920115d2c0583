package api

import "net/http"

// routePreflight answers CORS preflight requests on the connect paths. A
// page on another origin that sends its token in an Authorization header
// (the client library's fetch transport does) makes the browser ask first
// with OPTIONS; without this answer the browser never sends the GET.
func (h *Handler) routePreflight() {
	for _, path := range []string{"/api/events/v1/connect/{$}", "/api/events/v1/connect"} {
		h.mux.HandleFunc("OPTIONS "+path, h.preflight)
	}
}

func (h *Handler) preflight(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Access-Control-Request-Method") == "" {
		// Not a preflight: an OPTIONS of its own, which GET paths refuse.
		methodNotAllowed(w, r)
		return
	}
	hdr := w.Header()
	hdr.Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	hdr.Set("Access-Control-Allow-Methods", "GET, HEAD")
	// "*" in Access-Control-Allow-Headers never covers Authorization, so
	// the headers are named.
	hdr.Set("Access-Control-Allow-Headers", "Authorization, Last-Event-ID, Cache-Control")
	hdr.Set("Access-Control-Max-Age", "600")
	if h.cfg.CORSOrigin != "*" {
		hdr.Add("Vary", "Origin")
	}
	w.WriteHeader(http.StatusNoContent)
}
