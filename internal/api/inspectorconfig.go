package api

import "net/http"

// InspectorConfig tells the inspector page what fits the server it runs on.
type InspectorConfig struct {
	// Dev says that the server runs on `dev`'s in-process broker.
	Dev bool
	// Exchanges are exchanges that the page suggests, such as the ones
	// that dev's generator publishes on; nil suggests none.
	Exchanges []string
}

// inspectorConfig is the JSON the page reads at start.
type inspectorConfig struct {
	Dev bool `json:"dev"`
	// Exchanges are suggested exchanges, AllowedExchanges the prefixes
	// that --allowed-exchanges allows ([] allows every exchange).
	Exchanges        []string `json:"exchanges"`
	AllowedExchanges []string `json:"allowedExchanges"`
	// Tokens says whether streams present tokens: "required", "optional"
	// (beside anonymous grants), or "" with access control off.
	Tokens string `json:"tokens"`
}

// inspectorSettings serves the page's InspectorConfig, the server's
// allowed exchange prefixes and whether it takes tokens.
func (h *Handler) inspectorSettings(w http.ResponseWriter, r *http.Request) {
	tokens := ""
	switch {
	case h.cfg.Access == nil:
	case h.cfg.Access.AllowsAnonymous():
		tokens = "optional"
	default:
		tokens = "required"
	}
	writeJSON(w, http.StatusOK, inspectorConfig{
		Tokens:           tokens,
		Dev:              h.cfg.Inspector.Dev,
		Exchanges:        append([]string{}, h.cfg.Inspector.Exchanges...),
		AllowedExchanges: append([]string{}, h.cfg.Limits.AllowedExchanges...),
	})
}
