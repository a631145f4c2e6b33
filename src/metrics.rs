//! Prometheus families, all `mcp_edge_`-prefixed, with bounded labels only: routes and methods
//! from the configuration and the protocol, tools only when the route names them, never a caller.

use prometheus::{
    Encoder, Gauge, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec,
    Opts, Registry, TextEncoder,
};

/// Seconds buckets from 1 ms to 60 s.
const BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
];

pub struct Metrics {
    registry: Registry,
    /// Requests on the MCP listener by route (`-` when none), method and outcome.
    pub requests: IntCounterVec,
    /// Proxied tool calls by route, tool (`other` unless named in the route) and outcome.
    pub tool_calls: IntCounterVec,
    pub request_seconds: HistogramVec,
    pub upstream_seconds: HistogramVec,
    /// Authentication failures by reason (missing, expired, signature, …).
    pub auth_failures: IntCounterVec,
    /// Rate-limit refusals by scope (`caller`, `route`, `tool`, `concurrency`).
    pub rate_limited: IntCounterVec,
    /// Shared-store failures that fell back to local limiting.
    pub limit_store_fallbacks: IntCounter,
    pub reloads: IntCounterVec,
    pub config_generation: IntGauge,
    pub config_last_success: Gauge,
    /// Audit records waiting for the sinks.
    pub audit_queue_depth: IntGauge,
    /// Audit records stored, by sink.
    pub audit_written: IntCounterVec,
    /// Failed audit writes (retried), by sink.
    pub audit_write_errors: IntCounterVec,
    /// Calls refused because the audit queue was full (`when_full: refuse`).
    pub audit_refused: IntCounter,
    /// The head of each sink's audit chain: one series, labelled with the chain value, whose
    /// value is the record's sequence number (a published anchor).
    pub audit_chain_head: IntGaugeVec,
    pub sessions_opened: IntCounter,
    pub sessions_ended: IntCounter,
    pub open_streams: IntGauge,
    /// 1 when the upstream's last health probe connected, else 0.
    pub upstream_up: IntGaugeVec,
}

impl Metrics {
    #[allow(clippy::expect_used)] // Registration fails only on a duplicate name: a programming error caught by every test.
    pub fn new() -> Self {
        let registry = Registry::new();
        let counter = |name: &str, help: &str, labels: &[&str]| {
            let c = IntCounterVec::new(Opts::new(name, help), labels).expect("metric");
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let histogram = |name: &str, help: &str, labels: &[&str]| {
            let h = HistogramVec::new(
                HistogramOpts::new(name, help).buckets(BUCKETS.to_vec()),
                labels,
            )
            .expect("metric");
            registry.register(Box::new(h.clone())).expect("register");
            h
        };
        let requests = counter(
            "mcp_edge_requests_total",
            "MCP requests by route, method and outcome",
            &["route", "method", "outcome"],
        );
        let tool_calls = counter(
            "mcp_edge_tool_calls_total",
            "tools/call by route, tool and outcome",
            &["route", "tool", "outcome"],
        );
        let request_seconds = histogram(
            "mcp_edge_request_duration_seconds",
            "Time from request to the end of the answer, by route and method",
            &["route", "method"],
        );
        let upstream_seconds = histogram(
            "mcp_edge_upstream_duration_seconds",
            "Time a proxied call spent with its upstream, by route",
            &["route"],
        );
        let auth_failures = counter(
            "mcp_edge_auth_failures_total",
            "Requests refused authentication, by reason",
            &["reason"],
        );
        let rate_limited = counter(
            "mcp_edge_rate_limited_total",
            "Requests refused by a limit, by scope",
            &["scope"],
        );
        let audit_written = counter(
            "mcp_edge_audit_records_written_total",
            "Audit records stored, by sink",
            &["sink"],
        );
        let audit_write_errors = counter(
            "mcp_edge_audit_write_errors_total",
            "Failed audit writes (they are retried), by sink",
            &["sink"],
        );
        let reloads = counter(
            "mcp_edge_config_reloads_total",
            "Configuration reloads by result (ok, error)",
            &["result"],
        );
        let single = |c: IntCounter| {
            registry.register(Box::new(c.clone())).expect("register");
            c
        };
        let limit_store_fallbacks = single(
            IntCounter::new(
                "mcp_edge_limit_store_fallbacks_total",
                "Limit checks answered locally because the shared store failed",
            )
            .expect("metric"),
        );
        let sessions_opened = single(
            IntCounter::new(
                "mcp_edge_sessions_opened_total",
                "Client sessions opened here",
            )
            .expect("metric"),
        );
        let sessions_ended = single(
            IntCounter::new(
                "mcp_edge_sessions_ended_total",
                "Client sessions ended here (DELETE)",
            )
            .expect("metric"),
        );
        let config_generation = IntGauge::new(
            "mcp_edge_config_generation",
            "Generation of the configuration in force",
        )
        .expect("metric");
        registry
            .register(Box::new(config_generation.clone()))
            .expect("register");
        let config_last_success = Gauge::new(
            "mcp_edge_config_last_success_timestamp_seconds",
            "Unix time of the last successful configuration load",
        )
        .expect("metric");
        registry
            .register(Box::new(config_last_success.clone()))
            .expect("register");
        let audit_refused = single(
            IntCounter::new(
                "mcp_edge_audit_refused_total",
                "Calls refused because the audit queue was full",
            )
            .expect("metric"),
        );
        let audit_queue_depth = IntGauge::new(
            "mcp_edge_audit_queue_depth",
            "Audit records waiting for the sinks",
        )
        .expect("metric");
        registry
            .register(Box::new(audit_queue_depth.clone()))
            .expect("register");
        let open_streams =
            IntGauge::new("mcp_edge_open_streams", "Client SSE streams open now").expect("metric");
        registry
            .register(Box::new(open_streams.clone()))
            .expect("register");
        let upstream_up = IntGaugeVec::new(
            Opts::new(
                "mcp_edge_upstream_up",
                "1 when the upstream accepted the last health probe",
            ),
            &["route"],
        )
        .expect("metric");
        registry
            .register(Box::new(upstream_up.clone()))
            .expect("register");
        let audit_chain_head = IntGaugeVec::new(
            Opts::new(
                "mcp_edge_audit_chain_head",
                "Sequence number of the last audit record written, labelled with its chain value, by sink",
            ),
            &["sink", "hash"],
        )
        .expect("metric");
        registry
            .register(Box::new(audit_chain_head.clone()))
            .expect("register");
        Self {
            registry,
            requests,
            tool_calls,
            request_seconds,
            upstream_seconds,
            auth_failures,
            rate_limited,
            limit_store_fallbacks,
            reloads,
            config_generation,
            config_last_success,
            audit_queue_depth,
            audit_written,
            audit_write_errors,
            audit_refused,
            audit_chain_head,
            sessions_opened,
            sessions_ended,
            open_streams,
            upstream_up,
        }
    }

    /// The Prometheus text exposition of every family.
    pub fn render(&self) -> Vec<u8> {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        out
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}
