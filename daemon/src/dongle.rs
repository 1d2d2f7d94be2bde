//! Hardware dongles: a trait, the hidapi implementation and a SIMULATED one.
//!
//! [`HidDongles`] enumerates USB HID devices with the configured vendor and
//! product ID and reports their serial numbers. [`SimulatedDongle`] is for tests
//! and demos only (these machines have no USB devices): a file whose presence
//! means "a dongle is plugged in" and whose content is its serial.

use keys::DongleSerial;
use std::path::PathBuf;

/// Why the dongles could not be listed (reported, treated as "none present").
#[derive(Debug, thiserror::Error)]
pub enum DongleError {
    #[error("cannot access USB HID devices: {0}")]
    Hid(String),
    #[error("cannot read the simulated dongle file {path}: {message}")]
    Simulated { path: PathBuf, message: String },
}

/// Something that can tell which ProMoS dongles are plugged in.
pub trait DongleSource: Send + std::fmt::Debug {
    /// The serials of the ProMoS dongles plugged in right now.
    fn scan(&mut self) -> Result<Vec<DongleSerial>, DongleError>;
}

/// Real dongles over hidapi (Linux hidraw, no system library needed).
pub struct HidDongles {
    api: Option<hidapi::HidApi>,
    vendor_id: Option<u16>,
    product_id: Option<u16>,
}

impl std::fmt::Debug for HidDongles {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HidDongles")
            .field("vendor_id", &self.vendor_id)
            .field("product_id", &self.product_id)
            .finish()
    }
}

impl HidDongles {
    pub fn new(vendor_id: Option<u16>, product_id: Option<u16>) -> Self {
        HidDongles {
            api: None,
            vendor_id,
            product_id,
        }
    }
}

impl DongleSource for HidDongles {
    fn scan(&mut self) -> Result<Vec<DongleSerial>, DongleError> {
        let (Some(vid), Some(pid)) = (self.vendor_id, self.product_id) else {
            // No ids configured: no device can be recognised as a ProMoS dongle.
            return Ok(Vec::new());
        };
        match &mut self.api {
            Some(api) => api
                .refresh_devices()
                .map_err(|e| DongleError::Hid(e.to_string()))?,
            None => {
                self.api = Some(hidapi::HidApi::new().map_err(|e| DongleError::Hid(e.to_string()))?)
            }
        }
        let Some(api) = &self.api else {
            return Ok(Vec::new());
        };
        let mut serials: Vec<DongleSerial> = api
            .device_list()
            .filter(|d| d.vendor_id() == vid && d.product_id() == pid)
            .filter_map(|d| d.serial_number().and_then(|s| s.parse().ok()))
            .collect();
        serials.sort();
        serials.dedup();
        Ok(serials)
    }
}

/// SIMULATED dongle (tests and demos only): `file` present = plugged in; its
/// trimmed content is the serial.
#[derive(Debug, Clone)]
pub struct SimulatedDongle {
    pub file: PathBuf,
}

impl DongleSource for SimulatedDongle {
    fn scan(&mut self) -> Result<Vec<DongleSerial>, DongleError> {
        match std::fs::read_to_string(&self.file) {
            Ok(text) => text
                .trim()
                .parse::<DongleSerial>()
                .map(|s| vec![s])
                .map_err(|e| DongleError::Simulated {
                    path: self.file.clone(),
                    message: e.to_string(),
                }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
            Err(e) => Err(DongleError::Simulated {
                path: self.file.clone(),
                message: e.to_string(),
            }),
        }
    }
}

/// The source the configuration asks for.
pub fn from_config(backend: &crate::config::DongleBackend) -> Box<dyn DongleSource> {
    match backend {
        crate::config::DongleBackend::Hidapi {
            vendor_id,
            product_id,
        } => Box::new(HidDongles::new(*vendor_id, *product_id)),
        crate::config::DongleBackend::Simulated { file } => {
            Box::new(SimulatedDongle { file: file.clone() })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_dongle_is_plugged_in_while_its_file_exists() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut d = SimulatedDongle {
            file: dir.path().join("SIMULATED-DONGLE"),
        };
        assert_eq!(d.scan().expect("absent"), vec![]);
        std::fs::write(&d.file, "DG-0001\n").expect("plug");
        assert_eq!(
            d.scan().expect("present"),
            vec!["DG-0001".parse().expect("serial")]
        );
        std::fs::write(&d.file, "not a serial!").expect("garbage");
        assert!(d.scan().is_err());
        std::fs::remove_file(&d.file).expect("unplug");
        assert_eq!(d.scan().expect("absent again"), vec![]);
    }

    #[test]
    fn hidapi_without_ids_sees_nothing_and_with_ids_does_not_crash() {
        assert_eq!(
            HidDongles::new(None, Some(1)).scan().expect("no ids"),
            vec![]
        );
        // No USB here: either an empty list or an access error, never a panic.
        let _ = HidDongles::new(Some(0x096e), Some(0x0006)).scan();
    }
}
