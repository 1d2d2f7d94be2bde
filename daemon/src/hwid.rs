//! The hardware ID: 32 lowercase hex digits that identify this PC or VM.
//!
//! It is the first 16 bytes of SHA-256 over these facts, one `name=value` line
//! each, sorted:
//!
//! - `machine-id`: `/etc/machine-id` (or `/var/lib/dbus/machine-id`);
//! - `dmi-uuid`: `/sys/class/dmi/id/product_uuid`, if readable (root only);
//! - `cpu`: the CPU brand string (sysinfo);
//! - `mac`: the MAC address of every *physical* network interface (one with a
//!   `/sys/class/net/<name>/device` link; bridges, VPNs, Docker and loopback are
//!   left out), sorted.
//!
//! The same across reboots and daemon restarts. It **changes** when the OS is
//! reinstalled or the machine-id is regenerated (a cloned VM should be given a
//! new one), when the mainboard/BIOS UUID changes (a VM copied as new), when the
//! CPU model changes, and when a physical network card is added, removed or
//! replaced. After such a change the license must be reset in the portal (manual
//! chapter 9), unless the server's `[licensing] hardware_tolerance` allows the
//! change (issue 19: by default one fact, never the machine-id).
//!
//! With activation and every check the daemon also sends each fact hashed
//! ([`wire::facts`]), so the license server can follow a host whose hardware
//! changed a little (one network card replaced) without a reset in the
//! portal; a changed machine-id is always another computer.
//!
//! `PROMOS_LICD_TEST_HARDWARE_ID` (test-only, see [`crate::config`]) replaces
//! the ID; `PROMOS_LICD_SIMULATED_HARDWARE_FACTS` (test-only, simulated)
//! replaces the facts.

use keys::HardwareId;
use sha2::{Digest, Sha256};
use std::path::Path;

/// The facts the ID is computed from, as `name=value` lines.
pub fn facts(root: &Path) -> Vec<String> {
    let mut facts = Vec::new();
    let read = |p: &str| {
        std::fs::read_to_string(root.join(p))
            .ok()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
    };
    if let Some(id) = read("etc/machine-id").or_else(|| read("var/lib/dbus/machine-id")) {
        facts.push(format!("machine-id={id}"));
    }
    if let Some(uuid) = read("sys/class/dmi/id/product_uuid") {
        facts.push(format!("dmi-uuid={}", uuid.to_ascii_lowercase()));
    }
    facts
}

/// Facts from sysinfo (CPU brand, physical MACs) on the live system.
fn live_facts() -> Vec<String> {
    use sysinfo::{CpuRefreshKind, Networks, RefreshKind, System};
    let mut facts = Vec::new();
    let sys =
        System::new_with_specifics(RefreshKind::nothing().with_cpu(CpuRefreshKind::nothing()));
    if let Some(cpu) = sys.cpus().first() {
        let brand = cpu.brand().trim();
        if !brand.is_empty() {
            facts.push(format!("cpu={brand}"));
        }
    }
    let networks = Networks::new_with_refreshed_list();
    for (name, data) in &networks {
        let physical = Path::new("/sys/class/net")
            .join(name)
            .join("device")
            .exists();
        let mac = data.mac_address();
        if physical && mac.0 != [0u8; 6] {
            facts.push(format!("mac={mac}"));
        }
    }
    facts
}

/// Hashes facts into a hardware ID (order-independent).
pub fn from_facts(mut facts: Vec<String>) -> HardwareId {
    facts.sort();
    facts.dedup();
    let mut h = Sha256::new();
    for f in &facts {
        h.update(f.as_bytes());
        h.update(b"\n");
    }
    let digest = h.finalize();
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    HardwareId::from_bytes(id)
}

/// All facts of this machine, sorted (what `promos-licd hwid --facts` prints).
pub fn all_facts() -> Vec<String> {
    let mut f = facts(Path::new("/"));
    f.extend(live_facts());
    f.sort();
    f.dedup();
    f
}

/// This machine's hardware ID.
pub fn compute() -> HardwareId {
    from_facts(all_facts())
}

