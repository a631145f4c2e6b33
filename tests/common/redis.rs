//! A throwaway redis-server for tests that share state between instances.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A sessions key several gateway instances of one test share.
pub const SESSION_KEY: &str = "q9Ywd8c0m0cA3c2mA1Cz0sQkJq2Gm8zv8pWkX4o0c1E=";

pub struct Redis {
    pub child: Child,
    pub port: u16,
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A throwaway redis-server on a free loopback port (Debian's `redis-server`, installed by .ci/run).
pub fn start() -> Redis {
    let port = super::free_port();
    let child = Command::new("redis-server")
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--save",
            "",
            "--appendonly",
            "no",
        ])
        .stdout(Stdio::null())
        .spawn()
        .expect("redis-server (apt-get install redis-server)");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "redis-server did not start");
        std::thread::yield_now();
    }
    Redis { child, port }
}
