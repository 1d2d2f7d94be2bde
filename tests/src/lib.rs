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