/// The hardware ID this daemon uses and the hashed facts it sends with it:
/// this machine's, or the SIMULATED facts of the configuration
/// (`PROMOS_LICD_SIMULATED_HARDWARE_FACTS`, test-only), or a test hardware ID
/// (`PROMOS_LICD_TEST_HARDWARE_ID`, test-only), which is not made of any facts
/// and so sends none (unless simulated facts are given too).
pub fn identity(config: &crate::Config) -> (HardwareId, wire::HardwareFacts) {
    let lines = match (&config.simulated_hardware_facts, &config.test_hardware_id) {
        (Some(lines), _) => lines.clone(),
        (None, Some(id)) => return (id.clone(), wire::HardwareFacts::default()),
        (None, None) => all_facts(),
    };
    let id = config
        .test_hardware_id
        .clone()
        .unwrap_or_else(|| from_facts(lines.clone()));
    (id, wire::HardwareFacts::from_lines(&lines))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn id_is_32_lowercase_hex_and_stable() {
        let a = compute();
        let b = compute();
        assert_eq!(a, b);
        assert_eq!(a.as_str().len(), 32);
        assert!(a
            .as_str()
            .bytes()
            .all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }

    #[test]
    fn facts_from_a_fixture_root_and_what_changes_the_id() {
        let root = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(root.path().join("etc")).expect("etc");
        std::fs::write(
            root.path().join("etc/machine-id"),
            "0123456789abcdef0123456789abcdef\n",
        )
        .expect("write");
        std::fs::create_dir_all(root.path().join("sys/class/dmi/id")).expect("dmi");
        std::fs::write(
            root.path().join("sys/class/dmi/id/product_uuid"),
            "4C4C4544-0042-3510\n",
        )
        .expect("write");
        let f = facts(root.path());
        assert_eq!(
            f,
            vec![
                "machine-id=0123456789abcdef0123456789abcdef".to_owned(),
                "dmi-uuid=4c4c4544-0042-3510".to_owned()
            ]
        );

        let base = from_facts(f.clone());
        let mut reordered = f.clone();
        reordered.reverse();
        assert_eq!(from_facts(reordered), base, "order does not matter");
        let mut new_nic = f.clone();
        new_nic.push("mac=00:11:22:33:44:55".into());
        assert_ne!(from_facts(new_nic), base, "a new network card changes it");
        let mut other_vm = f;
        other_vm[0] = "machine-id=ffffffffffffffffffffffffffffffff".into();
        assert_ne!(from_facts(other_vm), base, "another machine-id changes it");
    }

    #[test]
    fn simulated_facts_make_the_id_and_are_sent_hashed_a_test_id_sends_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("facts");
        std::fs::write(
            &file,
            "# a simulated host\nmachine-id=0123\n\ncpu=Intel\nmac=00:11:22:33:44:55\n",
        )
        .expect("write");
        let env: std::collections::BTreeMap<String, String> = [(
            crate::config::SIMULATED_HARDWARE_FACTS_ENV.to_owned(),
            file.display().to_string(),
        )]
        .into();
        let config = crate::Config::from_toml("", &env).expect("config");
        let lines = config.simulated_hardware_facts.clone().expect("simulated");
        assert_eq!(lines.len(), 3, "{lines:?}");
        let (id, facts) = identity(&config);
        assert_eq!(id, from_facts(lines.clone()));
        assert_eq!(facts, wire::HardwareFacts::from_lines(&lines));
        assert_eq!(facts.0.len(), 3);
        assert!(!format!("{facts:?}").contains("00:11:22"), "hashed");
        // Another card: another ID, one fact hash changed.
        let mut other = config.clone();
        other.simulated_hardware_facts = Some(vec![
            "machine-id=0123".into(),
            "cpu=Intel".into(),
            "mac=00:11:22:33:44:66".into(),
        ]);
        let (id2, facts2) = identity(&other);
        assert_ne!(id2, id);
        assert_eq!(facts2.0.iter().filter(|f| facts.0.contains(f)).count(), 2);
        // A test hardware ID alone is not made of facts: none are sent.
        let mut test_id = crate::Config::with_defaults(dir.path());
        test_id.test_hardware_id = Some(HardwareId::from_bytes([0xaa; 16]));
        let (id3, facts3) = identity(&test_id);
        assert_eq!(id3, HardwareId::from_bytes([0xaa; 16]));
        assert!(facts3.is_empty());
    }
}
