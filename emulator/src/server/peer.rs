//! Whether a loopback client is one of pyflare's own worker hosts: the
//! worker's code runs in them, and its subrequests must not reach the
//! loopback-only routes whatever client it builds (`fetch`, a WebSocket, a
//! raw socket), so the check looks at who holds the client's end of the
//! connection rather than at anything the client sends.
//!
//! On Linux the client's socket is found by its address in `/proc/net/tcp`
//! (or `tcp6`), and its inode among the open files of pyflare's child
//! processes. Elsewhere this answers false and the `CF-Worker` header the
//! host adds is the only sign.

use std::net::SocketAddr;

/// Whether the connection from `peer` belongs to a child process of this
/// pyflare (a worker host).
///
/// A loopback client's socket is always in the table, so one that cannot
/// be found counts as a host's (refused): the check fails closed.
#[cfg(target_os = "linux")]
pub fn from_own_host(peer: SocketAddr) -> bool {
    let Some(inode) = socket_inode(peer) else {
        return peer.ip().is_loopback();
    };
    let needle = format!("socket:[{inode}]");
    child_pids(std::process::id())
        .into_iter()
        .any(|pid| holds(pid, &needle))
}

#[cfg(not(target_os = "linux"))]
pub fn from_own_host(_peer: SocketAddr) -> bool {
    false
}

/// The `local_address` column `/proc/net/tcp*` shows for `addr`: each
/// 32-bit word of the address in the machine's byte order, then the port.
#[cfg(target_os = "linux")]
fn proc_address(addr: SocketAddr) -> (String, &'static str) {
    let words = |bytes: &[u8]| -> String {
        bytes
            .chunks(4)
            .map(|word| {
                format!(
                    "{:08X}",
                    u32::from_ne_bytes([word[0], word[1], word[2], word[3]])
                )
            })
            .collect()
    };
    match addr {
        SocketAddr::V4(v4) => (
            format!("{}:{:04X}", words(&v4.ip().octets()), v4.port()),
            "/proc/net/tcp",
        ),
        SocketAddr::V6(v6) => (
            format!("{}:{:04X}", words(&v6.ip().octets()), v6.port()),
            "/proc/net/tcp6",
        ),
    }
}

/// The inode of the socket bound to `peer`. The table is read a page at a
/// time, and sockets opened or closed meanwhile shift its rows, so a row
/// can be skipped in one read: it is read again before giving up.
#[cfg(target_os = "linux")]
fn socket_inode(peer: SocketAddr) -> Option<u64> {
    let (local, table) = proc_address(peer);
    (0..5).find_map(|_| {
        let text = std::fs::read_to_string(table).ok()?;
        text.lines().skip(1).find_map(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            (fields.get(1) == Some(&local.as_str()))
                .then(|| fields.get(9)?.parse().ok())
                .flatten()
        })
    })
}

#[cfg(target_os = "linux")]
fn child_pids(pid: u32) -> Vec<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return vec![];
    };
    tasks
        .flatten()
        .filter_map(|task| std::fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|p| p.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

#[cfg(target_os = "linux")]
fn holds(pid: u32, needle: &str) -> bool {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fd")) else {
        return false;
    };
    fds.flatten()
        .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|target| target.as_os_str() == needle))
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::*;

    #[test]
    fn a_connection_of_this_process_is_found_and_is_no_childs() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (_server, peer) = listener.accept().unwrap();
        assert_eq!(peer, client.local_addr().unwrap());
        let inode = socket_inode(peer).expect("the client's socket in /proc/net/tcp");
        assert!(holds(std::process::id(), &format!("socket:[{inode}]")));
        // This test's own connection is not a child's.
        assert!(!from_own_host(peer));
    }
}
