//! The local socket for the ProMoS runtime: JSON lines over a Unix socket.
//!
//! # Protocol (for the C++ runtime)
//!
//! Connect to the Unix stream socket (default `/run/promos-licd/promos-licd.sock`;
//! mode 0660, group from `socket_group`: add the ProMoS runtime's user to that
//! group). Send one JSON object per line (UTF-8, `\n`-terminated, at most 64 KiB);
//! get one JSON object per line back, in order. Every request may carry an
//! `"id"` (any JSON value), echoed in its answer. Answers have `"ok": true` or
//! `"ok": false` with `"error"` (a stable code) and `"message"`. A bad line gets
//! an error answer and the connection stays usable (a line over 64 KiB closes it).
//!
//! | request | answer |
//! | --- | --- |
//! | `{"cmd":"status"}` | `{"ok":true,"status":{...}}` (below) |
//! | `{"cmd":"acquire_seat","program":"ge"}` (or `"pwa"`) | `{"ok":true,"program":"ge","held":1,"used":1,"limit":2}` or `{"ok":false,"error":"no_seat_free",...}` |
//! | `{"cmd":"release_seat","program":"ge"}` | `{"ok":true,...}` or `"error":"no_seat_held"` |
//! | `{"cmd":"seats"}` | `{"ok":true,"seats":{"ge":{"used":1,"limit":2},"pwa":{...}}}` |
//! | `{"cmd":"runtime_started"}` | `{"ok":true,"status":{...}}`; this connection now owns the run |
//! | `{"cmd":"runtime_stopped"}` | `{"ok":true}` |
//! | `{"cmd":"subscribe"}` | `{"ok":true,"subscribed":true}`, then pushed event lines |
//! | `{"cmd":"check_now"}` | waits for a check that starts after the request, then `{"ok":true,"check":"succeeded","status":{...}}` (`check`: `succeeded`, `refused`, `failed`, `not_activated`, `timed_out`) |
//! | `{"cmd":"activate","license_number":"1921900012","token":"...","server":"license.promosnt.com"}` | `{"ok":true,"status":{...}}` or `"error":"activation_refused"` with German and English text |
//! | `{"cmd":"hwid"}` | `{"ok":true,"hardware_id":"502c649d1171ad2e8705074ce97791db"}` |
//! | `{"cmd":"offline_request"}` (not activated: `"license_number":"1921900012"`) | `{"ok":true,"file":"-----BEGIN PROMOS OFFLINE REQUEST v1-----...","file_name":"promos-offline-request-1921900012.txt"}` |
//! | `{"cmd":"offline_apply","file":"-----BEGIN PROMOS OFFLINE ANSWER v1-----..."}` | `{"ok":true,"applied":"checked","status":{...}}` (`applied`: `activated`, `checked`, `refused`) or `"error":"offline_refused"` with `reason` (`other_host`, `not_waiting`, `older_answer`, `other_license`, `clock_behind`, `bad_file`, `not_verified`, `server_error`, `no_license`, `hard_dongle`) and `message` (English) and `message_de` (German) |
//!
//! The runtime sends `runtime_started` first at its start and keeps that
//! connection open: 1-hour and 24-hour runs count from it.
//!
//! Seats held by a connection are released when it closes; a run owned by a
//! connection ends when it closes (the runtime crashed). Runtime start/stop is
//! reported to the server at the next check (the portal shows running/stopped).
//!
//! The status object:
//!
//! ```json
//! {"state":"server_unreachable","licensed":true,
//!  "warning":{"de":"Der Lizenzserver ist nicht erreichbar ...","en":"The license server is not available ..."},
//!  "stop_at":1767225600,"stop_at_text":"2026-01-01T00:00:00Z","seconds_until_stop":86400,
//!  "reason":{"code":"server_unreachable","de":"...","en":"..."},"diagnosis":[],
//!  "license_number":"1921900012","license_type":"standard","protection":"soft_dongle",
//!  "license_data":{"name":"Muster AG","postcode":"3000","city":"Bern"},
//!  "entitlements":{"drivers":{"modbus":10010,...},"malm":["email"],"mystrom":false,
//!                  "philips_hue":false,"ge_users":1,"pwa_users":5},
//!  "grant_serial":3,"hardware_id":"...","server":"license.promosnt.com:4433",
//!  "last_check":"2026-11-29T10:00:00Z","last_check_unix":1795946400,"last_check_failure":null,
//!  "runtime":"running","seats":{"ge":{"used":0,"limit":1},"pwa":{"used":2,"limit":5}},
//!  "now":"2026-12-20T10:00:00Z"}
//! ```
//!
//! The status also carries `storage`: `{"ok":true,"problems":[],"write_error":null,
//! "recovering_license":null}`; a problem is `{"code","de","en"}` (codes in the
//! README, "The cache"), and its text is in `diagnosis` too.
//!
//! `state` is one of `not_activated`, `licensed`, `server_unreachable`,
//! `offline_start_hour`, `dongle_removed`, `stopped`, `refused`, `expired`,
//! `dongle_missing`, `invalid_license_file`, `wrong_host`. The runtime must stop
//! when `licensed` is false or when `seconds_until_stop` reaches 0.
//!
//! The types of all of this are in [`crate::protocol`] (keys sorted, as
//! always); `daemon/README.md` has the tables of the status fields and events.
//!
//! Pushed events (after `subscribe`), one per line:
//! `{"event":"warning_begins","warning":{"de":...,"en":...}}`,
//! `{"event":"stop_scheduled","at":1767225600,"at_text":"2026-01-01T00:00:00Z"}`,
//! `{"event":"new_grant","serial":4}`,
//! `{"event":"license_ended","reason_code":"license_was_reset","reason":{"de":...,"en":...}}`,
//! `{"event":"license_restored"}`.
//!
//! A session with socat:
//!
//! ```text
//! $ socat - UNIX-CONNECT:/run/promos-licd/promos-licd.sock
//! {"cmd":"status","id":1}
//! {"id":1,"ok":true,"status":{"state":"licensed","licensed":true,...}}
//! {"cmd":"acquire_seat","program":"pwa"}
//! {"held":1,"limit":5,"ok":true,"program":"pwa","used":1}
//! hello
//! {"error":"bad_request","message":"not JSON: expected value at line 1 column 1","ok":false}
//! ```

