package access

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"eventsproxy/internal/binding"
	"eventsproxy/internal/topic"
)

// Grant allows a stream to bind Exchange (exactly, or every exchange it
// starts, when it ends with "/") with any pattern that RoutingKeyPattern
// includes. It is what a token's grants claim and --anonymous-grants list.
type Grant struct {
	Exchange          string `json:"exchange"`
	RoutingKeyPattern string `json:"routingKeyPattern"`
}

// Grants is a compiled list of grants. It is immutable, so any number of
// goroutines may use it at once. The nil Grants allows nothing.
type Grants []compiledGrant

type compiledGrant struct {
	exchange string
	prefix   bool // exchange ends with "/": it names every exchange it starts
	pattern  *topic.Pattern
}

// CompileGrants checks and compiles gs.
func CompileGrants(gs []Grant) (Grants, error) {
	out := make(Grants, 0, len(gs))
	for i, g := range gs {
		if g.Exchange == "" {
			return nil, fmt.Errorf("grant %d: exchange is empty", i)
		}
		p, err := topic.Compile(g.RoutingKeyPattern)
		if err != nil {
			return nil, fmt.Errorf("grant %d: %w", i, err)
		}
		out = append(out, compiledGrant{
			exchange: g.Exchange,
			prefix:   strings.HasSuffix(g.Exchange, "/"),
			pattern:  p,
		})
	}
	return out, nil
}

// ParseGrants parses a JSON list of grants, such as
// [{"exchange": "exchange/taskcluster-queue/v1/", "routingKeyPattern": "#"}].
func ParseGrants(s string) (Grants, error) {
	gs, err := decodeGrants([]byte(s))
	if err != nil {
		return nil, err
	}
	return CompileGrants(gs)
}

// decodeGrants decodes a JSON list of grants, refusing unknown fields: a
// misspelt field would otherwise widen a grant to every pattern of "".
func decodeGrants(b []byte) ([]Grant, error) {
	var raw []map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, errors.New(`grants must be a JSON list of {"exchange", "routingKeyPattern"}`)
	}
	gs := make([]Grant, len(raw))
	for i, fields := range raw {
		for k, v := range fields {
			var s string
			if err := json.Unmarshal(v, &s); err != nil {
				return nil, fmt.Errorf("grant %d: %q must be a string", i, k)
			}
			switch k {
			case "exchange":
				gs[i].Exchange = s
			case "routingKeyPattern":
				gs[i].RoutingKeyPattern = s
			default:
				return nil, fmt.Errorf("grant %d: unknown field %q", i, k)
			}
		}
		if _, ok := fields["routingKeyPattern"]; !ok {
			return nil, fmt.Errorf("grant %d: routingKeyPattern is missing", i)
		}
	}
	return gs, nil
}

// Allows reports whether some grant allows b.
func (gs Grants) Allows(b binding.Binding) bool {
	var q *topic.Pattern
	for _, g := range gs {
		if g.exchange != b.Exchange && !(g.prefix && strings.HasPrefix(b.Exchange, g.exchange)) {
			continue
		}
		if q == nil {
			var err error
			if q, err = topic.Compile(b.RoutingKeyPattern); err != nil {
				return false
			}
		}
		if g.pattern.Includes(q) {
			return true
		}
	}
	return false
}

// Check returns a *DeniedError for the first of bs that no grant allows;
// anonymous says whether the grants are those of streams without a token.
func (gs Grants) Check(bs []binding.Binding, anonymous bool) error {
	for _, b := range bs {
		if !gs.Allows(b) {
			return &DeniedError{Binding: b, Anonymous: anonymous}
		}
	}
	return nil
}

// DeniedError is a requested binding that the stream's grants do not allow.
// Its text is meant for the client: it names the binding, and nothing of
// the grants, the token or the keys.
type DeniedError struct {
	Binding   binding.Binding
	Anonymous bool // the stream has no token
}

func (e *DeniedError) Error() string {
	b, _ := json.Marshal(e.Binding)
	if e.Anonymous {
		return fmt.Sprintf("Binding %s needs a token that grants it.", b)
	}
	return fmt.Sprintf("The token does not grant binding %s.", b)
}
