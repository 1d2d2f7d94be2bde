//! The optional Prometheus metrics listener (`metrics_listen`; off by default).
//!
//! Everything it shows comes from the socket's status object
//! ([`crate::socket::status_json`]), so a scrape and `promos-licd status` never
//! disagree: the license state, whether the host is licensed, the seconds until a
//! forced stop, the last successful check, the seats in use and licensed, and
//! whether the runtime runs.
//!
//! The listener speaks just enough HTTP/1.1 for a scraper: `GET /metrics`, one
//! request per connection, a bounded request head, a read timeout.

use crate::service::Shared;
use crate::state::Phase;
use serde_json::Value;
use std::fmt::Write as _;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// The content type of the Prometheus text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// A request head larger than this is refused (scrapers send a few hundred bytes).
const MAX_HEAD: usize = 8 * 1024;
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// The exposition for one status object.
pub fn render(status: &Value) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP promos_licd_{name} {help}");
        let _ = writeln!(out, "# TYPE promos_licd_{name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "promos_licd_{name}{labels} {v}");
        }
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    let number = |key: &str| status[key].as_f64();
    let state = status["state"].as_str().unwrap_or("");
    metric(
        "state",
        "The license state (1 for the current one; see the socket protocol's `state`)",
        &Phase::ALL
            .iter()
            .map(|p| {
                let name = serde_json::to_value(p)
                    .ok()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .unwrap_or_default();
                let current = flag(name == state);
                (format!("{{state=\"{name}\"}}"), current)
            })
            .collect::<Vec<_>>(),
    );
    metric(
        "licensed",
        "1 while ProMoS may run",
        &[(String::new(), flag(status["licensed"] == Value::Bool(true)))],
    );
    if let Some(secs) = number("seconds_until_stop") {
        metric(
            "seconds_until_stop",
            "Seconds until the runtime must stop (absent when no stop is scheduled)",
            &[(String::new(), secs)],
        );
    }
    if let Some(at) = number("last_check_unix") {
        metric(
            "last_check_timestamp_seconds",
            "When the license server last answered a check (its time, Unix seconds)",
            &[(String::new(), at)],
        );
    }
    metric(
        "check_failing",
        "1 if the last check with the license server failed",
        &[(String::new(), flag(!status["last_check_failure"].is_null()))],
    );
    let storage = &status["storage"];
    metric(
        "storage_problems",
        "Damage or loss of the stored license state found at start (see `storage.problems` in the status)",
        &[(
            String::new(),
            storage["problems"].as_array().map_or(0, Vec::len) as f64,
        )],
    );
    metric(
        "storage_write_failing",
        "1 while the license state cannot be written (disk full); the daemon answers from memory",
        &[(String::new(), flag(!storage["write_error"].is_null()))],
    );
    metric(
        "storage_recovering",
        "1 while the stored license state is lost and is being fetched from the server",
        &[(
            String::new(),
            flag(!storage["recovering_license"].is_null()),
        )],
    );
    metric(
        "runtime_running",
        "1 while the ProMoS runtime reports it runs",
        &[(String::new(), flag(status["runtime"] == "running"))],
    );
    if let Some(serial) = number("grant_serial") {
        metric(
            "grant_serial",
            "Serial of the license grant in force",
            &[(String::new(), serial)],
        );
    }
    for (name, key, help) in [
        ("seats_used", "used", "Seats held by ProMoS programs"),
        ("seats_limit", "limit", "Seats the license allows"),
    ] {
        let samples: Vec<(String, f64)> = ["ge", "pwa"]
            .iter()
            .filter_map(|p| {
                let v = status["seats"][p][key].as_f64()?;
                Some((format!("{{program=\"{p}\"}}"), v))
            })
            .collect();
        metric(name, help, &samples);
    }
    out
}

