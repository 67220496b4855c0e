//! Prometheus metrics of the proxy, served on their own port.
//!
//! Label values never come from raw client input: routes are the matched
//! route patterns and models are catalog ids (anything else is `unlisted`).

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    pub http_requests: IntCounterVec,
    pub http_request_duration: HistogramVec,
    pub bedrock_call_duration: HistogramVec,
    pub time_to_first_token: HistogramVec,
    pub tokens: IntCounterVec,
    pub streams_in_flight: IntGauge,
    pub upstream_errors: IntCounterVec,
    pub api_keys_loaded: IntGauge,
    pub key_limit_rejections: IntCounterVec,
    pub http_requests_in_flight: IntGauge,
    pub image_fetches: IntCounterVec,
}

const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0,
];

impl Metrics {
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("bedrock_gateway".into()), None)?;
        let http_requests = IntCounterVec::new(
            Opts::new(
                "http_requests_total",
                "HTTP requests by route, method and status.",
            ),
            &["route", "method", "status"],
        )?;
        let http_request_duration = HistogramVec::new(
            HistogramOpts::new(
                "http_request_duration_seconds",
                "Time to the response head, by route (streams: until the first byte).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route"],
        )?;
        let bedrock_call_duration = HistogramVec::new(
            HistogramOpts::new(
                "bedrock_call_duration_seconds",
                "Duration of Bedrock calls by model and operation (streams: until the last event).",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model", "operation"],
        )?;
        let time_to_first_token = HistogramVec::new(
            HistogramOpts::new(
                "time_to_first_token_seconds",
                "Time from request to the first streamed content, by model.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["model"],
        )?;
        let tokens = IntCounterVec::new(
            Opts::new(
                "tokens_total",
                "Tokens reported by Bedrock, by model and direction.",
            ),
            &["model", "direction"],
        )?;
        let streams_in_flight =
            IntGauge::new("streams_in_flight", "Streaming completions currently open.")?;
        let upstream_errors = IntCounterVec::new(
            Opts::new(
                "upstream_errors_total",
                "Errors from Bedrock or on the way to it, by error type.",
            ),
            &["error_type"],
        )?;
        let api_keys_loaded =
            IntGauge::new("api_keys_loaded", "API keys the gateway currently accepts.")?;

        registry.register(Box::new(http_requests.clone()))?;
        registry.register(Box::new(http_request_duration.clone()))?;
        registry.register(Box::new(bedrock_call_duration.clone()))?;
        registry.register(Box::new(time_to_first_token.clone()))?;
        registry.register(Box::new(tokens.clone()))?;
        registry.register(Box::new(streams_in_flight.clone()))?;
        registry.register(Box::new(upstream_errors.clone()))?;
        registry.register(Box::new(api_keys_loaded.clone()))?;
        let key_limit_rejections = IntCounterVec::new(
            Opts::new(
                "key_limit_rejections_total",
                "Requests refused by a per-API-key limit, by limit (requests_per_minute, concurrent_streams).",
            ),
            &["limit"],
        )?;
        registry.register(Box::new(key_limit_rejections.clone()))?;
        let http_requests_in_flight = IntGauge::new(
            "http_requests_in_flight",
            "Requests being handled, until their response head (streams: see streams_in_flight).",
        )?;
        registry.register(Box::new(http_requests_in_flight.clone()))?;
        let image_fetches = IntCounterVec::new(
            Opts::new(
                "image_fetches_total",
                "Fetches of image URLs in chat requests, by outcome.",
            ),
            &["outcome"],
        )?;
        registry.register(Box::new(image_fetches.clone()))?;

        Ok(Self {
            registry,
            http_requests,
            http_request_duration,
            bedrock_call_duration,
            time_to_first_token,
            tokens,
            streams_in_flight,
            upstream_errors,
            api_keys_loaded,
            key_limit_rejections,
            http_requests_in_flight,
            image_fetches,
        })
    }

    pub fn record_usage(&self, model: &str, usage: &crate::openai::Usage) {
        self.tokens
            .with_label_values(&[model, "input"])
            .inc_by(usage.prompt_tokens);
        self.tokens
            .with_label_values(&[model, "output"])
            .inc_by(usage.completion_tokens);
    }

    /// The text exposition format.
    pub fn render(&self) -> Vec<u8> {
        let mut buffer = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buffer);
        buffer
    }
}

/// Counts a stream as in flight for as long as it lives.
pub struct InFlightStream(IntGauge);

impl InFlightStream {
    pub fn enter(gauge: &IntGauge) -> Self {
        gauge.inc();
        Self(gauge.clone())
    }
}

impl Drop for InFlightStream {
    fn drop(&mut self) {
        self.0.dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_family_is_exposed_with_the_prefix() {
        let metrics = Metrics::new().unwrap();
        metrics
            .http_requests
            .with_label_values(&["/v1/models", "GET", "200"])
            .inc();
        metrics
            .http_request_duration
            .with_label_values(&["/v1/models"])
            .observe(0.01);
        metrics
            .bedrock_call_duration
            .with_label_values(&["m", "Converse"])
            .observe(0.2);
        metrics
            .time_to_first_token
            .with_label_values(&["m"])
            .observe(0.1);
        metrics.record_usage(
            "m",
            &crate::openai::Usage {
                prompt_tokens: 3,
                completion_tokens: 4,
                total_tokens: 7,
                ..Default::default()
            },
        );
        metrics
            .upstream_errors
            .with_label_values(&["ThrottlingException"])
            .inc();
        metrics
            .key_limit_rejections
            .with_label_values(&["concurrent_streams"])
            .inc();
        let text = String::from_utf8(metrics.render()).unwrap();
        for family in [
            "bedrock_gateway_http_requests_total{method=\"GET\",route=\"/v1/models\",status=\"200\"} 1",
            "bedrock_gateway_http_request_duration_seconds_bucket",
            "bedrock_gateway_bedrock_call_duration_seconds_count{model=\"m\",operation=\"Converse\"} 1",
            "bedrock_gateway_time_to_first_token_seconds_count{model=\"m\"} 1",
            "bedrock_gateway_tokens_total{direction=\"input\",model=\"m\"} 3",
            "bedrock_gateway_tokens_total{direction=\"output\",model=\"m\"} 4",
            "bedrock_gateway_streams_in_flight 0",
            "bedrock_gateway_upstream_errors_total{error_type=\"ThrottlingException\"} 1",
            "bedrock_gateway_api_keys_loaded 0",
            "bedrock_gateway_key_limit_rejections_total{limit=\"concurrent_streams\"} 1",
            "bedrock_gateway_http_requests_in_flight 0",
        ] {
            assert!(text.contains(family), "missing {family} in\n{text}");
        }
    }

    #[test]
    fn the_in_flight_guard_counts_up_and_down() {
        let metrics = Metrics::new().unwrap();
        let first = InFlightStream::enter(&metrics.streams_in_flight);
        let second = InFlightStream::enter(&metrics.streams_in_flight);
        assert_eq!(metrics.streams_in_flight.get(), 2);
        drop(first);
        assert_eq!(metrics.streams_in_flight.get(), 1);
        drop(second);
        assert_eq!(metrics.streams_in_flight.get(), 0);
    }
}
