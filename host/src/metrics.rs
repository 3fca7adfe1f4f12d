//! What this process measures, for `GET /metrics` (Prometheus; OpenMetrics
//! text): each part of the host records what it did here as it does it —
//! the workers their attempts, the directive runner its executions, the
//! HTTP API its requests, the pruner what it removed. The queue's own state
//! (depth, lag) is not here: it is read from the store at scrape time, so
//! every host of a cluster reports the same queue (`http/metrics.rs`).
//!
//! Series are labelled by handler, directive name, executor and route,
//! which are few. A tenant label multiplies them by the tenants, so it is
//! added only when `[metrics] tenant_labels` is on.

use std::time::Duration;

use prometheus_client::encoding::text::encode_registry;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::{Family, MetricConstructor};
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use serde::Deserialize;

use crate::store::{AttemptOutcome, Decision, DeliveryResult, EmitStatus, FinishOutcome};

/// A sample's labels, in the order they are written.
pub type Labels = Vec<(&'static str, String)>;

/// Seconds, from a tenth of a millisecond (a trivial handler) to a minute
/// (past every default timeout; 10 s and 30 s are the webhook's and the
/// command's).
const SECONDS: [f64; 18] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
    5.0, 10.0, 30.0, 60.0,
];

/// Which histogram buckets a family's samples get.
#[derive(Debug, Clone, Copy)]
enum Buckets {
    Seconds,
    /// Fuel units (about one per wasm instruction): 10^3 to 10^10.
    Fuel,
    /// Bytes: 64 KiB (one wasm page) to 4 GiB, by fours.
    Bytes,
}

impl MetricConstructor<Histogram> for Buckets {
    fn new_metric(&self) -> Histogram {
        match self {
            Buckets::Seconds => Histogram::new(SECONDS),
            Buckets::Fuel => Histogram::new(exponential_buckets(1e3, 10.0, 8)),
            Buckets::Bytes => Histogram::new(exponential_buckets(65_536.0, 4.0, 9)),
        }
    }
}

type Histograms = Family<Labels, Histogram, Buckets>;

/// `[metrics]` in `sighost.toml`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MetricsConfig {
    /// Label per-handler and per-directive series with their tenant too.
    /// Off by default: the series multiply by the number of tenants.
    #[serde(default)]
    pub tenant_labels: bool,
}

/// One delivery attempt, as the worker saw it end.
#[derive(Debug, Clone, Copy)]
pub struct AttemptMeasure<'a> {
    pub handler: &'a str,
    pub tenant: &'a str,
    /// How the handler's run ended (`ok`, `transient`, `trap`, …): what
    /// the attempt record keeps. What the store then makes of the delivery
    /// (a lost lease, a conflict) is [`Metrics::delivery_finished`]'s.
    pub outcome: AttemptOutcome,
    pub duration: Duration,
    pub fuel: Option<u64>,
    pub peak_memory_bytes: u64,
}

/// One directive execution, as the runner saw it end.
#[derive(Debug, Clone, Copy)]
pub struct ExecutionMeasure<'a> {
    pub name: &'a str,
    pub tenant: &'a str,
    /// The executor's kind (`webhook`, `command`, …), or `none` when no
    /// executor is configured for the name.
    pub executor: &'a str,
    /// `succeeded`, `retried` or `failed`.
    pub outcome: &'static str,
    pub duration: Duration,
}

/// The process's counters and histograms.
#[derive(Debug)]
pub struct Metrics {
    tenant_labels: bool,
    registry: Registry,
    attempts: Family<Labels, Counter>,
    deliveries_finished: Family<Labels, Counter>,
    attempt_duration: Histograms,
    attempt_fuel: Histograms,
    attempt_memory: Histograms,
    directive_duration: Histograms,
    http_duration: Histograms,
    http_signals: Family<Labels, Counter>,
    pruned: Family<Labels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new(&MetricsConfig::default())
    }
}

