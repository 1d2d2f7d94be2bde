//! Prometheus metrics of the license server, served on their own listener
//! (`[metrics] listen`, loopback by default) so the portal's public port never
//! shows them.
//!
//! Counters and histograms are updated where things happen ([`crate::service`]
//! for daemon requests, [`crate::quic`] for connections, the portal's request log
//! for HTTP, [`crate::mail`] for deliveries); the gauges that describe stored state
//! (store size, licenses, the email queue) are read when Prometheus scrapes.
//!
//! Label values come from fixed lists (request kinds, outcomes, refusal reasons,
//! route templates), never from request data, so a client cannot grow the series.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use std::net::SocketAddr;
use std::time::Duration;
use wire::{ErrorReply, RefusalReason, Request, Response};

/// The content type of the OpenMetrics text format, which Prometheus reads.
pub const CONTENT_TYPE: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DaemonLabels {
    kind: &'static str,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct KindLabels {
    kind: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabels {
    reason: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct EventLabels {
    event: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

type Histograms<L> = Family<L, Histogram, fn() -> Histogram>;

/// 0.5 ms to about 16 s in doublings: daemon answers take milliseconds, a slow
/// disk or a large admin page can take seconds.
fn latency_histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.0005, 2.0, 16))
}

/// State read at scrape time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Snapshot {
    pub store_bytes: u64,
    pub licenses: u64,
    pub accounts: u64,
    pub email_queue: u64,
    pub email_failing: u64,
}

