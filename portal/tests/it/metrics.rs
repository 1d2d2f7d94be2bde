//! The metrics listener over real HTTP: what daemons and portal users did shows up
//! in the counters, stored state in the gauges, and nothing else is served there.

use crate::util::TestServer;
use keys::Protection;
use std::io::{Read, Write};
use std::net::SocketAddr;
use wire::RuntimeState;

/// A plain HTTP/1.1 GET; returns the status code and the body.
fn get(addr: SocketAddr, path: &str) -> (u16, String, String) {
    let mut s = std::net::TcpStream::connect(addr).expect("connect");
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    s.read_to_string(&mut raw).expect("read");
    let (head, body) = raw.split_once("\r\n\r\n").expect("a full response");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status code");
    (status, head.to_owned(), body.to_owned())
}

fn value(text: &str, series: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no series {series} in\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counters_follow_daemon_and_portal_traffic_and_gauges_read_the_store() {
    let server = TestServer::start().await;
    let metrics = server.metrics_addr.expect("metrics are on by default");
    let (number, token) = server.license(Protection::SoftDongle, true);

    let host = server.daemon(1).await;
    let activated = host.activate(&number, &token).await;
    let serial = activated.grant().expect("activated").serial;
    for _ in 0..3 {
        assert!(host
            .check(&number, Some(serial), RuntimeState::Running)
            .await
            .refusal()
            .is_none());
    }
    let other = server.daemon(2).await;
    assert_eq!(
        other.activate(&number, "not-the-token").await.refusal(),
        Some(wire::RefusalReason::WrongToken)
    );
    let malformed = portal::quic::client::raw(&other.conn, &[0xff; 16]).await;
    assert!(
        malformed.is_ok(),
        "a garbage frame gets an answer: {malformed:?}"
    );

    assert_eq!(get(server.http_addr, "/login").0, 200);
    assert_eq!(get(server.http_addr, "/licenses/PLS-0000-0000").0, 303);
    assert_eq!(get(server.http_addr, "/no/such/page").0, 404);

    let (status, head, text) = get(metrics, "/metrics");
    assert_eq!(status, 200);
    assert!(head.contains("application/openmetrics-text"), "{head}");
    assert!(text.trim_end().ends_with("# EOF"), "a complete exposition");
    assert_eq!(
        value(
            &text,
            "pls_daemon_requests_total{kind=\"activate\",outcome=\"ok\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pls_daemon_requests_total{kind=\"check\",outcome=\"ok\"}"
        ),
        3.0
    );
    assert_eq!(
        value(
            &text,
            "pls_daemon_requests_total{kind=\"activate\",outcome=\"refused\"}"
        ),
        1.0
    );
    assert_eq!(
        value(&text, "pls_refusals_total{reason=\"wrong_token\"}"),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pls_daemon_requests_total{kind=\"undecodable\",outcome=\"malformed\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pls_daemon_request_duration_seconds_count{kind=\"check\"}"
        ),
        3.0
    );
    assert_eq!(
        value(&text, "pls_quic_connections_total{event=\"accepted\"}"),
        2.0
    );
    assert_eq!(value(&text, "pls_quic_connections_open"), 2.0);
    assert_eq!(
        value(
            &text,
            "pls_http_requests_total{method=\"GET\",route=\"/login\",status=\"200\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pls_http_requests_total{method=\"GET\",route=\"/licenses/{}\",status=\"303\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "pls_http_requests_total{method=\"GET\",route=\"other\",status=\"404\"}"
        ),
        1.0
    );
    assert!(
        !text.contains("PLS-0000-0000") && !text.contains("/no/such/page"),
        "request data never becomes a label"
    );
    assert_eq!(value(&text, "pls_licenses"), 1.0);
    assert!(value(&text, "pls_store_size_bytes") > 0.0);
    assert_eq!(value(&text, "pls_email_queue_length"), 0.0);

    // Only /metrics is served there, and the portal does not serve it.
    assert_eq!(get(metrics, "/").0, 404);
    assert_eq!(get(server.http_addr, "/metrics").0, 404);
    drop((host, other));
    server.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_metrics_listener_can_be_switched_off() {
    let server = TestServer::start_with(|c| c.metrics.enabled = false).await;
    assert_eq!(server.metrics_addr, None);
    server.stop().await;
}
