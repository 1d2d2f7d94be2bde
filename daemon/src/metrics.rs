//! The optional Prometheus metrics listener (`metrics_listen`; off by default).
//!
//! Everything it shows comes from the socket's status object
//! ([`crate::protocol::Status`], built by [`crate::socket::status`]), so a scrape and `promos-licd status` never
//! disagree: the license state, whether the host is licensed, the seconds until a
//! forced stop, the last successful check, the seats in use and licensed, and
//! whether the runtime runs.
//!
//! The listener speaks just enough HTTP/1.1 for a scraper: `GET /metrics`, one
//! request per connection, a bounded request head, a read timeout.

use crate::protocol::{Runtime, SeatCount, Status};
use crate::service::Shared;
use crate::state::Phase;
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
pub fn render(status: &Status) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, help: &str, samples: &[(String, f64)]| {
        let _ = writeln!(out, "# HELP promos_licd_{name} {help}");
        let _ = writeln!(out, "# TYPE promos_licd_{name} gauge");
        for (labels, v) in samples {
            let _ = writeln!(out, "promos_licd_{name}{labels} {v}");
        }
    };
    let flag = |b: bool| if b { 1.0 } else { 0.0 };
    metric(
        "state",
        "The license state (1 for the current one; see the socket protocol's `state`)",
        &Phase::ALL
            .iter()
            .map(|p| {
                let current = flag(*p == status.state);
                (format!("{{state=\"{}\"}}", p.name()), current)
            })
            .collect::<Vec<_>>(),
    );
    metric(
        "licensed",
        "1 while ProMoS may run",
        &[(String::new(), flag(status.licensed))],
    );
    if let Some(secs) = status.seconds_until_stop {
        metric(
            "seconds_until_stop",
            "Seconds until the runtime must stop (absent when no stop is scheduled)",
            &[(String::new(), secs as f64)],
        );
    }
    if let Some(at) = status.last_check_unix {
        metric(
            "last_check_timestamp_seconds",
            "When the license server last answered a check (its time, Unix seconds)",
            &[(String::new(), at as f64)],
        );
    }
    metric(
        "check_failing",
        "1 if the last check with the license server failed",
        &[(String::new(), flag(status.last_check_failure.is_some()))],
    );
    let storage = &status.storage;
    metric(
        "storage_problems",
        "Damage or loss of the stored license state found at start (see `storage.problems` in the status)",
        &[(String::new(), storage.problems.len() as f64)],
    );
    metric(
        "storage_write_failing",
        "1 while the license state cannot be written (disk full); the daemon answers from memory",
        &[(String::new(), flag(storage.write_error.is_some()))],
    );
    metric(
        "storage_recovering",
        "1 while the stored license state is lost and is being fetched from the server",
        &[(String::new(), flag(storage.recovering_license.is_some()))],
    );
    metric(
        "runtime_running",
        "1 while the ProMoS runtime reports it runs",
        &[(String::new(), flag(status.runtime == Runtime::Running))],
    );
    if let Some(serial) = status.grant_serial {
        metric(
            "grant_serial",
            "Serial of the license grant in force",
            &[(String::new(), serial as f64)],
        );
    }
    let seats = [("ge", status.seats.ge), ("pwa", status.seats.pwa)];
    for (name, help, pick) in [
        (
            "seats_used",
            "Seats held by ProMoS programs",
            (|c: SeatCount| c.used) as fn(SeatCount) -> u32,
        ),
        ("seats_limit", "Seats the license allows", |c: SeatCount| {
            c.limit
        }),
    ] {
        let samples: Vec<(String, f64)> = seats
            .iter()
            .map(|(p, c)| (format!("{{program=\"{p}\"}}"), f64::from(pick(*c))))
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
            let status = crate::socket::status(shared);
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

    #[test]
    fn the_exposition_reflects_the_status_object() {
        let mut status = crate::protocol::tests::example_status();
        status.seats.ge.used = 1;
        status.seats.ge.limit = 2;
        status.last_check_unix = Some(1_767_225_600);
        status.seconds_until_stop = Some(86_400);
        let text = render(&status);
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
        status.state = Phase::NotActivated;
        status.licensed = false;
        status.seconds_until_stop = None;
        status.last_check_failure = None;
        status.runtime = Runtime::Stopped;
        status.grant_serial = None;
        let idle = render(&status);
        assert!(!idle.contains("seconds_until_stop "), "no stop, no sample");
        assert!(!idle.contains("grant_serial "), "no grant, no sample");
        assert!(idle.lines().any(|l| l == "promos_licd_licensed 0"));
        assert!(idle.lines().any(|l| l == "promos_licd_check_failing 0"));
        assert!(idle
            .lines()
            .any(|l| l == "promos_licd_state{state=\"not_activated\"} 1"));
    }

    #[test]
    fn storage_damage_a_full_disk_and_a_recovery_are_in_the_metrics() {
        let mut status = crate::protocol::tests::example_status();
        let problem = |code| crate::cache::StorageProblem {
            code,
            de: "…".into(),
            en: "…".into(),
        };
        status.storage = crate::protocol::Storage {
            ok: false,
            problems: vec![
                problem("cache_db_lost_state"),
                problem("state_file_damaged"),
            ],
            recovering_license: Some("1921900019".into()),
            write_error: Some("No space left on device".into()),
        };
        let text = render(&status);
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
        status.storage = crate::protocol::Storage {
            ok: true,
            problems: vec![],
            recovering_license: None,
            write_error: None,
        };
        let healthy = render(&status);
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
