package api

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"time"

	clientjs "eventsproxy/clients/js"
)

// clientJSPath is where pages import the client library from.
const clientJSPath = "/api/events/v1/client.js"

// clientJSETag names the embedded library's content, so that a page's
// cached copy is revalidated with a 304 and never outlives a new version.
var clientJSETag = func() string {
	sum := sha256.Sum256(clientjs.Source)
	return `"` + hex.EncodeToString(sum[:8]) + `"`
}()

// clientJS serves the client library: a module script, which a page on
// another origin may import only with CORS.
func (h *Handler) clientJS(w http.ResponseWriter, r *http.Request) {
	hdr := w.Header()
	hdr.Set("Content-Type", "text/javascript; charset=utf-8")
	hdr.Set("Access-Control-Allow-Origin", h.cfg.CORSOrigin)
	hdr.Set("X-Content-Type-Options", "nosniff")
	// A short max-age and an ETag: pages load it from cache, and see a new
	// version within minutes of a deploy.
	hdr.Set("Cache-Control", "public, max-age=300, must-revalidate")
	hdr.Set("ETag", clientJSETag)
	http.ServeContent(w, r, "client.js", time.Time{}, bytes.NewReader(clientjs.Source))
}
