//! Helpers shared by the end-to-end tests (each test binary uses some of them).
#![allow(dead_code, clippy::unwrap_used)]

/// A free loopback port.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child process, killed and reaped when dropped, so a failing test leaves no
/// process behind.
pub(crate) struct KillOnDrop(pub(crate) std::process::Child);

impl KillOnDrop {
    /// Its process id, for `kill -STOP` and the like.
    pub(crate) fn pid(&self) -> String {
        self.0.id().to_string()
    }
}

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