use crate::protocol::{
    Answer, ErrorCode, LicenseDataView, Reason, Runtime, SeatCount, SeatsView, Status, Storage,
};
use crate::service::{ConnId, Program, Shared};
use crate::state::{Decision, Text};
use serde_json::Value;
use std::sync::Arc;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

pub use crate::protocol::Command;

/// Longest request line: requests are tiny; this bounds what a client can make
/// the daemon hold.
pub const MAX_LINE: usize = 64 * 1024;

/// The status object of the protocol, decided now.
pub fn status(shared: &Shared) -> Status {
    let mut inner = shared.lock();
    let d: Decision = inner.decide();
    let grant = inner.machine.grant().cloned();
    let seats = seats(&mut inner);
    let runtime = if inner.runtime_state() == wire::RuntimeState::Running {
        Runtime::Running
    } else {
        Runtime::Stopped
    };
    let last_check = inner.machine.last_check();
    let last_failure = inner.machine.last_failure().map(str::to_owned);
    let problems = inner.cache().problems();
    let write_error = inner.cache().write_error();
    drop(inner);
    let lost = shared.lost_license();
    let mut diagnosis = d.diagnosis;
    diagnosis.extend(problems.iter().map(|p| p.text()));
    if let Some(e) = &write_error {
        diagnosis.push(Text {
            de: format!("Der Lizenzzustand kann nicht gespeichert werden ({e}); der Dienst arbeitet aus dem Speicher weiter und speichert, sobald wieder Platz ist."),
            en: format!("The license state cannot be saved ({e}); the daemon answers from memory and saves again as soon as there is space."),
        });
    }
    if let Some(n) = &lost {
        diagnosis.push(Text {
            de: format!("Der gespeicherte Lizenzzustand fehlt, obwohl lic/licinfo.cfg die Lizenz {n} nennt; er wird beim Lizenzserver abgeholt (ohne Token)."),
            en: format!("The stored license state is missing although lic/licinfo.cfg names license {n}; it is being fetched from the license server (no token needed)."),
        });
    }
    let storage = Storage {
        ok: problems.is_empty() && write_error.is_none() && lost.is_none(),
        problems,
        recovering_license: lost.map(|n| n.to_string()),
        write_error,
    };
    let grant = grant.as_ref();
    Status {
        diagnosis,
        entitlements: d.entitlements.as_ref().map(Into::into),
        grant_serial: grant.map(|g| g.serial),
        hardware_id: shared.hardware_id.to_string(),
        last_check: last_check.map(|t| t.to_string()),
        last_check_failure: last_failure,
        last_check_unix: last_check.map(|t| t.secs()),
        license_data: grant.map(|g| LicenseDataView::from(&g.license_data)),
        license_number: grant.map(|g| g.license_number.to_string()),
        license_type: grant.map(|g| g.license_type),
        licensed: d.licensed,
        now: d.now.to_string(),
        protection: grant.map(|g| g.protection),
        reason: Reason {
            code: d.reason_code,
            de: d.reason.de,
            en: d.reason.en,
        },
        runtime,
        seats,
        seconds_until_stop: d.stop_at.map(|t| t.since(d.now)),
        server: shared.server_address(),
        servers: shared.server_list().into_iter().map(|(s, _)| s).collect(),
        state: d.phase,
        stop_at: d.stop_at.map(|t| t.secs()),
        stop_at_text: d.stop_at.map(|t| t.to_string()),
        storage,
        valid_until: grant.and_then(|g| g.valid_until).map(|t| t.to_string()),
        warning: d.warning,
    }
}