/// Every metric of `pls`.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    daemon_requests: Family<DaemonLabels, Counter>,
    daemon_seconds: Histograms<KindLabels>,
    refusals: Family<ReasonLabels, Counter>,
    quic_connections: Family<EventLabels, Counter>,
    quic_open: Gauge,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: Histograms<RouteLabels>,
    emails: Family<OutcomeLabels, Counter>,
    email_queue: Gauge,
    email_failing: Gauge,
    store_bytes: Gauge,
    licenses: Gauge,
    accounts: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let m = Metrics {
            registry: Registry::with_prefix("pls"),
            daemon_requests: Family::default(),
            daemon_seconds: Family::new_with_constructor(latency_histogram),
            refusals: Family::default(),
            quic_connections: Family::default(),
            quic_open: Gauge::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram),
            emails: Family::default(),
            email_queue: Gauge::default(),
            email_failing: Gauge::default(),
            store_bytes: Gauge::default(),
            licenses: Gauge::default(),
            accounts: Gauge::default(),
        };
        let mut r = m.registry;
        r.register(
            "daemon_requests",
            "Daemon requests over QUIC by kind (hello, activate, check, deactivate, relay; undecodable for frames that are no request) and outcome (ok, refused, rate_limited, unavailable, malformed, unsupported_version)",
            m.daemon_requests.clone(),
        );
        r.register(
            "daemon_request_duration_seconds",
            "Time to answer a daemon request (decode, store write, signing), by kind",
            m.daemon_seconds.clone(),
        );
        r.register(
            "refusals",
            "Signed refusals sent to daemons, by reason",
            m.refusals.clone(),
        );
        r.register(
            "quic_connections",
            "QUIC connection events: accepted, refused_per_source (too many from one address), handshake_failed",
            m.quic_connections.clone(),
        );
        r.register(
            "quic_connections_open",
            "QUIC connections open now",
            m.quic_open.clone(),
        );
        r.register(
            "http_requests",
            "Portal HTTP requests by method, route template and status",
            m.http_requests.clone(),
        );
        r.register(
            "http_request_duration_seconds",
            "Portal HTTP request duration by route template",
            m.http_seconds.clone(),
        );
        r.register(
            "email_deliveries",
            "Email delivery attempts by outcome (sent, failed)",
            m.emails.clone(),
        );
        r.register(
            "email_queue_length",
            "Emails waiting to be delivered",
            m.email_queue.clone(),
        );
        r.register(
            "email_queue_failing",
            "Queued emails whose delivery failed at least once",
            m.email_failing.clone(),
        );
        r.register(
            "store_size_bytes",
            "Size of the database on disk",
            m.store_bytes.clone(),
        );
        r.register("licenses", "Licenses in the store", m.licenses.clone());
        r.register("accounts", "Accounts in the store", m.accounts.clone());
        Metrics { registry: r, ..m }
    }

    /// Counts one answered daemon request. Refusal reasons are counted by
    /// [`Metrics::refusal`] where the refusal is made.
    pub fn daemon_request(&self, kind: &'static str, response: &Response, took: Duration) {
        let outcome = outcome(response);
        self.daemon_requests
            .get_or_create(&DaemonLabels { kind, outcome })
            .inc();
        self.daemon_seconds
            .get_or_create(&KindLabels { kind })
            .observe(took.as_secs_f64());
    }

    pub fn refusal(&self, reason: RefusalReason) {
        self.refusals
            .get_or_create(&ReasonLabels {
                reason: reason.key(),
            })
            .inc();
    }

    /// `event`: `accepted`, `refused_per_source` or `handshake_failed`.
    pub fn quic_connection(&self, event: &'static str) {
        self.quic_connections
            .get_or_create(&EventLabels { event })
            .inc();
    }

    /// Counts an open connection until the returned guard is dropped.
    pub fn quic_open(&self) -> OpenConnection {
        self.quic_open.inc();
        OpenConnection(self.quic_open.clone())
    }

    pub fn http_request(&self, method: &str, path: &str, status: u16, took: Duration) {
        let route = route_template(path);
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "HEAD" => "HEAD",
            _ => "other",
        };
        self.http_requests
            .get_or_create(&HttpLabels {
                method,
                route,
                status,
            })
            .inc();
        self.http_seconds
            .get_or_create(&RouteLabels { route })
            .observe(took.as_secs_f64());
    }

    pub fn email_delivery(&self, sent: bool) {
        let outcome = if sent { "sent" } else { "failed" };
        self.emails.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// The whole exposition, with the gauges set from `snapshot`.
    pub fn render(&self, snapshot: Snapshot) -> String {
        let g = |v: u64| i64::try_from(v).unwrap_or(i64::MAX);
        self.store_bytes.set(g(snapshot.store_bytes));
        self.licenses.set(g(snapshot.licenses));
        self.accounts.set(g(snapshot.accounts));
        self.email_queue.set(g(snapshot.email_queue));
        self.email_failing.set(g(snapshot.email_failing));
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

/// Decrements the open-connections gauge when dropped.
#[derive(Debug)]
pub struct OpenConnection(Gauge);

impl Drop for OpenConnection {
    fn drop(&mut self) {
        self.0.dec();
    }
}

/// The metrics name of a request kind.
pub fn request_kind(request: &Request) -> &'static str {
    match request {
        Request::Hello(_) => "hello",
        Request::Activate(_) | Request::ActivateWithFacts(..) => "activate",
        Request::Check(_) | Request::CheckWithFacts(..) | Request::CheckCompact(_) => "check",
        Request::Deactivate(_) => "deactivate",
        Request::Relay(_) => "relay",
    }
}

fn outcome(response: &Response) -> &'static str {
    match response {
        Response::Refused(_) => "refused",
        Response::Error(ErrorReply::RateLimited { .. }) => "rate_limited",
        Response::Error(ErrorReply::Unavailable) => "unavailable",
        Response::Error(ErrorReply::Malformed(_)) => "malformed",
        Response::Error(ErrorReply::FactsNeeded) => "facts_needed",
        Response::Error(ErrorReply::UnsupportedProtocolVersion { .. }) => "unsupported_version",
        Response::Hello { .. }
        | Response::Activated { .. }
        | Response::Checked { .. }
        | Response::CheckedCompact { .. }
        | Response::Deactivated { .. }
        | Response::Relayed(_) => "ok",
    }
}

