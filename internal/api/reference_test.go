package api

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
)

// TestReferenceDescribesTheRoutes checks the OpenAPI document against the
// routes the handler has, both ways.
func TestReferenceDescribesTheRoutes(t *testing.T) {
	h := NewHandler(Config{MetricsHandler: http.NotFoundHandler()}, nil, slog.New(slog.NewTextHandler(io.Discard, nil)))
	srv := httptest.NewServer(h)
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/api/events/v1/reference")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("reference: %d %v", resp.StatusCode, err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi %q, want 3.x", doc.OpenAPI)
	}
	var documented []string
	for p, ops := range doc.Paths {
		documented = append(documented, p)
		if _, ok := ops["get"]; !ok || len(ops) != 1 {
			t.Errorf("path %s: documented operations %v, want only get", p, ops)
		}
	}
	var routed []string
	for _, rt := range h.routes() {
		routed = append(routed, rt.path)
	}
	slices.Sort(documented)
	slices.Sort(routed)
	if !slices.Equal(documented, routed) {
		t.Fatalf("documented paths %q, routed paths %q", documented, routed)
	}
}

// TestReferenceDocumentsProperties: the reference documents the query
// parameter that opts in to properties, with the one value that does.
func TestReferenceDocumentsProperties(t *testing.T) {
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name, In string
				Schema   struct{ Enum []string }
			}
		}
	}
	if err := json.Unmarshal(referenceJSON, &doc); err != nil {
		t.Fatal(err)
	}
	for _, p := range doc.Paths["/api/events/v1/connect/"]["get"].Parameters {
		if p.Name == propertiesParam && p.In == "query" && slices.Equal(p.Schema.Enum, []string{"1"}) {
			return
		}
	}
	t.Fatalf("the connect request's parameter %q=1 is not in the reference", propertiesParam)
}