fn seats(inner: &mut crate::service::Inner) -> SeatsView {
    SeatsView {
        ge: SeatCount {
            limit: inner.seat_limit(Program::Ge),
            used: inner.seats.used(Program::Ge),
        },
        pwa: SeatCount {
            limit: inner.seat_limit(Program::Pwa),
            used: inner.seats.used(Program::Pwa),
        },
    }
}

fn bad_request(message: impl Into<String>, id: Option<Value>) -> Value {
    let answer = Answer::error(ErrorCode::BadRequest, message).with_id(id);
    serde_json::to_value(&answer).unwrap_or(Value::Null)
}

/// Parses one request line (without its `\n`): its `id` (any JSON value, echoed
/// in the answer) and its command. A line that is not a request gives the
/// complete error answer instead: `{"ok":false,"error":"bad_request",...}`, with
/// the `id` if the line had one. Pure and total: untrusted bytes from any local
/// client (fuzzed by `fuzz/fuzz_targets/socket_request.rs`).
pub fn parse_request(line: &[u8]) -> Result<(Option<Value>, Command), Value> {
    let mut request = match serde_json::from_slice(line) {
        Ok(Value::Object(request)) => request,
        // serde would also read an internally tagged enum from an array
        // (`["acquire_seat","pwa"]`), which could carry no id.
        Ok(_) => return Err(bad_request("a request is a JSON object", None)),
        Err(e) => return Err(bad_request(format!("not JSON: {e}"), None)),
    };
    let id = request.remove("id");
    match serde_json::from_value(Value::Object(request)) {
        Ok(cmd) => Ok((id, cmd)),
        Err(e) => Err(bad_request(e.to_string(), id)),
    }
}

