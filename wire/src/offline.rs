//! Checks and activations that travel as files (sites without any internet).
//!
//! A host writes an [`OfflineRequest`] into a request file; the customer
//! uploads it to the portal from any computer with internet (or the vendor
//! runs `pls admin offline-answer`), and the server's answer, the same signed
//! [`Response`] a network check or activation gets, comes back in an answer
//! file that the host applies. Nothing here is a new trust path: the answer's
//! grant, receipt or refusal is verified by the daemon exactly as a network
//! answer, and bound to the hardware ID and the nonce of the request.
//!
//! # The file format (version 1)
//!
//! Plain text, so it survives email and USB sticks alike:
//!
//! ```text
//! -----BEGIN PROMOS OFFLINE REQUEST v1-----
//! License: 1921900019
//! Hardware-ID: 0123456789abcdef0123456789abcdef
//! Kind: check
//!
//! AAEBAAAA...   (base64 of the frame body, 64 characters a line)
//! -----END PROMOS OFFLINE REQUEST v1-----
//! ```
//!
//! A daemon since issue 19 adds the line `Hardware-Facts: 5 hashes` after
//! `Kind:`, and its block carries the hashed facts of the hardware ID
//! ([`OfflineRequest::CheckWithFacts`]); files without it stay valid.
//!
//! The base64 block is the authority: it is a frame body of [`crate::codec`]
//! (protocol version + bincode). The header lines are for people, and must
//! agree with the block (so a hand-edited header is noticed, not believed).
//! Line ends may be `\n` or `\r\n`; text before the BEGIN and after the END
//! line (an email's greeting) is ignored.

use crate::codec::{self, DecodeError};
use crate::facts::HardwareFacts;
use crate::msg::{Check, Nonce, Response};
use base64::Engine as _;
use keys::{HardwareId, LicenseNumber};
use serde::{Deserialize, Serialize};

/// Largest offline file read, in bytes. A request is under 1 KiB and an answer
/// (grant + receipt, base64) under 5 KiB; 64 KiB leaves room for an email's
/// text around it and bounds what a hostile upload makes us hold.
pub const MAX_FILE_BYTES: usize = 64 * 1024;

/// A host that is not activated yet asks for its grant (no token: the
/// portal's logged-in owner, or the vendor, authorises it).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OfflineActivate {
    pub license_number: LicenseNumber,
    pub hardware_id: HardwareId,
    pub daemon_version: String,
    pub nonce: Nonce,
}

/// What a request file carries. The variant order is part of the encoding:
/// append, never reorder.
///
/// Daemons since issue 19 write the `...WithFacts` variants: the request
/// with the hashed facts of the host's hardware ID ([`HardwareFacts`]), so an
/// answer by file follows a host whose hardware changed exactly as a network
/// check does. Files without facts (older daemons) stay readable.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum OfflineRequest {
    Activate(OfflineActivate),
    Check(Check),
    ActivateWithFacts(OfflineActivate, HardwareFacts),
    CheckWithFacts(Check, HardwareFacts),
}

impl OfflineRequest {
    pub fn license_number(&self) -> &LicenseNumber {
        match self {
            OfflineRequest::Activate(a) | OfflineRequest::ActivateWithFacts(a, _) => {
                &a.license_number
            }
            OfflineRequest::Check(c) | OfflineRequest::CheckWithFacts(c, _) => &c.license_number,
        }
    }

    pub fn hardware_id(&self) -> &HardwareId {
        match self {
            OfflineRequest::Activate(a) | OfflineRequest::ActivateWithFacts(a, _) => &a.hardware_id,
            OfflineRequest::Check(c) | OfflineRequest::CheckWithFacts(c, _) => &c.hardware_id,
        }
    }

    pub fn nonce(&self) -> Nonce {
        match self {
            OfflineRequest::Activate(a) | OfflineRequest::ActivateWithFacts(a, _) => a.nonce,
            OfflineRequest::Check(c) | OfflineRequest::CheckWithFacts(c, _) => c.nonce,
        }
    }

    /// The hashed hardware facts the request carries (none in a file of a
    /// daemon older than issue 19).
    pub fn facts(&self) -> Option<&HardwareFacts> {
        match self {
            OfflineRequest::ActivateWithFacts(_, f) | OfflineRequest::CheckWithFacts(_, f) => {
                Some(f)
            }
            OfflineRequest::Activate(_) | OfflineRequest::Check(_) => None,
        }
    }

