//! Free TCP ports.

use std::collections::HashSet;
use std::io;
use std::net::{IpAddr, TcpListener};
use std::sync::Mutex;

/// Every port this process has handed out, per address: the kernel may give a released port
/// again at once, and two servers started with the "same free port" fail in a way that looks
/// like anything but that (seen: a Flux controller whose metrics and health ports were equal).
static HANDED_OUT: Mutex<Option<HashSet<(IpAddr, u16)>>> = Mutex::new(None);

/// How many ports in a row the kernel may give that were handed out already.
const ATTEMPTS: usize = 64;

/// A free TCP port on `addr`, found by binding port 0 and releasing it, and never one this
/// process handed out before.
///
/// Still racy against other processes: one may take the port before the caller's server binds
/// it, so callers retry a start that fails with "address already in use".
pub fn free_port(addr: impl Into<IpAddr>) -> io::Result<u16> {
    let addr = addr.into();
    // Ports refused for being handed out already stay bound until the end, so that the kernel
    // offers others.
    let mut refused = Vec::new();
    for _ in 0..ATTEMPTS {
        let listener = TcpListener::bind((addr, 0))
            .map_err(|e| io::Error::new(e.kind(), format!("bind a free port on {addr}: {e}")))?;
        let port = listener.local_addr()?.port();
        let mut handed = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
        if handed.get_or_insert_with(HashSet::new).insert((addr, port)) {
            return Ok(port);
        }
        refused.push(listener);
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!(
            "no port on {addr} that this process has not handed out already, in {ATTEMPTS} tries"
        ),
    ))
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use super::*;

    #[test]
    fn the_port_is_free_to_bind_again() {
        let port = free_port(Ipv4Addr::LOCALHOST).unwrap();
        assert_ne!(port, 0);
        // Released: a server can bind it (unless another process raced us to it, which on a
        // test machine within microseconds is not expected).
        TcpListener::bind((Ipv4Addr::LOCALHOST, port)).unwrap();
    }

    #[test]
    fn a_port_is_never_handed_out_twice() {
        // 1,000 draws from the ~28,000 ephemeral ports: without the record of handed-out ports,
        // the kernel repeats one with near certainty (birthday bound: 1 - e^-17.7).
        let ports: Vec<u16> = (0..1000)
            .map(|_| free_port(Ipv4Addr::LOCALHOST).unwrap())
            .collect();
        let distinct: std::collections::HashSet<_> = ports.iter().collect();
        assert_eq!(distinct.len(), ports.len());
    }

    #[test]
    fn an_address_not_on_this_host_is_an_error_that_names_it() {
        // TEST-NET-1 (RFC 5737): never assigned to a local interface.
        let err = free_port(Ipv4Addr::new(192, 0, 2, 1)).unwrap_err();
        assert!(err.to_string().contains("192.0.2.1"), "{err}");
    }
}
