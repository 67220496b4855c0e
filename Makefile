.PHONY: demo test bench fmt

## Run the gateway locally against the Bedrock emulator and show a real completion.
demo:
	scripts/demo.sh

## Run every check and test (what CI runs).
test:
	scripts/test.sh

## Run the load benchmarks and write bench/results.md.
bench:
	scripts/bench.sh

fmt:
	cargo fmt --all