    /// The request with `facts` (unchanged when they are empty: a host
    /// whose facts could not be read sends none, as on the network).
    pub fn with_facts(self, facts: &HardwareFacts) -> OfflineRequest {
        if facts.is_empty() {
            return self;
        }
        match self {
            OfflineRequest::Activate(a) | OfflineRequest::ActivateWithFacts(a, _) => {
                OfflineRequest::ActivateWithFacts(a, facts.clone())
            }
            OfflineRequest::Check(c) | OfflineRequest::CheckWithFacts(c, _) => {
                OfflineRequest::CheckWithFacts(c, facts.clone())
            }
        }
    }

    /// `activation` or `check`: the file's `Kind:` line.
    pub fn kind(&self) -> &'static str {
        match self {
            OfflineRequest::Activate(_) | OfflineRequest::ActivateWithFacts(..) => "activation",
            OfflineRequest::Check(_) | OfflineRequest::CheckWithFacts(..) => "check",
        }
    }
}

/// Why a file could not be read. Each message names what is wrong and what to
/// do about it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OfflineFileError {
    #[error("the file has {len} bytes, more than the {max} an offline file can have: it is not an offline {what} file")]
    TooLarge {
        len: usize,
        max: usize,
        what: &'static str,
    },
    #[error("no line \"{begin}\" found: this is not an offline {what} file of version 1 (a request file is written by `promos-licd offline request`, an answer file comes from the license portal)")]
    NoBegin { begin: String, what: &'static str },
    #[error("the line \"{end}\" is missing: the file was cut off; copy or download it again")]
    NoEnd { end: String },
    #[error("the header line {line:?} is not understood; the file was changed by hand, copy or download it again")]
    BadHeader { line: String },
    #[error("the encoded block is damaged ({0}); the file was changed, copy or download it again")]
    BadBase64(String),
    #[error("the encoded block does not decode ({0}); the file was changed or comes from an incompatible version")]
    Decode(DecodeError),
    #[error("the header says {field} {header}, the encoded block says {block}: the file was changed by hand, copy or download it again")]
    HeaderMismatch {
        field: &'static str,
        header: String,
        block: String,
    },
    #[error("the file could not be written: {0}")]
    Encode(String),
}

const REQUEST: &str = "REQUEST";
const ANSWER: &str = "ANSWER";
/// Base64 characters per line (as PEM).
const LINE: usize = 64;

fn begin(what: &str) -> String {
    format!("-----BEGIN PROMOS OFFLINE {what} v1-----")
}

fn end(what: &str) -> String {
    format!("-----END PROMOS OFFLINE {what} v1-----")
}

fn render(what: &str, headers: &[(&str, String)], body: &[u8]) -> String {
    let mut out = begin(what);
    out.push('\n');
    for (k, v) in headers {
        out.push_str(&format!("{k}: {v}\n"));
    }
    out.push('\n');
    let encoded = base64::engine::general_purpose::STANDARD.encode(body);
    for chunk in encoded.as_bytes().chunks(LINE) {
        // Base64 is ASCII.
        out.push_str(&String::from_utf8_lossy(chunk));
        out.push('\n');
    }
    out.push_str(&end(what));
    out.push('\n');
    out
}

/// A file's header lines (name, value) and its decoded block.
type Parsed<'a> = (Vec<(&'a str, &'a str)>, Vec<u8>);

/// The header lines and the decoded block of a file.
fn parse<'a>(
    what: &str,
    label: &'static str,
    text: &'a str,
) -> Result<Parsed<'a>, OfflineFileError> {
    if text.len() > MAX_FILE_BYTES {
        return Err(OfflineFileError::TooLarge {
            len: text.len(),
            max: MAX_FILE_BYTES,
            what: label,
        });
    }
    let (b, e) = (begin(what), end(what));
    let mut lines = text.lines().map(str::trim);
    if !lines.by_ref().any(|l| l == b) {
        return Err(OfflineFileError::NoBegin {
            begin: b,
            what: label,
        });
    }
    let mut headers = Vec::new();
    let mut block = String::new();
    let mut in_block = false;
    let mut ended = false;
    for line in lines {
        if line == e {
            ended = true;
            break;
        }
        if !in_block {
            if line.is_empty() {
                in_block = true;
                continue;
            }
            match line.split_once(": ") {
                Some((k, v)) if !k.is_empty() && !k.contains(' ') => headers.push((k, v.trim())),
                _ => {
                    return Err(OfflineFileError::BadHeader {
                        line: line.chars().take(80).collect(),
                    })
                }
            }
        } else {
            block.push_str(line);
        }
    }
    if !ended {
        return Err(OfflineFileError::NoEnd { end: e });
    }
    let body = base64::engine::general_purpose::STANDARD
        .decode(block.as_bytes())
        .map_err(|err| OfflineFileError::BadBase64(err.to_string()))?;
    Ok((headers, body))
}