/// Serves scrapes until the task is aborted.
pub async fn serve(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        match listener.accept().await {
            Ok((stream, _)) => {
                let shared = Arc::clone(&shared);
                tokio::spawn(async move {
                    if let Err(e) = answer(stream, &shared).await {
                        tracing::debug!(error = %e, "metrics request failed");
                    }
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "metrics accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn answer(mut stream: TcpStream, shared: &Arc<Shared>) -> std::io::Result<()> {
    let head = match tokio::time::timeout(READ_TIMEOUT, read_head(&mut stream)).await {
        Ok(head) => head?,
        Err(_) => return Ok(()),
    };
    let (status, body) = match head.as_deref().map(request_target) {
        None => ("431 Request Header Fields Too Large", String::new()),
        Some(Some(("GET", "/metrics"))) => {
            let status = crate::socket::status_json(shared);
            ("200 OK", render(&status))
        }
        Some(Some(("GET", _))) => ("404 Not Found", "only /metrics is served here\n".into()),
        Some(Some(_)) => ("405 Method Not Allowed", String::new()),
        Some(None) => ("400 Bad Request", String::new()),
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {CONTENT_TYPE}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(response.as_bytes()).await?;
    stream.shutdown().await
}

/// Reads up to the end of the request head; `None` if it is too large.
async fn read_head(stream: &mut TcpStream) -> std::io::Result<Option<Vec<u8>>> {
    let mut head = Vec::with_capacity(512);
    let mut buf = [0u8; 1024];
    loop {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(Some(head));
        }
        head.extend_from_slice(&buf[..n]);
        if head.windows(4).any(|w| w == b"\r\n\r\n") {
            return Ok(Some(head));
        }
        if head.len() > MAX_HEAD {
            return Ok(None);
        }
    }
}

/// Method and path of the request line (query string dropped).
fn request_target(head: &[u8]) -> Option<(&str, &str)> {
    let line = head.split(|&b| b == b'\r').next()?;
    let line = std::str::from_utf8(line).ok()?;
    let mut parts = line.split(' ');
    let method = parts.next()?;
    let target = parts.next()?;
    parts.next()?.starts_with("HTTP/1.").then_some(())?;
    Some((method, target.split('?').next().unwrap_or(target)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn the_exposition_reflects_the_status_object() {
        let text = render(&json!({
            "state": "server_unreachable", "licensed": true, "seconds_until_stop": 86400,
            "last_check_unix": 1767225600, "last_check_failure": "timed out",
            "runtime": "running", "grant_serial": 3,
            "seats": {"ge": {"used": 1, "limit": 2}, "pwa": {"used": 0, "limit": 5}},
        }));
        for line in [
            "promos_licd_state{state=\"server_unreachable\"} 1",
            "promos_licd_state{state=\"licensed\"} 0",
            "promos_licd_licensed 1",
            "promos_licd_seconds_until_stop 86400",
            "promos_licd_last_check_timestamp_seconds 1767225600",
            "promos_licd_check_failing 1",
            "promos_licd_runtime_running 1",
            "promos_licd_grant_serial 3",
            "promos_licd_seats_used{program=\"ge\"} 1",
            "promos_licd_seats_limit{program=\"pwa\"} 5",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        assert_eq!(
            text.lines()
                .filter(|l| l.starts_with("promos_licd_state{"))
                .count(),
            Phase::ALL.len(),
            "every state is listed"
        );
        let idle = render(&json!({"state": "not_activated", "licensed": false,
            "seconds_until_stop": null, "last_check_failure": null, "runtime": "stopped"}));
        assert!(!idle.contains("seconds_until_stop "), "no stop, no sample");
        assert!(idle.lines().any(|l| l == "promos_licd_licensed 0"));
        assert!(idle
            .lines()
            .any(|l| l == "promos_licd_state{state=\"not_activated\"} 1"));
    }

    #[test]
    fn storage_damage_a_full_disk_and_a_recovery_are_in_the_metrics() {
        let text = render(&json!({
            "state": "not_activated", "licensed": false, "runtime": "stopped",
            "storage": {"ok": false,
                "problems": [{"code": "cache_db_lost_state", "de": "…", "en": "…"},
                             {"code": "state_file_damaged", "de": "…", "en": "…"}],
                "write_error": "No space left on device", "recovering_license": "1921900019"},
        }));
        for line in [
            "promos_licd_storage_problems 2",
            "promos_licd_storage_write_failing 1",
            "promos_licd_storage_recovering 1",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "missing {line:?} in\n{text}"
            );
        }
        let healthy = render(&json!({"state": "licensed", "licensed": true,
            "storage": {"ok": true, "problems": [], "write_error": null, "recovering_license": null}}));
        for line in [
            "promos_licd_storage_problems 0",
            "promos_licd_storage_write_failing 0",
            "promos_licd_storage_recovering 0",
        ] {
            assert!(
                healthy.lines().any(|l| l == line),
                "missing {line:?} in\n{healthy}"
            );
        }
    }

    #[test]
    fn request_lines_are_parsed_strictly() {
        assert_eq!(
            request_target(b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"),
            Some(("GET", "/metrics"))
        );
        assert_eq!(request_target(b"GET /metrics\r\n\r\n"), None);
        assert_eq!(request_target(b"\xff\xfe HTTP/1.1\r\n"), None);
        assert_eq!(request_target(b""), None);
    }
}
