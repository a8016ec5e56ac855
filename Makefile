# reptok: `make demo` sets up and runs the codec on the embedded default model; `make test` runs
# the tests: `swift test`, then the Python package's (pytest python/tests). Both install what they
# need first: the system packages (tools/install-deps.sh) and, for the Python tests, pinned CPU
# PyTorch and `pip install -e python[train,test]` (tools/install-python.sh; quick when present).
.PHONY: deps build test swift-test pytest demo bench man

deps:
	@tools/install-deps.sh

build: deps
	swift build -c release

test: swift-test pytest

swift-test: deps
	swift test

pytest:
	@PY=$$(tools/install-python.sh) && echo "pytest with $$PY" && "$$PY" -m pytest -q python/tests

demo: build
	tools/demo.sh

bench: deps
	tools/bench.sh
