# The README's test command is `make test`; .ci/run calls it after installing
# and starting what a fresh machine lacks (RabbitMQ, Chromium, Node.js packages).

GO ?= go
AMQP_URL ?= amqp://guest:guest@127.0.0.1:5672/
export AMQP_URL

.PHONY: test vet unit fuzz faults

# test runs everything: vet, unit tests, integration tests against the real
# RabbitMQ, end-to-end tests with real SSE clients (npm eventsource, headless
# Chromium), and every fuzz target for FUZZTIME.
test: vet e2e/node_modules/.installed
	$(GO) test -race -tags integration -count=1 ./...
	$(MAKE) faults
	$(MAKE) fuzz

# faults stops and starts the RabbitMQ application under a running service,
# so it runs alone, after the other tests.
faults:
	$(GO) test -race -tags faults -count=1 -run '^TestFault' -v ./internal/server/

# fuzz runs each fuzz target for FUZZTIME (go test fuzzes one target at a
# time). Run longer on demand: make fuzz FUZZTIME=10m
FUZZTIME ?= 5s
FUZZ_TARGETS = \
	internal/topic:FuzzMatch internal/topic:FuzzValidate internal/topic:FuzzTrie internal/topic:FuzzTrieCovering internal/topic:FuzzCovers \
	internal/binding:FuzzParse \
	internal/sse:FuzzRoundTrip internal/sse:FuzzReader internal/sse:FuzzAppendUTF8 \
	internal/broker:FuzzMessageData internal/broker:FuzzFrameScanner internal/api:FuzzConnect
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; fn=$${t##*:}; \
		echo "fuzz $$fn in $$pkg for $(FUZZTIME)"; \
		$(GO) test -run '^$$' -fuzz="^$$fn\$$" -fuzztime=$(FUZZTIME) ./$$pkg || exit 1; \
	done

vet:
	$(GO) vet -tags integration ./...
	$(GO) vet -tags faults ./internal/server/

# unit runs only the tests that need no broker, browser or Node.js.
unit:
	$(GO) test -race -count=1 ./...

e2e/node_modules/.installed: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund
	touch $@