/// Answers one request line (`\n` included). `subscribed` is set by `subscribe`.
async fn answer(shared: &Arc<Shared>, conn: ConnId, line: &[u8], subscribed: &mut bool) -> Vec<u8> {
    let (id, cmd) = match parse_request(line) {
        Ok(parsed) => parsed,
        Err(reply) => {
            let mut line = serde_json::to_vec(&reply).unwrap_or_default();
            line.push(b'\n');
            return line;
        }
    };
    let reply = match cmd {
        Command::Status {} => Answer::status(shared.status_json()),
        Command::Seats {} => Answer::Seats {
            id: None,
            ok: true,
            seats: seats(&mut shared.lock()),
        },
        Command::AcquireSeat { program } => {
            let mut inner = shared.lock();
            match inner.acquire_seat(conn, program) {
                Ok(held) => Answer::SeatAcquired {
                    held,
                    id: None,
                    limit: inner.seat_limit(program),
                    ok: true,
                    program,
                    used: inner.seats.used(program),
                },
                Err(limit) => Answer::error(
                    ErrorCode::NoSeatFree,
                    format!("all {limit} licensed seats of {program:?} are in use (or the host is not licensed)"),
                ),
            }
        }
        Command::ReleaseSeat { program } => {
            let mut inner = shared.lock();
            if inner.release_seat(conn, program) {
                Answer::SeatReleased {
                    held: inner.seats.held_by(conn, program),
                    id: None,
                    ok: true,
                    program,
                    used: inner.seats.used(program),
                }
            } else {
                Answer::error(
                    ErrorCode::NoSeatHeld,
                    format!("this connection holds no {program:?} seat"),
                )
            }
        }
        Command::RuntimeStarted {} => {
            let started = shared.lock().runtime_started(conn);
            match started {
                Ok(()) => Answer::status(shared.status_json()),
                Err(()) => Answer::error(
                    ErrorCode::RuntimeAlreadyRunning,
                    "another connection reported a running runtime",
                ),
            }
        }
        Command::RuntimeStopped {} => {
            if shared.lock().runtime_stopped(conn, "runtime_stopped") {
                Answer::Done { id: None, ok: true }
            } else {
                Answer::error(
                    ErrorCode::NotRunningHere,
                    "the running runtime belongs to another connection",
                )
            }
        }
        Command::Subscribe {} => {
            *subscribed = true;
            Answer::Subscribed {
                id: None,
                ok: true,
                subscribed: true,
            }
        }
        Command::CheckNow {} => {
            let check = shared.check_now().await;
            Answer::Check {
                check,
                id: None,
                ok: true,
                status: shared.status_json(),
            }
        }
        Command::Activate {
            license_number,
            token,
            server,
        } => match license_number.parse() {
            Err(e) => Answer::error(ErrorCode::BadLicenseNumber, format!("{e}")),
            Ok(number) => match shared.activate(server, number, wire::Token(token)).await {
                Ok(_) => Answer::status(shared.status_json()),
                Err(crate::service::ActivateError::Refused { code, en, de }) => {
                    Answer::activation_refused(code, en, de)
                }
                Err(e) => Answer::error(ErrorCode::ActivationFailed, e.to_string()),
            },
        },
        Command::OfflineRequest { license_number } => {
            let number = match license_number.map(|n| n.parse()).transpose() {
                Ok(n) => n,
                Err(e) => {
                    return Answer::error(ErrorCode::BadLicenseNumber, format!("{e}"))
                        .with_id(id)
                        .to_line()
                }
            };
            match shared.offline_request(number) {
                Ok((file_name, file)) => Answer::OfflineRequest {
                    file,
                    file_name,
                    id: None,
                    ok: true,
                },
                Err(e) => Answer::offline_refused(&e),
            }
        }
        Command::OfflineApply { file } => match shared.offline_apply(&file) {
            Ok(applied) => Answer::OfflineApplied {
                applied,
                id: None,
                ok: true,
                status: shared.status_json(),
            },
            Err(e) => Answer::offline_refused(&e),
        },
        Command::Hwid {} => Answer::Hwid {
            hardware_id: shared.hardware_id.to_string(),
            id: None,
            ok: true,
        },
    };
    reply.with_id(id).to_line()
}

/// Reads one line of at most [`MAX_LINE`] bytes. `Ok(None)` at end of stream;
/// `Err(())` if the line is too long.
async fn read_line<R: AsyncRead + Unpin>(
    r: &mut BufReader<R>,
    buf: &mut Vec<u8>,
) -> Result<Option<()>, ()> {
    buf.clear();
    let n = (&mut *r)
        .take(MAX_LINE as u64 + 1)
        .read_until(b'\n', buf)
        .await
        .map_err(|_| ())?;
    if n == 0 {
        return Ok(None);
    }
    if buf.last() != Some(&b'\n') && buf.len() > MAX_LINE {
        return Err(());
    }
    Ok(Some(()))
}

/// Serves one connection until it closes; then releases its seats and run.
pub async fn serve_connection(shared: Arc<Shared>, stream: tokio::net::UnixStream) {
    let conn = shared.new_conn_id();
    let (r, mut w) = stream.into_split();
    let mut reader = BufReader::new(r);
    let mut events = shared.events.subscribe();
    let mut subscribed = false;
    let mut buf = Vec::new();
    loop {
        tokio::select! {
            line = read_line(&mut reader, &mut buf) => {
                match line {
                    Ok(None) => break,
                    Err(()) => {
                        let reply = Answer::error(ErrorCode::LineTooLong, format!("request lines are limited to {MAX_LINE} bytes"));
                        let _ = w.write_all(&reply.to_line()).await;
                        break;
                    }
                    Ok(Some(())) => {
                        let text = buf.trim_ascii();
                        if text.is_empty() {
                            continue;
                        }
                        let reply = answer(&shared, conn, text, &mut subscribed).await;
                        if w.write_all(&reply).await.is_err() {
                            break;
                        }
                    }
                }
            }
            ev = events.recv(), if subscribed => {
                match ev {
                    Ok(event) => {
                        let mut line = event.to_line();
                        line.push(b'\n');
                        if w.write_all(&line).await.is_err() {
                            break;
                        }
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                        tracing::warn!(missed = n, "a subscriber fell behind");
                    }
                    Err(tokio::sync::broadcast::error::RecvError::Closed) => break,
                }
            }
        }
    }
    shared.lock().connection_closed(conn);
}

