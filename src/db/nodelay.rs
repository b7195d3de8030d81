//! TCP_NODELAY on the connections to PostgreSQL.
//!
//! sqlx 0.9.0 stopped disabling Nagle's algorithm on its sockets
//! (sqlx issue #4335, fixed upstream but not released yet). A message
//! larger than the socket's send buffer then leaves in two writes, the
//! second held back until the first is acknowledged, and PostgreSQL delays
//! that acknowledgement while it waits for the rest of the message (a
//! delayed ACK) on every batched create. sqlx gives no access to its socket, so when the
//! pool opens a connection this sets the option on every TCP socket of the
//! process connected to PostgreSQL's port that lacks it. Remove this once
//! sqlx sets it again.

/// Sets TCP_NODELAY on this process's TCP sockets whose peer is `port`
/// (found through `/proc/self/fd`).
#[cfg(target_os = "linux")]
pub fn set_on_connections_to(port: u16) {
    use std::os::fd::BorrowedFd;

    let Ok(fds) = std::fs::read_dir("/proc/self/fd") else { return };
    for entry in fds.flatten() {
        let Some(fd) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else { continue };
        if !std::fs::read_link(entry.path())
            .is_ok_and(|target| target.as_os_str().as_encoded_bytes().starts_with(b"socket:"))
        {
            continue;
        }
        // SAFETY: the descriptor is only used for getsockopt, getpeername
        // and setsockopt, and not kept. If another thread closes it
        // meanwhile, they fail with EBADF; if the number is reused, the
        // option is set only on a TCP socket whose peer is PostgreSQL's port.
        let fd = unsafe { BorrowedFd::borrow_raw(fd) };
        let socket = socket2::SockRef::from(&fd);
        let to_postgres = socket.peer_addr().ok().and_then(|a| a.as_socket()).is_some_and(|a| a.port() == port);
        if to_postgres && socket.tcp_nodelay().is_ok_and(|on| !on) {
            let _ = socket.set_tcp_nodelay(true);
        }
    }
}

/// Elsewhere the latency is left as it is.
#[cfg(not(target_os = "linux"))]
pub fn set_on_connections_to(_port: u16) {}
