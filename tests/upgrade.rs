//! Zero-downtime binary upgrade: SIGUSR2 starts the binary again with `--upgrade`, the listening
//! sockets pass to the new process, and the old one drains and exits — under load, no call lost,
//! open streams told to reconnect, and the audit chain unbroken across the two processes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::redis::SESSION_KEY;
use common::trail::{Trail, audit_yaml, verify_cli};
use common::{Gateway, Raw, Setup, audit_records, routes_for, two_upstreams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

const SESSIONS: usize = 8;

fn pid_of(line: &str) -> u32 {
    line.rsplit("(pid ")
        .next()
        .and_then(|p| p.trim_end_matches(')').parse().ok())
        .unwrap_or_else(|| panic!("no pid in {line:?}"))
}

/// Ended: no such process, or a zombie (its parent, the old process, is gone; nobody may reap it).
fn gone(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |s| {
        s.rsplit(") ").next().is_some_and(|r| r.starts_with('Z'))
    })
}

struct KillOnDrop(u32);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-KILL", &self.0.to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigusr2_upgrades_the_binary_under_load_without_losing_a_call() {
    let (alpha, beta) = two_upstreams().await;
    let trail = Trail::new();
    let sock = tempfile::tempdir().unwrap();
    let extra = format!(
        "sessions:\n  keys: [{SESSION_KEY}]\n{}",
        audit_yaml(&trail, None)
    );
    let sock_path = sock.path().join("upgrade.sock");
    let mut gw = Gateway::start_with(
        Setup {
            routes: routes_for(&[("alpha", &alpha), ("beta", &beta)]),
            extra: &extra,
        },
        |conf| {
            let file = conf.join("mcp-edge.yaml");
            // Calls in flight finish within the grace period; the runtime then drops what is left.
            let text = std::fs::read_to_string(&file)
                .unwrap()
                .replace(
                    "server:\n",
                    &format!("server:\n  upgrade_sock: {}\n", sock_path.display()),
                )
                .replace("grace_period_seconds: 0", "grace_period_seconds: 2");
            std::fs::write(&file, text).unwrap();
        },
    );
    let old_pid = gw.pid();

    // An open event stream on the old process: told to reconnect when it drains.
    let watcher = Raw::open(&gw.url).await;
    let stream = watcher
        .client
        .get(&watcher.url)
        .header("accept", "text/event-stream")
        .header("mcp-session-id", watcher.session.clone().unwrap())
        .header("mcp-protocol-version", "2025-11-25")
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let stream = tokio::spawn(async move { stream.text().await.unwrap_or_default() });

    // Eight sessions calling in a loop, each over its own keep-alive connection.
    let stop = Arc::new(AtomicBool::new(false));
    let ok = Arc::new(AtomicU64::new(0));
    let mut workers = Vec::new();
    for i in 0..SESSIONS {
        let raw = Raw::open(&gw.url).await;
        let (stop, ok) = (stop.clone(), ok.clone());
        workers.push(tokio::spawn(async move {
            let mut failures = Vec::new();
            let mut n = 0u64;
            while !stop.load(Ordering::Relaxed) {
                n += 1;
                let body = format!(
                    r#"{{"jsonrpc":"2.0","id":{n},"method":"tools/call","params":{{"name":"alpha__echo","arguments":{{"text":"s{i}-{n}"}}}}}}"#
                );
                match raw.request(body).send().await {
                    Ok(resp) if resp.status() == 200 => {
                        let v = common::answer(resp).await;
                        if v["result"]["content"][0]["text"] == format!("alpha: s{i}-{n}") {
                            ok.fetch_add(1, Ordering::Relaxed);
                        } else {
                            failures.push(format!("call {n}: {v}"));
                        }
                    }
                    Ok(resp) => failures.push(format!("call {n}: HTTP {}", resp.status())),
                    Err(e) => failures.push(format!("call {n}: {e:?}")),
                }
            }
            failures
        }));
    }
    let calls_past = |n: u64| {
        let ok = ok.clone();
        async move {
            let deadline = std::time::Instant::now() + Duration::from_secs(20);
            while ok.load(Ordering::Relaxed) < n && std::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            ok.load(Ordering::Relaxed) >= n
        }
    };
    assert!(calls_past(200).await, "the load runs before the upgrade");

    std::process::Command::new("kill")
        .args(["-USR2", &old_pid.to_string()])
        .status()
        .unwrap();
    let line = gw
        .wait_line("mcp-edge listening on", 30)
        .await
        .expect("the new process reports that it listens");
    let new_pid = pid_of(&line);
    let _new = KillOnDrop(new_pid);
    assert_ne!(new_pid, old_pid);
    assert!(line.contains(&gw.base), "same address: {line}");

    let status = gw.wait_exit(30).await.expect("the old process exits");
    assert!(status.success(), "{status}");
    let at_exit = ok.load(Ordering::Relaxed);
    assert!(
        calls_past(at_exit + 200).await,
        "calls go on after the old process is gone"
    );
    stop.store(true, Ordering::Relaxed);
    let mut failures = Vec::new();
    for w in workers {
        failures.extend(w.await.unwrap());
    }
    assert!(
        failures.is_empty(),
        "{} calls failed: {failures:?}",
        failures.len()
    );
    let text = tokio::time::timeout(Duration::from_secs(5), stream)
        .await
        .expect("the old process's stream ended")
        .unwrap();
    assert!(text.contains("retry: 1000"), "no reconnect hint: {text:?}");

    // The new process serves the same sessions, and one audit chain covers both processes.
    let (status, v) = watcher
        .rpc(r#"{"jsonrpc":"2.0","id":1,"method":"tools/list"}"#)
        .await;
    assert_eq!(status, 200, "{v}");
    let calls = ok.load(Ordering::Relaxed);
    let recorded = || {
        audit_records(trail.path())
            .iter()
            .filter(|r| r["method"] == "tools/call")
            .count() as u64
    };
    assert!(
        common::eventually(10, || recorded() == calls).await,
        "{} of {calls} calls recorded",
        recorded()
    );
    std::process::Command::new("kill")
        .args(["-TERM", &new_pid.to_string()])
        .status()
        .unwrap();
    assert!(common::eventually(15, || gone(new_pid)).await);
    let mut args = vec![
        std::path::PathBuf::from("--key"),
        trail.key(),
        std::path::PathBuf::from("--anchor"),
        trail.anchor(),
    ];
    args.extend(
        std::fs::read_dir(trail.path())
            .unwrap()
            .map(|e| e.unwrap().path()),
    );
    let args: Vec<&std::path::Path> = args.iter().map(|p| p.as_path()).collect();
    let (verified, report) = verify_cli(&args);
    assert!(verified, "{report}");
}
