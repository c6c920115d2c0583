# The README's test command is `make test`; it needs nothing running, and
# installs what it needs when it can (.ci/deps). .ci/run, CI's entry point,
# calls it.

GO ?= go

.PHONY: test deps vet unit fuzz faults cluster deploy-test

# test runs everything: vet, unit tests, integration tests against real
# RabbitMQ nodes that the tests start and delete themselves (or the broker
# that AMQP_URL names), end-to-end tests with real SSE clients (npm
# eventsource, headless Chromium) and proxies, and every fuzz target for a
# few seconds. Around the Go tests, .ci/untouched checks that a RabbitMQ
# already running on port 5672 is left as it was. The e2e package alone has
# taken over 10 minutes (go test's default timeout) on a busy 2-core machine.
test: deps vet e2e/node_modules/.installed
	@state=$$(mktemp) && .ci/untouched before "$$state" && \
		$(GO) test -race -tags integration -count=1 -timeout 30m ./... && \
		.ci/untouched after "$$state"; rc=$$?; rm -f "$$state"; exit $$rc
	$(MAKE) fuzz

# deps installs (as root, with apt-get) what test needs, or names it and
# fails at once.
deps:
	@.ci/deps

# faults stops and starts the RabbitMQ application of a node of its own
# under a running service (also part of test).
faults:
	$(GO) test -race -tags integration -count=1 -run '^TestFault' -v ./internal/server/

# cluster runs the service on a three-node RabbitMQ cluster of its own and
# stops, then kills, the node it is connected to (also part of test); -v
# shows the figures measured.
cluster:
	$(GO) test -race -tags integration -count=1 -run '^TestCluster' -v ./internal/server/

# fuzz runs each fuzz target for a fixed number of inputs, chosen to take a
# few seconds each on a 2-core machine (go test fuzzes one target at a time).
# A count and not a duration: when a -fuzztime duration runs out on a busy
# machine, Go 1.26's fuzzing coordinator can report "context deadline
# exceeded" as a failure with no failing input (go.dev/issue/75804, fixed in
# Go 1.27); with a count it sets no deadline. Run longer on demand with
# FUZZTIME, a count or a duration: make fuzz FUZZTIME=10m
FUZZTIME ?=
FUZZ_TARGETS = \
	internal/topic:FuzzMatch:400000 internal/topic:FuzzValidate:400000 \
	internal/topic:FuzzTrie:400000 internal/topic:FuzzTrieCovering:400000 \
	internal/topic:FuzzCovers:400000 internal/topic:FuzzNormalize:150000 \
	internal/topic:FuzzIncludes:20000 \
	internal/binding:FuzzParse:200000 internal/access:FuzzGrantCheck:50000 \
	internal/sse:FuzzRoundTrip:100000 internal/sse:FuzzReader:300000 \
	internal/sse:FuzzAppendUTF8:300000 \
	internal/broker:FuzzMessageData:50000 internal/amqpflow:FuzzFrameScanner:80000 \
	internal/api:FuzzConnect:60000 internal/api:FuzzMessageEvent:40000
fuzz:
	@for t in $(FUZZ_TARGETS); do \
		pkg=$${t%%:*}; rest=$${t#*:}; fn=$${rest%%:*}; n=$${rest##*:}; \
		budget="$(FUZZTIME)"; [ -n "$$budget" ] || budget=$${n}x; \
		echo "fuzz $$fn in $$pkg for $$budget"; \
		$(GO) test -run '^$$' -fuzz="^$$fn\$$" -fuzztime=$$budget ./$$pkg || exit 1; \
	done

vet:
	$(GO) vet -tags integration ./...

# deploy-test builds and runs the image of deploy/Dockerfile with podman
# (from a binary built here: no base image is pulled) and checks the
# systemd unit and the Kubernetes manifest; see deploy/README.md. It is not
# part of test: it needs podman (and runc where crun cannot start
# containers) and takes about a minute.
deploy-test:
	bash deploy/test.sh

# unit runs only the tests that need no broker, browser or Node.js: Go and
# nothing else installed.
unit:
	$(GO) test -race -count=1 ./...

e2e/node_modules/.installed: e2e/package.json e2e/package-lock.json
	cd e2e && npm ci --no-audit --no-fund
	touch $@
