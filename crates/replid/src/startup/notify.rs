//! systemd's readiness protocol (`sd_notify`): under `Type=notify`, replid writes `READY=1`
//! to the datagram socket systemd names in `NOTIFY_SOCKET` once it serves (database open,
//! audit chain verified, listener bound), and `STOPPING=1` when it begins to stop. Without
//! the variable (a terminal, a container, the tests) nothing is sent.

use std::io;

/// Sends `state` (`READY=1`, `STOPPING=1`…) to systemd; Ok(false) when not run by systemd.
pub fn notify(state: &str) -> io::Result<bool> {
    let Some(path) = std::env::var_os("NOTIFY_SOCKET") else { return Ok(false) };
    notify_to(&path, state).map(|()| true)
}

#[cfg(target_os = "linux")]
fn notify_to(path: &std::ffi::OsStr, state: &str) -> io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    use std::os::unix::ffi::OsStrExt;
    use std::os::unix::net::{SocketAddr, UnixDatagram};
    let bytes = path.as_bytes();
    let addr = match bytes.strip_prefix(b"@") {
        // An abstract socket: `@name`.
        Some(name) => SocketAddr::from_abstract_name(name)?,
        None => SocketAddr::from_pathname(path)?,
    };
    let sock = UnixDatagram::unbound()?;
    sock.send_to_addr(state.as_bytes(), &addr)?;
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn notify_to(_: &std::ffi::OsStr, _: &str) -> io::Result<()> {
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_reaches_the_socket_systemd_names() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        let mut buf = [0u8; 64];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1");
        // A socket that is not there is an error the caller logs, not a crash.
        assert!(notify_to(dir.path().join("absent").as_os_str(), "READY=1").is_err());
    }
}
