package api

import (
	"embed"
	"io/fs"
	"net/http"
	"strings"
)

// inspectorFiles is the inspector page and its assets, served from the
// binary so the page works offline.
//
//go:embed inspector
var inspectorFiles embed.FS

// inspectorDir is the inspector's files at the root.
func inspectorDir() fs.FS {
	files, err := fs.Sub(inspectorFiles, "inspector")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	return files
}

// inspectorPage serves the inspector's page, at /.
func (h *Handler) inspectorPage() http.Handler {
	return inspectorHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, inspectorDir(), "index.html")
	}))
}

// routeInspectorAssets serves the inspector's assets under /inspector/.
func (h *Handler) routeInspectorAssets() {
	assets := http.StripPrefix("/inspector/", http.FileServerFS(inspectorDir()))
	h.mux.Handle("GET /inspector/", inspectorHeaders(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// Files only: no directory listing.
		if strings.HasSuffix(r.URL.Path, "/") {
			h.notFound(w, r)
			return
		}
		assets.ServeHTTP(w, r)
	})))
	h.mux.Handle("GET /inspector/config.json", inspectorHeaders(http.HandlerFunc(h.inspectorSettings)))
}

// inspectorPolicy lets the page load only its own files and connect only
// to its own origin. The page puts payloads, which are untrusted, in the
// DOM as text; should one ever become markup, it could still neither run
// script nor send anything elsewhere.
const inspectorPolicy = "default-src 'self'; img-src 'self' data:; object-src 'none'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// inspectorHeaders adds the inspector's security headers to next's answers.
func inspectorHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hdr := w.Header()
		hdr.Set("Content-Security-Policy", inspectorPolicy)
		hdr.Set("X-Content-Type-Options", "nosniff")
		hdr.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