/// A tiny client for the CLI and tests: sends one request line, returns the answer.
#[derive(Debug)]
pub struct SocketClient {
    reader: BufReader<tokio::net::unix::OwnedReadHalf>,
    writer: tokio::net::unix::OwnedWriteHalf,
}

impl SocketClient {
    pub async fn connect(path: &std::path::Path) -> std::io::Result<SocketClient> {
        let s = tokio::net::UnixStream::connect(path).await?;
        let (r, w) = s.into_split();
        Ok(SocketClient {
            reader: BufReader::new(r),
            writer: w,
        })
    }

    /// Sends a raw line (a newline is added).
    pub async fn send_line(&mut self, line: &str) -> std::io::Result<()> {
        self.writer.write_all(line.as_bytes()).await?;
        self.writer.write_all(b"\n").await
    }

    /// Reads the next line as it came (without its `\n`; empty at end of stream).
    pub async fn next_line(&mut self) -> std::io::Result<String> {
        let mut line = String::new();
        self.reader.read_line(&mut line).await?;
        if line.ends_with('\n') {
            line.pop();
        }
        Ok(line)
    }

    /// Reads the next line as JSON (`Null` at end of stream).
    pub async fn next(&mut self) -> std::io::Result<Value> {
        let mut line = String::new();
        if self.reader.read_line(&mut line).await? == 0 {
            return Ok(Value::Null);
        }
        serde_json::from_str(&line)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
    }

    /// Sends `request` and returns the next line.
    pub async fn call(&mut self, request: &Value) -> std::io::Result<Value> {
        self.send_line(&request.to_string()).await?;
        self.next().await
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parse_request_takes_the_id_out_and_reads_the_command() {
        let (id, cmd) =
            parse_request(br#"{"cmd":"acquire_seat","program":"pwa","id":[1,"a"]}"#).unwrap();
        assert_eq!(id, Some(json!([1, "a"])));
        assert!(matches!(
            cmd,
            Command::AcquireSeat {
                program: Program::Pwa
            }
        ));
        let (id, cmd) = parse_request(br#"{"cmd":"status"}"#).unwrap();
        assert_eq!(id, None);
        assert!(matches!(cmd, Command::Status {}));
    }

    #[test]
    fn parse_request_answers_bad_lines_with_the_id() {
        let reply = parse_request(br#"{"cmd":"fly","id":7}"#).unwrap_err();
        assert_eq!(reply["ok"], json!(false));
        assert_eq!(reply["error"], json!("bad_request"));
        assert_eq!(reply["id"], json!(7));
        assert!(reply["message"].is_string());
        let reply = parse_request(b"\xff{").unwrap_err();
        assert_eq!(reply["error"], json!("bad_request"));
        assert!(reply.get("id").is_none());
        assert!(reply["message"].as_str().unwrap().starts_with("not JSON: "));
    }

    /// Regression (crash of the `socket_request` campaign): the id is echoed in the
    /// answer, and a float id such as `5E110` came back as a different number
    /// (serde_json parsed it one ulp off) until `float_roundtrip` was enabled.
    #[test]
    fn a_float_id_is_echoed_as_exactly_the_number_sent() {
        let line = br#"{"id":[5E110,2]}"#;
        let reply = parse_request(line).expect_err("no cmd");
        let text = serde_json::to_string(&reply).expect("json");
        let again: Value = serde_json::from_str(&text).expect("parses back");
        assert_eq!(again, reply);
        let sent: Value = serde_json::from_slice(line).expect("json");
        assert_eq!(reply["id"], sent["id"]);
    }

    /// Regression (found with the fuzz target `socket_request`): serde reads an internally
    /// tagged enum from an array too, so `["acquire_seat","pwa"]` took a seat.
    #[test]
    fn parse_request_refuses_commands_that_are_not_objects() {
        for line in [
            &br#"["status"]"#[..],
            br#"["acquire_seat","pwa"]"#,
            br#"["runtime_started"]"#,
            b"[1,2,3]",
            b"\"status\"",
            b"42",
            b"null",
        ] {
            let reply = parse_request(line).unwrap_err();
            assert_eq!(
                reply,
                json!({"ok": false, "error": "bad_request", "message": "a request is a JSON object"}),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }
}