/// The header lines must name what the block says, each exactly once.
fn agree(
    headers: &[(&str, &str)],
    expected: &[(&'static str, String)],
) -> Result<(), OfflineFileError> {
    for (k, v) in headers {
        if !expected.iter().any(|(ek, _)| ek == k) {
            return Err(OfflineFileError::BadHeader {
                line: format!("{k}: {v}").chars().take(80).collect(),
            });
        }
    }
    for (field, block) in expected {
        let found: Vec<&str> = headers
            .iter()
            .filter(|(k, _)| k == field)
            .map(|(_, v)| *v)
            .collect();
        if found.len() != 1 || found[0] != block {
            return Err(OfflineFileError::HeaderMismatch {
                field,
                header: found.join(", "),
                block: block.clone(),
            });
        }
    }
    Ok(())
}

fn request_headers(r: &OfflineRequest) -> Vec<(&'static str, String)> {
    let mut headers = vec![
        ("License", r.license_number().to_string()),
        ("Hardware-ID", r.hardware_id().to_string()),
        ("Kind", r.kind().to_owned()),
    ];
    // Only in files that carry facts: a file of an older daemon has no such line.
    if let Some(f) = r.facts() {
        headers.push(("Hardware-Facts", format!("{} hashes", f.0.len())));
    }
    headers
}

/// The request file's text.
pub fn write_request(request: &OfflineRequest) -> Result<String, OfflineFileError> {
    let body = codec::encode_body(request).map_err(|e| OfflineFileError::Encode(e.to_string()))?;
    Ok(render(REQUEST, &request_headers(request), &body))
}

/// Reads a request file as a whole: markers, headers, block, and that the
/// headers agree with the block.
pub fn read_request(text: &str) -> Result<OfflineRequest, OfflineFileError> {
    let (headers, body) = parse(REQUEST, "request", text)?;
    let request: OfflineRequest = codec::decode_body(&body).map_err(OfflineFileError::Decode)?;
    agree(&headers, &request_headers(&request))?;
    Ok(request)
}

/// An answer file as read: the server's response (signatures not yet
/// checked) and the header's license and host, which name the request it
/// answers. The daemon verifies the signatures as it verifies every network
/// answer, and that the signed documents name the same license and host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OfflineAnswer {
    pub license_number: LicenseNumber,
    pub hardware_id: HardwareId,
    pub response: Response,
}

fn answer_kind(response: &Response) -> &'static str {
    match response {
        Response::Activated { .. } => "activated",
        Response::Checked { .. } | Response::CheckedCompact { .. } => "checked",
        Response::Deactivated { .. } => "deactivated",
        Response::Refused(_) => "refused",
        Response::Error(_) => "error",
        Response::Hello { .. } => "hello",
        Response::Relayed(_) => "relayed",
    }
}

/// The answer file's text: the server's signed response to `request`, unchanged.
pub fn write_answer(
    request: &OfflineRequest,
    response: &Response,
) -> Result<String, OfflineFileError> {
    let body = codec::encode_body(response).map_err(|e| OfflineFileError::Encode(e.to_string()))?;
    let headers = [
        ("License", request.license_number().to_string()),
        ("Hardware-ID", request.hardware_id().to_string()),
        ("Kind", answer_kind(response).to_owned()),
    ];
    Ok(render(ANSWER, &headers, &body))
}

