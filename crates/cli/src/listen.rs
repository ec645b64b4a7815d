//! The listening sockets weir opens, all with one accept backlog.
//!
//! tokio's `TcpListener::bind` listens with mio's backlog of 128. A burst of
//! more new connections than that — clients arriving at once, an lb opening
//! connections to an API node — overflows the accept queue, and Linux drops
//! the SYNs beyond it, to be resent a second later. nginx listens with 511,
//! `weir lb`'s serving sockets already did with 1024.

use std::net::SocketAddr;

use tokio::net::{TcpListener, TcpSocket};

/// Connections the kernel queues for a listener before it drops SYNs
/// (capped by `net.core.somaxconn`).
pub const BACKLOG: u32 = 1024;

/// A listener on `addr`.
pub fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listener(addr, false)
}

/// A listener on `addr` that others may share (`SO_REUSEPORT`): the lb's
/// serving threads each accept on their own.
pub fn bind_shared(addr: SocketAddr) -> std::io::Result<TcpListener> {
    listener(addr, true)
}

fn listener(addr: SocketAddr, shared: bool) -> std::io::Result<TcpListener> {
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()?
    } else {
        TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    if shared {
        socket.set_reuseport(true)?;
    }
    // Accepted connections inherit it: answers are not held back by Nagle.
    socket.set_nodelay(true)?;
    socket.bind(addr)?;
    socket.listen(BACKLOG)
}
