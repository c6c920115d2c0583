package access

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/MicahParks/keyfunc/v3"
	"github.com/golang-jwt/jwt/v5"
	"golang.org/x/time/rate"
)

// maxJWKSBytes bounds the size of a fetched JWKS.
const maxJWKSBytes = 1 << 20

// jwks is a JSON Web Key Set fetched from a URL: at start, every refresh
// period, and at once (at most once per jwksUnknownKeyEvery) when a token
// names a key id the set lacks, so that a new key is used as soon as the
// issuer publishes it. The set fetched last stays in use while fetches
// fail. It is safe for concurrent use.
type jwks struct {
	url    string
	client *http.Client
	log    *slog.Logger

	set     atomic.Pointer[keyfunc.Keyfunc]
	unknown *rate.Limiter
	fetchMu sync.Mutex // one fetch at a time
}

func newJWKS(url string, client *http.Client, log *slog.Logger) *jwks {
	if client == nil {
		client = http.DefaultClient
	}
	return &jwks{
		url:     url,
		client:  client,
		log:     log,
		unknown: rate.NewLimiter(rate.Every(jwksUnknownKeyEvery), 1),
	}
}

// run fetches the set every period until ctx ends.
func (j *jwks) run(ctx context.Context, period time.Duration) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			j.refresh(ctx)
		}
	}
}

// refresh fetches the set and, if that works, uses it from now on.
func (j *jwks) refresh(ctx context.Context) {
	j.fetchMu.Lock()
	defer j.fetchMu.Unlock()
	if err := j.fetch(ctx); err != nil {
		j.log.Warn("JWKS fetch failed; the keys fetched before stay in use", "err", err)
	}
}

func (j *jwks) fetch(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, j.url, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := j.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("status %s", resp.Status)
	}
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return err
	}
	if len(b) > maxJWKSBytes {
		return errors.New("the set is over 1 MiB")
	}
	set, err := keyfunc.NewJWKSetJSON(b)
	if err != nil {
		return err
	}
	j.set.Store(&set)
	return nil
}

// keys returns the keys that may have signed t: the one named kid, or
// every key of the set when kid is empty. An unknown kid has the set
// fetched again first, unless that happened less than
// jwksUnknownKeyEvery ago.
func (j *jwks) keys(t *jwt.Token, kid string) []jwt.VerificationKey {
	set := j.set.Load()
	if kid == "" {
		if set == nil {
			return nil
		}
		ks, err := (*set).VerificationKeySet(context.Background())
		if err != nil {
			return nil
		}
		return ks.Keys
	}
	if set != nil {
		if k, err := (*set).Keyfunc(t); err == nil {
			return []jwt.VerificationKey{k}
		}
	}
	if !j.unknown.Allow() {
		return nil
	}
	j.refresh(context.Background())
	if set = j.set.Load(); set == nil {
		return nil
	}
	if k, err := (*set).Keyfunc(t); err == nil {
		return []jwt.VerificationKey{k}
	}
	return nil
}
