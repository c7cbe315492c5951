//! Free TCP ports.

use std::io;
use std::net::{IpAddr, TcpListener};

/// A free TCP port on `addr`, found by binding port 0 and releasing it.
///
/// Racy by nature: another process may take the port before the caller's server binds it, so
/// callers retry a start that fails with "address already in use".
pub fn free_port(addr: impl Into<IpAddr>) -> io::Result<u16> {
    let addr = addr.into();
    let listener = TcpListener::bind((addr, 0))
        .map_err(|e| io::Error::new(e.kind(), format!("bind a free port on {addr}: {e}")))?;
    Ok(listener.local_addr()?.port())
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
    fn an_address_not_on_this_host_is_an_error_that_names_it() {
        // TEST-NET-1 (RFC 5737): never assigned to a local interface.
        let err = free_port(Ipv4Addr::new(192, 0, 2, 1)).unwrap_err();
        assert!(err.to_string().contains("192.0.2.1"), "{err}");
    }
}
