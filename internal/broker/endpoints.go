package broker

import (
	"math/rand/v2"
	"net/url"
	"strings"
	"sync"
)

// SplitURLs returns the URLs of list, a comma-separated list of broker URLs
// (the nodes of one RabbitMQ cluster), with spaces around each trimmed. An
// empty entry stays, as "", for validation to name.
func SplitURLs(list string) []string {
	urls := strings.Split(list, ",")
	for i, u := range urls {
		urls[i] = strings.TrimSpace(u)
	}
	return urls
}

// Redact returns u, a URL or a comma-separated list of them, with every
// password replaced by "xxxxx", for logs.
func Redact(u string) string {
	urls := SplitURLs(u)
	for i, one := range urls {
		parsed, err := url.Parse(one)
		if err != nil {
			urls[i] = "(unparsable URL)"
			continue
		}
		urls[i] = parsed.Redacted()
	}
	return strings.Join(urls, ",")
}

// endpoints is the rotation of a cluster's node URLs. A dial starts at the
// node after the one of the last connection, so that after losing a node
// the next attempt goes to another one, and replicas given the same list
// spread over the nodes (each shuffles its own copy). Safe for concurrent
// use.
type endpoints struct {
	urls []string // shuffled once

	mu   sync.Mutex
	next int    // index of the URL to try first
	last string // the URL of the last connection made; "" before any
}

func newEndpoints(list string) *endpoints {
	urls := SplitURLs(list)
	rand.Shuffle(len(urls), func(i, j int) { urls[i], urls[j] = urls[j], urls[i] })
	return &endpoints{urls: urls}
}

// order returns the URLs in the order a dial should try them.
func (e *endpoints) order() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	out := make([]string, 0, len(e.urls))
	for i := range e.urls {
		out = append(out, e.urls[(e.next+i)%len(e.urls)])
	}
	// Whatever this dial gets, the next starts one further on.
	e.next = (e.next + 1) % len(e.urls)
	return out
}

// connected notes that a connection to u was made: the next dial, once it
// is lost, starts with the node after u.
func (e *endpoints) connected(u string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.last = u
	for i, v := range e.urls {
		if v == u {
			e.next = (i + 1) % len(e.urls)
			return
		}
	}
}

// String describes the broker for logs, without credentials: the node of
// the last connection, or every node before the first.
func (e *endpoints) String() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.last != "" {
		return Redact(e.last)
	}
	return Redact(strings.Join(e.urls, ","))
}
