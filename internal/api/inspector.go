package api

import (
	"embed"
	"io/fs"
	"net/http"
)

// inspectorFiles is the inspector page and its assets, served from the
// binary so the page works offline.
//
//go:embed inspector
var inspectorFiles embed.FS

// routeInspector serves the inspector at / and its assets under /inspector/.
func (h *Handler) routeInspector() {
	files, err := fs.Sub(inspectorFiles, "inspector")
	if err != nil {
		panic(err) // the embedded directory is part of the binary
	}
	h.mux.Handle("GET /inspector/", http.StripPrefix("/inspector/", http.FileServerFS(files)))
	h.mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		http.ServeFileFS(w, r, files, "index.html")
	})
}