impl Metrics {
    pub fn new(config: &MetricsConfig) -> Self {
        let mut registry = Registry::default();
        let counter = |registry: &mut Registry, name: &str, help: &str| {
            let family = Family::<Labels, Counter>::default();
            registry.register(name, help, family.clone());
            family
        };
        let histogram = |registry: &mut Registry, name: &str, help: &str, buckets: Buckets| {
            let family = Histograms::new_with_constructor(buckets);
            registry.register(name, help, family.clone());
            family
        };
        Self {
            tenant_labels: config.tenant_labels,
            // Counters get `_total` from the encoder.
            attempts: counter(
                &mut registry,
                "sighost_attempts",
                "Delivery attempts this process ran, by handler and how the run ended (ok, \
                 transient, permanent, trap, timeout, memory_exceeded, fuel_exhausted, host_error)",
            ),
            deliveries_finished: counter(
                &mut registry,
                "sighost_deliveries_finished",
                "Delivery attempts whose result this process recorded, by handler and what the \
                 store made of the delivery (completed, retrying, discarded, conflict: discarded \
                 for a directive key taken with another payload, lease_lost: its lease had \
                 expired and the result was dropped)",
            ),
            attempt_duration: histogram(
                &mut registry,
                "sighost_attempt_duration_seconds",
                "Wall time of delivery attempts, by handler",
                Buckets::Seconds,
            ),
            attempt_fuel: histogram(
                &mut registry,
                "sighost_attempt_fuel",
                "Fuel (about one unit per wasm instruction) delivery attempts consumed, by handler",
                Buckets::Fuel,
            ),
            attempt_memory: histogram(
                &mut registry,
                "sighost_attempt_peak_memory_bytes",
                "Most linear memory a delivery attempt's instance held, by handler",
                Buckets::Bytes,
            ),
            directive_duration: histogram(
                &mut registry,
                "sighost_directive_execution_duration_seconds",
                "Directive executions by this process (the _count is the executions), by name, \
                 executor and outcome (succeeded, retried, failed)",
                Buckets::Seconds,
            ),
            http_duration: histogram(
                &mut registry,
                "sighost_http_request_duration_seconds",
                "HTTP requests answered by this process, by method, route and status code",
                Buckets::Seconds,
            ),
            http_signals: counter(
                &mut registry,
                "sighost_http_signals",
                "Signals emitted through this process's HTTP API, by status (created, existing)",
            ),
            pruned: counter(
                &mut registry,
                "sighost_pruned_rows",
                "Rows this process's retention passes removed, by kind",
            ),
            registry,
        }
    }

    /// `labels`, with the tenant's when tenant labels are on.
    fn labels(&self, mut labels: Labels, tenant: &str) -> Labels {
        if self.tenant_labels {
            labels.push(("tenant", tenant.to_owned()));
        }
        labels
    }

    pub fn attempt(&self, attempt: &AttemptMeasure<'_>) {
        let handler = self.labels(
            vec![("handler", attempt.handler.to_owned())],
            attempt.tenant,
        );
        let mut ended = handler.clone();
        ended.push(("outcome", attempt.outcome.as_str().to_owned()));
        self.attempts.get_or_create(&ended).inc();
        self.attempt_duration
            .get_or_create(&handler)
            .observe(attempt.duration.as_secs_f64());
        if let Some(fuel) = attempt.fuel {
            self.attempt_fuel
                .get_or_create(&handler)
                .observe(fuel as f64);
        }
        self.attempt_memory
            .get_or_create(&handler)
            .observe(attempt.peak_memory_bytes as f64);
    }

    /// What the store made of a delivery after an attempt. A delivery put
    /// back unrun had no attempt and is not counted, whatever the store
    /// made of it (a put-back past its lease is `LeaseLost`).
    pub fn delivery_finished(&self, result: &DeliveryResult, outcome: &FinishOutcome) {
        if matches!(result.decision, Decision::Snooze { .. }) {
            return;
        }
        let (handler, tenant) = (&result.handler, &result.tenant);
        let result = match outcome {
            FinishOutcome::Completed { .. } => "completed",
            FinishOutcome::Retrying => "retrying",
            FinishOutcome::Discarded => "discarded",
            FinishOutcome::Conflict { .. } => "conflict",
            FinishOutcome::LeaseLost => "lease_lost",
            // Only a put-back is snoozed.
            FinishOutcome::Snoozed => return,
        };
        let labels = self.labels(
            vec![
                ("handler", handler.to_owned()),
                ("result", result.to_owned()),
            ],
            tenant,
        );
        self.deliveries_finished.get_or_create(&labels).inc();
    }

    pub fn execution(&self, execution: &ExecutionMeasure<'_>) {
        let labels = self.labels(
            vec![
                ("name", execution.name.to_owned()),
                ("executor", execution.executor.to_owned()),
                ("outcome", execution.outcome.to_owned()),
            ],
            execution.tenant,
        );
        self.directive_duration
            .get_or_create(&labels)
            .observe(execution.duration.as_secs_f64());
    }

    /// `route` is the matched route's pattern (`/v1/signals/{id}`), never
    /// the path itself: paths carry ids, which would make a series each.
    /// A method outside HTTP's own is `other`: a client may send any, and
    /// each would be a series.
    pub fn http_request(&self, method: &str, route: &str, code: u16, duration: Duration) {
        const METHODS: [&str; 9] = [
            "GET", "HEAD", "POST", "PUT", "DELETE", "CONNECT", "OPTIONS", "TRACE", "PATCH",
        ];
        let method = if METHODS.contains(&method) {
            method
        } else {
            "other"
        };
        let labels = vec![
            ("method", method.to_owned()),
            ("route", route.to_owned()),
            ("code", code.to_string()),
        ];
        self.http_duration
            .get_or_create(&labels)
            .observe(duration.as_secs_f64());
    }

