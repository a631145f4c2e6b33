//! Zero-downtime binary upgrade. SIGUSR2 asks the running gateway to start the binary now at its
//! own path, with its own arguments and `--upgrade`. Once the new process waits on
//! `server.upgrade_sock`, the old one hands it the listening sockets (Pingora's SIGQUIT path):
//! both accept for a few seconds, then the old one stops accepting, tells open event streams to
//! reconnect, lets calls in flight finish and exits. If the new process cannot start (a bad binary
//! or configuration), the old one keeps serving and says why.
//!
//! The new process tells systemd (`NOTIFY_SOCKET`, `Type=notify`, `NotifyAccess=all`) that it is
//! the service's main process once it accepts, and opens its audit sinks only after the old
//! process has written its last record, so the audit chain goes on without a fork.

use async_trait::async_trait;
use pingora::server::ShutdownWatch;
use pingora::services::background::BackgroundService;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Set for the new process: the pid of the process it takes over from.
const PREDECESSOR: &str = "MCP_EDGE_PREDECESSOR";
/// How long the new binary may take to start waiting for the sockets.
const START_TIMEOUT: Duration = Duration::from_secs(15);

pub struct OnSignal {
    pub sock: PathBuf,
    /// Set once the sockets are handed over (see `Shared::draining`).
    pub draining: Arc<AtomicBool>,
}

#[async_trait]
impl BackgroundService for OnSignal {
    async fn start(&self, mut shutdown: ShutdownWatch) {
        use tokio::signal::unix::{SignalKind, signal};
        let mut usr2 = match signal(SignalKind::user_defined2()) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot handle SIGUSR2 (binary upgrade): {e}");
                return;
            }
        };
        loop {
            tokio::select! {
                _ = shutdown.changed() => return,
                Some(()) = usr2.recv() => {
                    if hand_over(&self.sock).await {
                        self.draining.store(true, Ordering::Relaxed);
                        return;
                    }
                }
            }
        }
    }
}

/// Starts the new binary and, once it waits for the sockets, sends them (SIGQUIT to ourselves).
/// False when the new process did not get that far; this one then keeps serving.
async fn hand_over(sock: &Path) -> bool {
    let exe = match std::env::current_exe() {
        // A binary replaced on disk reads as "… (deleted)": the new one is at the same path.
        Ok(p) => PathBuf::from(
            p.to_string_lossy()
                .trim_end_matches(" (deleted)")
                .to_string(),
        ),
        Err(e) => {
            log::error!("binary upgrade: cannot tell this binary's path: {e}");
            return false;
        }
    };
    let args: Vec<_> = std::env::args_os()
        .skip(1)
        .filter(|a| a != "--upgrade")
        .collect();
    // A socket file left by an earlier upgrade would look like the new process waiting.
    let _ = std::fs::remove_file(sock);
    let mut child = match std::process::Command::new(&exe)
        .args(&args)
        .arg("--upgrade")
        .env(PREDECESSOR, std::process::id().to_string())
        .spawn()
    {
        Ok(c) => c,
        Err(e) => {
            log::error!(
                "binary upgrade: cannot start {}: {e}; still serving",
                exe.display()
            );
            return false;
        }
    };
    log::info!(
        "binary upgrade: started {} as pid {}",
        exe.display(),
        child.id()
    );
    let deadline = Instant::now() + START_TIMEOUT;
    while !sock.exists() {
        if let Ok(Some(status)) = child.try_wait() {
            log::error!("binary upgrade: the new process ended ({status}); still serving");
            return false;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            log::error!(
                "binary upgrade: the new process did not wait on {} within {START_TIMEOUT:?}; stopped it, still serving",
                sock.display()
            );
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    log::info!(
        "binary upgrade: handing the listening sockets to pid {}, then draining",
        child.id()
    );
    if let Err(e) = nix::sys::signal::raise(nix::sys::signal::Signal::SIGQUIT) {
        log::error!("binary upgrade: cannot start the hand-over: {e}");
        return false;
    }
    true
}

/// Tells systemd, when it supervises us, that this process accepts and is the main process.
pub fn notify_ready() {
    if std::env::var_os("NOTIFY_SOCKET").is_none() {
        return;
    }
    let state = [
        sd_notify::NotifyState::MainPid(std::process::id()),
        sd_notify::NotifyState::Ready,
    ];
    if let Err(e) = sd_notify::notify(false, &state) {
        log::warn!("cannot notify systemd: {e}");
    }
}

/// Blocks until the process this one took over from has ended (at once when there is none).
/// For the audit writer: two writers on one chain would fork it.
pub fn wait_for_predecessor() {
    let Some(pid) = std::env::var(PREDECESSOR)
        .ok()
        .and_then(|p| p.parse::<u32>().ok())
    else {
        return;
    };
    let stat = PathBuf::from(format!("/proc/{pid}/stat"));
    let started = Instant::now();
    let mut said = Duration::ZERO;
    loop {
        // Gone, or a zombie nobody has reaped yet: either way it writes no more.
        match std::fs::read_to_string(&stat) {
            Err(_) => return,
            Ok(s) if s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z')) => return,
            Ok(_) => {}
        }
        if started.elapsed() >= said + Duration::from_secs(30) {
            said = started.elapsed();
            log::warn!("audit: waiting for pid {pid} (the process before the upgrade) to finish");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Whether this process takes over from another (its audit sinks open once that one ends).
pub fn has_predecessor() -> bool {
    std::env::var_os(PREDECESSOR).is_some()
}
