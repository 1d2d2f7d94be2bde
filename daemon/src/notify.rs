//! `sd_notify` without libsystemd: one datagram to `$NOTIFY_SOCKET`.
//!
//! systemd starts the service with `Type=notify` and waits for `READY=1`, which
//! the daemon sends once its socket listens. Abstract sockets (`@...`) are
//! supported through Linux's `SocketAddrExt`; no unsafe code.

use std::os::unix::net::UnixDatagram;

/// Sends `state` (e.g. `READY=1`) if `NOTIFY_SOCKET` is set. Returns whether a
/// message was sent; errors are logged, never fatal.
pub fn notify(state: &str) -> bool {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else {
        return false;
    };
    let path = path.to_string_lossy().into_owned();
    match send(&path, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::warn!(error = %e, "sd_notify failed");
            false
        }
    }
}

/// Sends `state` to the notify socket at `path`.
pub fn send(path: &str, state: &str) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    if let Some(name) = path.strip_prefix('@') {
        use std::os::linux::net::SocketAddrExt;
        let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes())?;
        sock.send_to_addr(state.as_bytes(), &addr)?;
    } else {
        sock.send_to(state.as_bytes(), path)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ready_reaches_a_notify_socket() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).expect("bind");
        super::send(path.to_str().expect("utf8"), "READY=1").expect("send");
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).expect("recv");
        assert_eq!(&buf[..n], b"READY=1");
    }
}
