//! Prometheus metrics of the server: jobs by kind and result, their
//! durations, how many run now, and every backend operation that recipes'
//! capability calls turn into, by kind and outcome.

use std::sync::atomic::AtomicI64;
use std::sync::Mutex;
use std::time::Duration;

use async_trait::async_trait;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::Histogram;
use prometheus_client::registry::Registry;

use crate::backend::{
    Backend, BackendError, ContainerRef, ContainerSpec, ExecOutput, ExecRequest, FileWrite, HttpProbe, Ownership,
    ProxyExecutor,
};

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobLabels {
    kind: String,
    result: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct CallLabels {
    capability: String,
    outcome: String,
}

/// One registry per server, so that several servers in one process (tests)
/// keep separate figures.
pub struct Metrics {
    registry: Mutex<Registry>,
    jobs: Family<JobLabels, Counter>,
    durations: Family<KindLabels, Histogram>,
    running: Gauge<i64, AtomicI64>,
    calls: Family<CallLabels, Counter>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let jobs = Family::<JobLabels, Counter>::default();
        let durations = Family::<KindLabels, Histogram>::new_with_constructor(|| {
            // 10 ms to ~40 min: simulated deploys to slow real ones.
            Histogram::new([0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 900.0, 2400.0])
        });
        let running = Gauge::<i64, AtomicI64>::default();
        let calls = Family::<CallLabels, Counter>::default();
        let mut registry = Registry::with_prefix("proximity");
        registry.register("jobs", "Finished jobs by kind and result", jobs.clone());
        registry.register("job_duration_seconds", "Job durations by kind", durations.clone());
        registry.register("jobs_running", "Jobs running now", running.clone());
        registry.register(
            "capability_calls",
            "Backend operations made for recipes' capability calls, by kind and outcome",
            calls.clone(),
        );
        Metrics { registry: Mutex::new(registry), jobs, durations, running, calls }
    }

    pub fn job_started(&self) {
        self.running.inc();
    }

    pub fn job_finished(&self, kind: &str, result: &str, took: Duration) {
        self.running.dec();
        self.jobs.get_or_create(&JobLabels { kind: kind.into(), result: result.into() }).inc();
        self.durations.get_or_create(&KindLabels { kind: kind.into() }).observe(took.as_secs_f64());
    }

    fn call(&self, capability: &str, ok: bool) {
        let outcome = if ok { "ok" } else { "error" };
        self.calls.get_or_create(&CallLabels { capability: capability.into(), outcome: outcome.into() }).inc();
    }

    /// Reports the proxy-exec client's figures ([`ProxyExecutor::stats`]) on
    /// every scrape.
    pub fn watch_proxies(&self, proxy: std::sync::Arc<dyn ProxyExecutor>) {
        let mut registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        registry.register_collector(Box::new(ProxyCollector { proxy }));
    }

    /// The Prometheus text exposition format.
    pub fn render(&self) -> String {
        let mut out = String::new();
        let registry = self.registry.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &registry);
        out
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceLabels {
    service: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceOutcomeLabels {
    service: String,
    outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ServiceStateLabels {
    service: String,
    state: String,
}

/// The proxy services' figures, read from the client at scrape time.
struct ProxyCollector {
    proxy: std::sync::Arc<dyn ProxyExecutor>,
}

impl std::fmt::Debug for ProxyCollector {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ProxyCollector")
    }
}

impl prometheus_client::collector::Collector for ProxyCollector {
    fn encode(&self, mut encoder: prometheus_client::encoding::DescriptorEncoder) -> Result<(), std::fmt::Error> {
        use prometheus_client::encoding::EncodeMetric;
        use prometheus_client::metrics::counter::ConstCounter;
        use prometheus_client::metrics::gauge::ConstGauge;
        use prometheus_client::metrics::MetricType;

        let stats = self.proxy.stats();
        if stats.services.is_empty() {
            return Ok(());
        }
        let service = |s: &crate::api::ProxyServiceStats| ServiceLabels { service: s.service.clone() };

        let mut calls = encoder.encode_descriptor(
            "proxy_calls",
            "proxy-exec calls by service and outcome (fast_failed: refused by the open circuit breaker)",
            None,
            MetricType::Counter,
        )?;
        for s in &stats.services {
            for (outcome, count) in [("succeeded", s.succeeded), ("failed", s.failed), ("fast_failed", s.fast_failed)] {
                let labels = ServiceOutcomeLabels { service: s.service.clone(), outcome: outcome.into() };
                ConstCounter::new(count).encode(calls.encode_family(&labels)?)?;
            }
        }
        type Figure = fn(&crate::api::ProxyServiceStats) -> u64;
        let counters: [(&str, &str, Figure); 4] = [
            ("proxy_retries", "Further attempts after a connection failure", |s| s.retries),
            ("proxy_connections", "SSH connections opened to proxies", |s| s.connections),
            ("proxy_connection_reuses", "Commands run on an already open SSH connection", |s| s.reuses),
            ("proxy_connection_failures", "SSH connections to proxies that failed or broke", |s| s.connection_failures),
        ];
        for (name, help, value) in counters {
            let mut metric = encoder.encode_descriptor(name, help, None, MetricType::Counter)?;
            for s in &stats.services {
                ConstCounter::new(value(s)).encode(metric.encode_family(&service(s))?)?;
            }
        }
        let mut open = encoder.encode_descriptor(
            "proxy_open_connections",
            "SSH connections to proxies open now",
            None,
            MetricType::Gauge,
        )?;
        for s in &stats.services {
            ConstGauge::new(s.open_connections as i64).encode(open.encode_family(&service(s))?)?;
        }
        let mut breaker = encoder.encode_descriptor(
            "proxy_breaker",
            "The circuit breaker's state per service: 1 for the current one",
            None,
            MetricType::Gauge,
        )?;
        for s in &stats.services {
            for state in ["closed", "open", "half-open"] {
                let labels = ServiceStateLabels { service: s.service.clone(), state: state.into() };
                ConstGauge::new(i64::from(s.breaker == state)).encode(breaker.encode_family(&labels)?)?;
            }
        }
        Ok(())
    }
}

/// A backend that counts every operation by kind and outcome.
pub struct Metered {
    inner: std::sync::Arc<dyn Backend>,
    metrics: std::sync::Arc<Metrics>,
}

impl Metered {
    pub fn new(inner: std::sync::Arc<dyn Backend>, metrics: std::sync::Arc<Metrics>) -> Self {
        Metered { inner, metrics }
    }

    fn count<T>(&self, capability: &str, result: Result<T, BackendError>) -> Result<T, BackendError> {
        self.metrics.call(capability, result.is_ok());
        result
    }
}

#[async_trait]
impl Backend for Metered {
    fn name(&self) -> &'static str {
        self.inner.name()
    }
    async fn owned(&self) -> Result<Vec<(ContainerRef, Ownership)>, BackendError> {
        self.inner.owned().await
    }
    async fn create(&self, owner: &Ownership, spec: &ContainerSpec) -> Result<ContainerRef, BackendError> {
        let result = self.inner.create(owner, spec).await;
        self.count("create-lxc", result)
    }
    async fn start(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let result = self.inner.start(c).await;
        self.count("start", result)
    }
    async fn stop(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let result = self.inner.stop(c).await;
        self.count("stop", result)
    }
    async fn destroy(&self, c: &ContainerRef) -> Result<(), BackendError> {
        let result = self.inner.destroy(c).await;
        self.count("destroy", result)
    }
    async fn address(&self, c: &ContainerRef, timeout: Duration) -> Result<String, BackendError> {
        let result = self.inner.address(c, timeout).await;
        self.count("address", result)
    }
    async fn exec(&self, c: &ContainerRef, request: &ExecRequest) -> Result<ExecOutput, BackendError> {
        let result = self.inner.exec(c, request).await;
        // A command that ran and failed is still a call that worked.
        self.count("container-exec", result)
    }
    async fn write_file(&self, c: &ContainerRef, file: &FileWrite) -> Result<(), BackendError> {
        let result = self.inner.write_file(c, file).await;
        self.count("write-file", result)
    }
    async fn read_file(&self, c: &ContainerRef, path: &str) -> Result<Vec<u8>, BackendError> {
        let result = self.inner.read_file(c, path).await;
        self.count("read-file", result)
    }
    async fn wait_tcp(&self, c: &ContainerRef, port: u16, timeout: Duration) -> Result<(), BackendError> {
        let result = self.inner.wait_tcp(c, port, timeout).await;
        self.count("probe", result)
    }
    async fn wait_http(&self, c: &ContainerRef, probe: &HttpProbe, timeout: Duration) -> Result<u16, BackendError> {
        let result = self.inner.wait_http(c, probe, timeout).await;
        self.count("probe", result)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_jobs_durations_and_running() {
        let metrics = Metrics::new();
        metrics.job_started();
        metrics.job_started();
        metrics.job_finished("install", "succeeded", Duration::from_millis(30));
        metrics.call("container-exec", true);
        let text = metrics.render();
        assert!(text.contains("proximity_jobs_total{kind=\"install\",result=\"succeeded\"} 1"), "{text}");
        assert!(text.contains("proximity_jobs_running 1"), "{text}");
        assert!(text.contains("proximity_job_duration_seconds_count{kind=\"install\"} 1"), "{text}");
        assert!(
            text.contains("proximity_capability_calls_total{capability=\"container-exec\",outcome=\"ok\"} 1"),
            "{text}"
        );
    }
}
