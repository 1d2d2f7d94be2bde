//! `lic/licinfo.cfg`: what the first-start dialog leaves in the project.
//!
//! The manual says this file "is created automatically when logging in to the
//! license server". It holds what is needed to find the license again and
//! nothing secret:
//!
//! ```ini
//! [LicenseServer]
//! Address=license.promosnt.com:4433
//! LicenseNumber=1921900012
//! HardwareId=502c649d1171ad2e8705074ce97791db
//! Activated=2026-11-29T10:00:00Z
//! ```
//!
//! The token is **not** stored, not even hashed: daily checks do not need it
//! (the server knows the host by its hardware ID and the signed grant), so it is
//! only needed again to activate anew after a reset, when the customer copies
//! it from the portal as the manual describes.

use keys::{HardwareId, LicenseNumber, UnixTime};
use std::path::Path;

/// The content of `licinfo.cfg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LicInfo {
    pub server: String,
    pub license_number: LicenseNumber,
    pub hardware_id: Option<HardwareId>,
    pub activated: Option<UnixTime>,
}

/// Reading `licinfo.cfg` failed.
#[derive(Debug, thiserror::Error)]
pub enum LicInfoError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Malformed { path: String, message: String },
    #[error("cannot write {path}: {source}")]
    Write {
        path: String,
        source: std::io::Error,
    },
}

impl LicInfo {
    pub fn render(&self) -> String {
        let mut s = format!(
            "[LicenseServer]\nAddress={}\nLicenseNumber={}\n",
            self.server, self.license_number
        );
        if let Some(h) = &self.hardware_id {
            s.push_str(&format!("HardwareId={h}\n"));
        }
        if let Some(t) = self.activated {
            s.push_str(&format!("Activated={t}\n"));
        }
        s
    }

    pub fn parse(text: &str, path: &str) -> Result<LicInfo, LicInfoError> {
        let bad = |message: String| LicInfoError::Malformed {
            path: path.to_owned(),
            message,
        };
        let mut server = None;
        let mut number = None;
        let mut hwid = None;
        for line in text.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            match k.trim() {
                "Address" => server = Some(v.trim().to_owned()),
                "LicenseNumber" => {
                    number = Some(
                        v.trim()
                            .parse::<LicenseNumber>()
                            .map_err(|e| bad(e.to_string()))?,
                    )
                }
                "HardwareId" => hwid = v.trim().parse::<HardwareId>().ok(),
                _ => {}
            }
        }
        Ok(LicInfo {
            server: server.ok_or_else(|| bad("no Address= line".into()))?,
            license_number: number.ok_or_else(|| bad("no LicenseNumber= line".into()))?,
            hardware_id: hwid,
            activated: None,
        })
    }

    /// Reads `<project>/lic/licinfo.cfg`; `Ok(None)` if it does not exist.
    pub fn read(project: &Path) -> Result<Option<LicInfo>, LicInfoError> {
        let path = project.join("lic").join("licinfo.cfg");
        match std::fs::read_to_string(&path) {
            Ok(t) => Self::parse(&t, &path.display().to_string()).map(Some),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(LicInfoError::Read {
                path: path.display().to_string(),
                source,
            }),
        }
    }

    /// Writes `<project>/lic/licinfo.cfg` (creating `lic/`), atomically.
    pub fn write(&self, project: &Path) -> Result<(), LicInfoError> {
        let dir = project.join("lic");
        let path = dir.join("licinfo.cfg");
        let err = |source| LicInfoError::Write {
            path: path.display().to_string(),
            source,
        };
        std::fs::create_dir_all(&dir).map_err(err)?;
        let tmp = dir.join(".licinfo.cfg.tmp");
        // Durable like the license state: it is what recovers a host whose
        // state was lost (daemon/README.md, "The cache").
        let write = || -> std::io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::File::create(&tmp)?;
            f.write_all(self.render().as_bytes())?;
            f.sync_all()?;
            std::fs::rename(&tmp, &path)?;
            std::fs::File::open(&dir)?.sync_all()
        };
        write().map_err(err)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_holds_no_token() {
        let dir = tempfile::tempdir().expect("tempdir");
        let info = LicInfo {
            server: "license.promosnt.com:4433".into(),
            license_number: LicenseNumber::from_body(192_190_001).expect("n"),
            hardware_id: Some("502c649d1171ad2e8705074ce97791db".parse().expect("h")),
            activated: Some(UnixTime(1_632_840_684)),
        };
        info.write(dir.path()).expect("write");
        let text = std::fs::read_to_string(dir.path().join("lic/licinfo.cfg")).expect("read");
        assert!(
            text.starts_with("[LicenseServer]\nAddress=license.promosnt.com:4433\n"),
            "{text}"
        );
        assert!(!text.to_lowercase().contains("token"));
        let back = LicInfo::read(dir.path()).expect("read").expect("present");
        assert_eq!(back.license_number, info.license_number);
        assert_eq!(back.server, info.server);
        assert!(LicInfo::parse("[LicenseServer]\nAddress=x\n", "f").is_err());
    }
}
