# The two commands a newcomer needs (see README.md):
#   make demo   a local cluster (1 server, 3 workers) trains the bundled MNIST job, prints test accuracy
#   make test   the whole test suite
# Both install missing system packages first.

SWIFT ?= swift
# One configuration for tests and binaries: release speed, with @testable imports allowed.
TEST_FLAGS = -c release -Xswiftc -enable-testing

.PHONY: demo test deps test-deps build check-generated proto bench clean

deps:
	@scripts/install-deps.sh

test-deps:
	@scripts/install-deps.sh --test

build: deps
	$(SWIFT) build -c release

demo: build
	deploy/local/demo.sh

check-generated: deps
	@scripts/gen-proto.sh --check

test: test-deps check-generated
	$(SWIFT) build $(TEST_FLAGS) --build-tests
	$(SWIFT) test $(TEST_FLAGS) --skip-build --disable-swift-testing

proto: deps
	scripts/gen-proto.sh

# Performance figures (P1-P5, docs/PERFORMANCE.md): ratios within one run, table + runs/bench/results.json.
# ARGS go to bench/run.py, e.g. make bench ARGS="--baseline /tmp/old/.build/release --skip local,cluster,wide,target,kernels";
# ARGS=--torch adds PyTorch DDP (installs torch into .venv-bench with pip the first time), --skip straggler leaves out the straggler.
bench: build
	bench/run.sh $(ARGS)

clean:
	rm -rf .build runs
