package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"eventsproxy/internal/access"
	client "eventsproxy/internal/listen"
)

const tokenHelp = `Usage: eventsproxy token --grant EXCHANGE=PATTERN [--grant ...] [flags]

Mint a token (a JWT signed with an HMAC secret) for a service whose
--token-secrets hold that secret, and print it on stdout. The token lets a
stream bind what its grants allow: an exchange named exactly, or every
exchange that starts with a name ending in "/", with any routing-key pattern
that the grant's pattern covers.

The secret is the first of TOKEN_SECRETS (the service's own variable), or
--secret; prefer the variable, which stays out of the process list.

Flags:
  --grant EXCHANGE=PATTERN  a grant; split at the first "=". Repeat for more;
                            at least one is required
  --ttl D                   how long the token is valid (default 1h)
  --sub SUBJECT             the token's subject, which --max-streams-per-subject
                            counts streams by
  --iss ISSUER              its issuer (default TOKEN_ISSUER)
  --aud AUDIENCE            its audience (default TOKEN_AUDIENCE)
  --alg ALG                 HS256 (default), HS384 or HS512
  --grants-claim NAME       the claim of the grants (default TOKEN_GRANTS_CLAIM,
                            else grants)
  --secret SECRET           the HMAC secret, when TOKEN_SECRETS is not set

Exit codes: 0 printed, 2 bad command line.

Example:
  TOKEN_SECRETS=$(cat secret) eventsproxy token --sub ci \
      --grant 'exchange/taskcluster-queue/v1/=primary.#' --ttl 15m
`

// token mints a token and prints it.
func token(_ context.Context, args []string, getenv func(string) string, _ io.Reader, stdout, stderr io.Writer) int {
	t, secret, err := tokenOptions(args, getenv)
	if errors.Is(err, flag.ErrHelp) {
		fmt.Fprint(stdout, tokenHelp)
		return 0
	}
	var tok string
	if err == nil {
		tok, err = access.Mint(secret, t, time.Now())
	}
	if err != nil {
		fmt.Fprintf(stderr, "eventsproxy token: %v\nRun 'eventsproxy token --help' for usage.\n", err)
		return 2
	}
	fmt.Fprintln(stdout, tok)
	return 0
}

// grantFlags collects --grant values.
type grantFlags []access.Grant

func (g *grantFlags) String() string { return fmt.Sprint(*g) }

func (g *grantFlags) Set(s string) error {
	b, err := client.ParseBinding(s)
	if err != nil {
		return errors.New(strings.ReplaceAll(err.Error(), "--bind", "--grant"))
	}
	*g = append(*g, access.Grant{Exchange: b.Exchange, RoutingKeyPattern: b.RoutingKeyPattern})
	return nil
}

func tokenOptions(args []string, getenv func(string) string) (access.Token, []byte, error) {
	var t access.Token
	var grants grantFlags
	var secret string
	fs := flag.NewFlagSet("eventsproxy token", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Var(&grants, "grant", "")
	fs.DurationVar(&t.TTL, "ttl", time.Hour, "")
	fs.StringVar(&t.Subject, "sub", "", "")
	fs.StringVar(&t.Issuer, "iss", getenv("TOKEN_ISSUER"), "")
	fs.StringVar(&t.Audience, "aud", getenv("TOKEN_AUDIENCE"), "")
	fs.StringVar(&t.Algorithm, "alg", "HS256", "")
	fs.StringVar(&t.GrantsClaim, "grants-claim", getenv("TOKEN_GRANTS_CLAIM"), "")
	fs.StringVar(&secret, "secret", "", "")
	if err := fs.Parse(args); err != nil {
		return t, nil, err
	}
	if fs.NArg() > 0 {
		return t, nil, fmt.Errorf("unexpected arguments %q; every grant needs its own --grant", fs.Args())
	}
	if len(grants) == 0 {
		return t, nil, errors.New("at least one --grant EXCHANGE=PATTERN is required")
	}
	if secret == "" {
		first, _, _ := strings.Cut(getenv("TOKEN_SECRETS"), ",")
		secret = strings.TrimSpace(first)
	}
	if secret == "" {
		return t, nil, errors.New("no secret: set TOKEN_SECRETS (as the service has it) or --secret")
	}
	t.Grants = grants
	return t, []byte(secret), nil
}