/// The portal's routes as templates (`{}` is one path segment). A path that
/// matches none is `other`: unknown paths must not create series.
const ROUTES: &[&str] = &[
    "/",
    "/static/{}",
    "/quote",
    "/quote/{}",
    "/api/price",
    "/quotes",
    "/quotes/{}/{}",
    "/quotes/{}/{}/order",
    "/quotes/{}/{}/delete",
    "/licenses",
    "/licenses/{}",
    "/licenses/{}/edit",
    "/licenses/{}/download",
    "/licenses/{}/promos-licd.toml",
    "/licenses/{}/reset",
    "/licenses/{}/upgrade",
    "/licenses/{}/renew",
    "/login",
    "/register",
    "/verify",
    "/verify/resend",
    "/password/forgot",
    "/password/reset",
    "/logout",
    "/lang/{}",
    "/imprint",
    "/privacy",
    "/admin",
    "/admin/mail/{}/retry",
    "/admin/orders/{}/{}/paid",
    "/admin/licenses",
    "/admin/licenses/{}",
    "/admin/licenses/{}/dongle",
    "/admin/customers",
    "/admin/customers/{}/trusted",
];

/// The route template `path` belongs to, or `other`.
pub fn route_template(path: &str) -> &'static str {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').skip(1).collect();
    ROUTES
        .iter()
        .find(|route| {
            let parts: Vec<&str> = route.trim_end_matches('/').split('/').skip(1).collect();
            parts.len() == segments.len()
                && parts
                    .iter()
                    .zip(&segments)
                    .all(|(p, s)| *p == "{}" && !s.is_empty() || p == s)
        })
        .copied()
        .unwrap_or("other")
}

/// The metrics listener (`[metrics]` in the config).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MetricsConfig {
    /// `false` serves no metrics at all.
    pub enabled: bool,
    /// The default port follows the Prometheus convention of one port per
    /// exporter; loopback only, so scraping from elsewhere is a deliberate choice.
    pub listen: SocketAddr,
}

impl Default for MetricsConfig {
    fn default() -> Self {
        MetricsConfig {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9464)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_map_to_their_route_templates_and_unknown_paths_to_other() {
        assert_eq!(route_template("/"), "/");
        assert_eq!(route_template("/licenses/PLS-1234-5678"), "/licenses/{}");
        assert_eq!(
            route_template("/licenses/PLS-1234-5678/edit"),
            "/licenses/{}/edit"
        );
        assert_eq!(route_template("/quotes/X/2/order"), "/quotes/{}/{}/order");
        assert_eq!(
            route_template("/admin/customers/17/trusted"),
            "/admin/customers/{}/trusted"
        );
        assert_eq!(route_template("/static/style.css"), "/static/{}");
        assert_eq!(route_template("/wp-admin/install.php"), "other");
        assert_eq!(route_template("/licenses//edit"), "other");
        assert_eq!(route_template("/admin/licenses/1/2/3/4"), "other");
    }

    #[test]
    fn the_exposition_has_counters_by_label_and_the_scrape_time_gauges() {
        let m = Metrics::new();
        let took = Duration::from_millis(3);
        m.daemon_request(
            "check",
            &Response::Error(ErrorReply::RateLimited {
                retry_after_secs: 60,
            }),
            took,
        );
        m.refusal(RefusalReason::WrongToken);
        m.refusal(RefusalReason::WrongToken);
        m.http_request("GET", "/licenses/PLS-1", 200, took);
        m.email_delivery(false);
        let conn = m.quic_open();
        let text = m.render(Snapshot {
            store_bytes: 4096,
            licenses: 7,
            accounts: 3,
            email_queue: 2,
            email_failing: 1,
        });
        for line in [
            "pls_daemon_requests_total{kind=\"check\",outcome=\"rate_limited\"} 1",
            "pls_refusals_total{reason=\"wrong_token\"} 2",
            "pls_http_requests_total{method=\"GET\",route=\"/licenses/{}\",status=\"200\"} 1",
            "pls_email_deliveries_total{outcome=\"failed\"} 1",
            "pls_quic_connections_open 1",
            "pls_store_size_bytes 4096",
            "pls_licenses 7",
            "pls_accounts 3",
            "pls_email_queue_length 2",
            "pls_email_queue_failing 1",
            "pls_daemon_request_duration_seconds_count{kind=\"check\"} 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        drop(conn);
        assert!(m
            .render(Snapshot::default())
            .lines()
            .any(|l| l == "pls_quic_connections_open 0"));
    }
}
