# reptok: `make demo` sets up and runs the codec on the embedded default model; `make test` runs
# the tests. Both install the system packages they need first (tools/install-deps.sh).
.PHONY: deps build test demo bench man

deps:
	@tools/install-deps.sh

build: deps
	swift build -c release

test: deps
	swift test

demo: build
	tools/demo.sh

bench: deps
	tools/bench.sh
