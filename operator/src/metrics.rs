//! Prometheus metrics of the operator.

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub reconciliations: IntCounterVec,
    pub failures: IntCounterVec,
    pub reconcile_duration: HistogramVec,
    /// Server-side applies left out because the object already held them.
    pub applies_skipped: IntCounterVec,
    /// Failed list or watch requests; the watches retry with a backoff.
    pub watch_errors: IntCounter,
    pub leader: IntGauge,
}

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("bedrock_gateway_operator".into()), None)?;
        let reconciliations = IntCounterVec::new(
            Opts::new("reconciliations_total", "Reconciliations by resource kind."),
            &["resource"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "reconcile_failures_total",
                "Failed reconciliations by resource kind and error.",
            ),
            &["resource", "error"],
        )?;
        let reconcile_duration = HistogramVec::new(
            HistogramOpts::new(
                "reconcile_duration_seconds",
                "Reconciliation duration by resource kind.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
            ]),
            &["resource"],
        )?;
        let applies_skipped = IntCounterVec::new(
            Opts::new(
                "applies_skipped_total",
                "Server-side applies left out because the owned object already held what they would write, by resource kind.",
            ),
            &["resource"],
        )?;
        let watch_errors = IntCounter::new(
            "watch_errors_total",
            "Failed list or watch requests to the API server (retried with a backoff).",
        )?;
        let leader = IntGauge::new("leader", "1 while this replica holds the leader lease.")?;
        registry.register(Box::new(reconciliations.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(reconcile_duration.clone()))?;
        registry.register(Box::new(applies_skipped.clone()))?;
        registry.register(Box::new(watch_errors.clone()))?;
        registry.register(Box::new(leader.clone()))?;
        Ok(Self {
            registry,
            reconciliations,
            failures,
            reconcile_duration,
            applies_skipped,
            watch_errors,
            leader,
        })
    }

    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        buffer
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_exposed() {
        let metrics = Metrics::new().unwrap();
        metrics
            .reconciliations
            .with_label_values(&["BedrockGateway"])
            .inc();
        metrics
            .failures
            .with_label_values(&["BedrockGateway", "kube"])
            .inc();
        metrics
            .reconcile_duration
            .with_label_values(&["BedrockGateway"])
            .observe(0.1);
        metrics.watch_errors.inc();
        metrics.leader.set(1);
        let text = String::from_utf8(metrics.render()).unwrap();
        for line in [
            "bedrock_gateway_operator_reconciliations_total{resource=\"BedrockGateway\"} 1",
            "bedrock_gateway_operator_reconcile_failures_total{error=\"kube\",resource=\"BedrockGateway\"} 1",
            "bedrock_gateway_operator_reconcile_duration_seconds_count{resource=\"BedrockGateway\"} 1",
            "bedrock_gateway_operator_watch_errors_total 1",
            "bedrock_gateway_operator_leader 1",
        ] {
            assert!(text.contains(line), "{line} missing in {text}");
        }
    }
}
