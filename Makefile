.PHONY: demo test bench bench-operator fmt test-chart test-images crds

## Run the gateway locally against the Bedrock emulator and show a real completion.
demo:
	scripts/demo.sh

## Run every check and test (what CI runs).
test:
	scripts/test.sh

## Run the load benchmarks and write bench/results.md.
bench:
	scripts/bench.sh

## Create 1,000 BedrockGateways on the local API server; write bench/operator-results.md.
bench-operator:
	scripts/bench-operator.sh

fmt:
	cargo fmt --all

## Helm chart checks only: lint, template, server-side dry-run, operator under the chart's RBAC.
test-chart:
	scripts/test-chart.sh

## Dockerfile checks, with the release builds the Dockerfiles run.
test-images:
	scripts/test-images.sh

## Regenerate crds/ and the chart's copy from the Rust types.
crds:
	scripts/generate-crds.sh