    pub fn http_signal(&self, status: EmitStatus) {
        let status = match status {
            EmitStatus::Created => "created",
            EmitStatus::Existing => "existing",
        };
        self.http_signals
            .get_or_create(&vec![("status", status.to_owned())])
            .inc();
    }

    pub fn pruned(&self, kind: &str, n: u64) {
        if n > 0 {
            self.pruned
                .get_or_create(&vec![("kind", kind.to_owned())])
                .inc_by(n);
        }
    }

    /// Writes every family, without the closing `# EOF` (the caller adds
    /// the store's families first).
    pub fn encode(&self, out: &mut String) -> std::fmt::Result {
        encode_registry(out, &self.registry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn attempt<'a>(handler: &'a str, tenant: &'a str) -> AttemptMeasure<'a> {
        AttemptMeasure {
            handler,
            tenant,
            outcome: AttemptOutcome::Ok,
            duration: Duration::from_millis(3),
            fuel: None,
            peak_memory_bytes: 1 << 20,
        }
    }

    fn encoded(metrics: &Metrics) -> String {
        let mut out = String::new();
        metrics.encode(&mut out).expect("encode");
        out
    }

    #[test]
    fn labels_by_tenant_only_when_asked() {
        let off = Metrics::default();
        off.attempt(&attempt("h", "org_a"));
        off.attempt(&attempt("h", "org_b"));
        let text = encoded(&off);
        assert!(!text.contains("tenant="), "{text}");
        assert!(
            text.contains("sighost_attempts_total{handler=\"h\",outcome=\"ok\"} 2"),
            "{text}"
        );
        let on = Metrics::new(&MetricsConfig {
            tenant_labels: true,
        });
        on.attempt(&attempt("h", "org_a"));
        on.attempt(&attempt("h", "org_b"));
        let text = encoded(&on);
        for tenant in ["org_a", "org_b"] {
            let series = format!(
                "sighost_attempts_total{{handler=\"h\",tenant=\"{tenant}\",outcome=\"ok\"}} 1"
            );
            assert!(text.contains(&series), "{text}");
        }
    }

    #[test]
    fn folds_methods_outside_http_into_one_series() {
        let metrics = Metrics::default();
        for method in ["BREW", "FOO1", "FOO2"] {
            metrics.http_request(method, "unmatched", 405, Duration::from_millis(1));
        }
        let text = encoded(&metrics);
        assert!(
            text.contains(
                "sighost_http_request_duration_seconds_count{method=\"other\",route=\"unmatched\",code=\"405\"} 3"
            ),
            "{text}"
        );
        assert!(!text.contains("FOO"), "{text}");
    }

    fn result(decision: Decision) -> DeliveryResult {
        DeliveryResult {
            delivery_id: 1,
            handler: "h".into(),
            tenant: "org_a".into(),
            attempt: 1,
            worker: "w".into(),
            decision,
            handler_digest: String::new(),
            outcome: AttemptOutcome::Ok,
            error: None,
            started_at: chrono::DateTime::UNIX_EPOCH,
            duration: Duration::ZERO,
            fuel: None,
            directive_count: 0,
            output: String::new(),
            details: Default::default(),
        }
    }

    #[test]
    fn counts_what_became_of_each_delivery_but_not_a_put_back() {
        let metrics = Metrics::default();
        let completed = FinishOutcome::Completed {
            directives_created: 0,
            duplicates: 0,
        };
        let ran = result(Decision::Complete(Vec::new()));
        for outcome in [&completed, &completed, &FinishOutcome::LeaseLost] {
            metrics.delivery_finished(&ran, outcome);
        }
        // Put back unrun: in time, and past its lease.
        let put_back = result(Decision::Snooze {
            at: chrono::DateTime::UNIX_EPOCH,
        });
        metrics.delivery_finished(&put_back, &FinishOutcome::Snoozed);
        metrics.delivery_finished(&put_back, &FinishOutcome::LeaseLost);
        let text = encoded(&metrics);
        for series in [
            "sighost_deliveries_finished_total{handler=\"h\",result=\"completed\"} 2",
            "sighost_deliveries_finished_total{handler=\"h\",result=\"lease_lost\"} 1",
        ] {
            assert!(text.contains(series), "{text}");
        }
        assert!(!text.contains("snoozed"), "{text}");
    }

    #[test]
    fn an_attempt_without_fuel_metering_adds_no_fuel_sample() {
        let metrics = Metrics::default();
        metrics.attempt(&attempt("h", "org_a"));
        let text = encoded(&metrics);
        assert!(!text.contains("sighost_attempt_fuel_count"), "{text}");
        assert!(
            text.contains(
                "sighost_attempt_peak_memory_bytes_bucket{le=\"1048576.0\",handler=\"h\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("sighost_attempt_duration_seconds_bucket{le=\"0.0025\",handler=\"h\"} 0"),
            "{text}"
        );
    }
}