/// Reads an answer file as a whole. The signatures inside are not checked
/// here: the daemon verifies them as it verifies every network answer.
pub fn read_answer(text: &str) -> Result<OfflineAnswer, OfflineFileError> {
    let (headers, body) = parse(ANSWER, "answer", text)?;
    let response: Response = codec::decode_body(&body).map_err(OfflineFileError::Decode)?;
    let field = |name: &'static str| {
        headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| *v)
            .ok_or_else(|| OfflineFileError::BadHeader {
                line: format!("{name}: (missing)"),
            })
    };
    let license_number =
        field("License")?
            .parse::<LicenseNumber>()
            .map_err(|_| OfflineFileError::BadHeader {
                line: format!("License: {}", field("License").unwrap_or_default()),
            })?;
    let hardware_id =
        field("Hardware-ID")?
            .parse::<HardwareId>()
            .map_err(|_| OfflineFileError::BadHeader {
                line: format!("Hardware-ID: {}", field("Hardware-ID").unwrap_or_default()),
            })?;
    agree(
        &headers,
        &[
            ("License", license_number.to_string()),
            ("Hardware-ID", hardware_id.to_string()),
            ("Kind", answer_kind(&response).to_owned()),
        ],
    )?;
    Ok(OfflineAnswer {
        license_number,
        hardware_id,
        response,
    })
}

/// A file name for a request or an answer: `promos-offline-<what>-<license>.txt`.
pub fn file_name(what: &str, license: &LicenseNumber) -> String {
    format!("promos-offline-{what}-{license}.txt")
}

/// Which offline file a program reads: named in its errors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A request file, written by `promos-licd offline request`.
    Request,
    /// An answer file, written by the license portal or `pls admin offline-answer`.
    Answer,
}

impl FileKind {
    fn name(self) -> &'static str {
        match self {
            FileKind::Request => "request file",
            FileKind::Answer => "answer file",
        }
    }
    fn article(self) -> &'static str {
        match self {
            FileKind::Request => "a",
            FileKind::Answer => "an",
        }
    }
    fn writer(self) -> &'static str {
        match self {
            FileKind::Request => "promos-licd",
            FileKind::Answer => "the license portal",
        }
    }
}

/// An offline file could not be read ([`read_file`]). Each names the file;
/// the fields let a program say it in the user's language.
#[derive(Debug, thiserror::Error)]
pub enum ReadFileError {
    #[error("reading the {} {}: {source}", .kind.name(), .path.display())]
    Io {
        kind: FileKind,
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error(
        "{} is larger than {max} bytes: it is not {} {} of {}",
        .path.display(),
        .kind.article(),
        .kind.name(),
        .kind.writer()
    )]
    TooLarge {
        kind: FileKind,
        path: std::path::PathBuf,
        max: usize,
    },
}

/// Reads an offline file whole from `path` (`-`: standard input), refusing one
/// larger than [`MAX_FILE_BYTES`] before holding more of it. The error says
/// which file could not be read and why.
pub fn read_file(path: &std::path::Path, kind: FileKind) -> Result<String, ReadFileError> {
    use std::io::Read;
    let max = MAX_FILE_BYTES as u64;
    let mut text = String::new();
    let read = if path == std::path::Path::new("-") {
        std::io::stdin().take(max + 1).read_to_string(&mut text)
    } else {
        std::fs::File::open(path).and_then(|f| f.take(max + 1).read_to_string(&mut text))
    };
    read.map_err(|source| ReadFileError::Io {
        kind,
        path: path.to_owned(),
        source,
    })?;
    if text.len() as u64 > max {
        return Err(ReadFileError::TooLarge {
            kind,
            path: path.to_owned(),
            max: MAX_FILE_BYTES,
        });
    }
    Ok(text)
}

#[cfg(test)]
mod read_file_tests {
    use super::*;

    #[test]
    fn an_offline_file_is_read_whole_and_an_oversized_or_missing_one_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let ok = dir.path().join("answer.txt");
        std::fs::write(&ok, "x".repeat(MAX_FILE_BYTES)).expect("write");
        assert_eq!(
            read_file(&ok, FileKind::Answer).expect("read").len(),
            MAX_FILE_BYTES
        );
        let big = dir.path().join("big.txt");
        std::fs::write(&big, "x".repeat(MAX_FILE_BYTES + 1)).expect("write");
        let e = read_file(&big, FileKind::Request)
            .expect_err("too large")
            .to_string();
        assert!(
            e.ends_with("it is not a request file of promos-licd"),
            "{e}"
        );
        let e = read_file(&dir.path().join("none.txt"), FileKind::Answer)
            .expect_err("missing")
            .to_string();
        assert!(e.starts_with("reading the answer file"), "{e}");
    }
}
