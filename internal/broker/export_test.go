package broker

import "time"

// WithExchangeCheck returns cfg with the exchanges checked every period
// instead of recheckEvery.
func WithExchangeCheck(cfg Config, every time.Duration) Config {
	cfg.recheckEvery = every
	return cfg
}
