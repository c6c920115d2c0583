# The README's test command is `make test`; .ci/run calls it after installing
# and starting what a fresh machine lacks (RabbitMQ, Chromium, Node.js packages).

GO ?= go
AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export AMQP_URL

.PHONY: test vet unit integration

# test runs everything: vet, unit tests, integration tests against the real
# RabbitMQ, and end-to-end tests with real SSE clients (npm eventsource,
# headless Chromium).
test: vet e2e/node_modules/.installed
	$(GO) test -race -tags integration -count=1 ./...

vet:
	$(GO) vet -tags integration ./...

# unit runs only the tests that need no broker, browser or Node.js.
unit:
	$(GO) test -race -count=1 ./...

e2e/node_modules/.installed: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund
	touch $@
