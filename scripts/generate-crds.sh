#!/usr/bin/env bash
# Regenerates crds/ from the Rust types (never edit those files by hand), and
# the Helm chart's copy in charts/bedrock-gateway-operator/crds/.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
cd "$REPO_ROOT"
# Written aside first: builds that include the file must never see it half written.
cargo run --quiet --locked -p bedrock-gateway-operator -- crd > crds/.bedrockgateways.yaml.new
mv crds/.bedrockgateways.yaml.new crds/bedrockgateways.bedrock-gateway.io.yaml
echo "crds/bedrockgateways.bedrock-gateway.io.yaml regenerated"
cp crds/bedrockgateways.bedrock-gateway.io.yaml charts/bedrock-gateway-operator/crds/
echo "charts/bedrock-gateway-operator/crds/bedrockgateways.bedrock-gateway.io.yaml updated"
