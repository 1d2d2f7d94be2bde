//! Helpers shared by the cross-crate tests in `tests/tests/`.
#![forbid(unsafe_code)]

use std::net::{TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::Command;

/// A binary of this build (same profile and target directory as the running
/// test), built here if needed: a test of the `e2e` package cannot name another
/// package's binary. The first call on a clean checkout builds it.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let profile_dir = exe
        .parent()
        .and_then(Path::parent)
        .expect("target/<profile>/deps");
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "-q", "-p", package, "--bin", bin]);
    // What `cargo test` set for this test (its package's name and directory)
    // is not the build's: build scripts that watch such a variable (ring's
    // `rerun-if-env-changed=CARGO_PKG_NAME`) would run again, and every crate
    // above them be rebuilt, here and again at the next `cargo test`.
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if [
            "CARGO_PKG_",
            "CARGO_MANIFEST_",
            "CARGO_CRATE_",
            "CARGO_BIN_",
        ]
        .iter()
        .any(|p| name.starts_with(p))
            || name == "CARGO_PRIMARY_PACKAGE"
            || name == "CARGO_TARGET_TMPDIR"
        {
            cmd.env_remove(name.as_ref());
        }
    }
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    if let Some(target) = profile_dir.parent() {
        cmd.env("CARGO_TARGET_DIR", target);
    }
    assert!(
        cmd.status().expect("cargo build").success(),
        "building {bin} failed"
    );
    profile_dir.join(bin)
}

/// A loopback TCP port free at the time of asking (for a child process to bind).
pub fn free_tcp_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port()
}

/// A loopback UDP port free at the time of asking.
pub fn free_udp_port() -> u16 {
    UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("port")
        .port()
}

/// Reading the JSON report `pls-load --json` writes (`tests/load.rs`,
/// `tests/redundant.rs`).
pub mod report {
    use serde_json::Value;

    /// The entry of request class `name` (`activate`, `check`, `login`, ...).
    pub fn class<'a>(report: &'a Value, name: &str) -> &'a Value {
        report["classes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["class"] == name))
            .unwrap_or_else(|| panic!("no {name} in the report"))
    }

    /// How many requests of class `name` succeeded.
    pub fn ok(report: &Value, name: &str) -> u64 {
        class(report, name)["ok"].as_u64().expect("count")
    }
}
