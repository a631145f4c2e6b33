//! The official clients through the merged endpoint and each per-server door: PyPI `mcp` 2.3.0 and npm
//! `@modelcontextprotocol/client` 2.4.0 (installed by `interop/setup.sh`, which `.ci/run` runs),
//! each in the 2026-07-28, legacy and auto modes, in front of one upstream of each era: a
//! dual-era one, a 2025-only one (refuses `server/discover`) and a stateless-only one. Both
//! clients validate every 2026 result strictly, so a missing `resultType` or cache hint fails.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::*;
use mcp_edge::demo::Mode;
use std::path::PathBuf;
use std::process::Command;

fn run(command: &mut Command) -> String {
    let out = command.output().expect("run the client");
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    text
}

#[tokio::test]
async fn python_and_typescript_clients_work_in_every_mode_before_every_era() {
    let Some(dir) = interop_dir(&["py", "node"]) else {
        return;
    };
    let mut routes = Vec::new();
    let mut upstreams = Vec::new();
    for (name, mode) in [
        ("dual", Mode::Sessions),
        ("legacy", Mode::LegacyOnly),
        ("modern", Mode::StatelessJson),
    ] {
        let up = mcp_edge::demo::spawn_upstream_with(name, "127.0.0.1:0", mode)
            .await
            .unwrap();
        // The dual-era route's `note` needs the user's approval (asked on the session's stream,
        // or in an input_required round for 2026-07-28 clients).
        let extra = if name == "dual" {
            "tools:\n  note: { approval: required }"
        } else {
            ""
        };
        routes.push((name, up.url.clone(), extra));
        upstreams.push(up);
    }
    let gw = Gateway::start(Setup { routes, extra: "" });
    let interop = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("interop");
    // ES modules resolve packages beside the script, not through NODE_PATH.
    let script = dir.join("node/ts_client.mjs");
    std::fs::copy(interop.join("ts_client.mjs"), &script).unwrap();
    // The merged endpoint with every route, then each route's own door (names unprefixed).
    // A per-server door passes its upstream through as it is: a 2025-only upstream serves no
    // client pinned to 2026-07-28 there (`/mcp` bridges it).
    const EVERY: [&str; 3] = ["2026-07-28", "legacy", "auto"];
    let every: &'static [&str] = &EVERY;
    let mut doors = vec![(gw.url.clone(), "dual,legacy,modern".to_string(), 3, every)];
    for name in ["dual", "legacy", "modern"] {
        let modes = if name == "legacy" { &every[1..] } else { every };
        doors.push((
            format!("{}/servers/{name}/mcp", gw.base),
            format!(":{name}"),
            1,
            modes,
        ));
    }
    for (url, names, calls, modes) in doors {
        let python = tokio::task::spawn_blocking({
            let (dir, interop, url, names) =
                (dir.clone(), interop.clone(), url.clone(), names.clone());
            move || {
                // Approval is asked only on the merged endpoint.
                let approve = (calls > 1).then_some(["--approve", "--confirm=legacy"]);
                run(Command::new(dir.join("py/bin/python"))
                    .arg(interop.join("python_client.py"))
                    .args([url, names])
                    .args(modes)
                    .args(approve.into_iter().flatten()))
            }
        });
        let typescript = tokio::task::spawn_blocking({
            let (script, url, names) = (script.clone(), url.clone(), names.clone());
            move || {
                run(Command::new("node")
                    .arg(script)
                    .args([url, names])
                    .args(modes))
            }
        });
        let (python, typescript) = (python.await.unwrap(), typescript.await.unwrap());
        for mode in modes {
            for (client, out) in [("python", &python), ("typescript", &typescript)] {
                let line = format!("{client} {mode}: ");
                // On the merged endpoint Python answers an approval and a 2025 upstream's
                // question in every mode (2026-07-28: input_required rounds).
                let approval = client == "python" && calls > 1;
                assert!(
                    out.lines().any(|l| l.starts_with(&line)
                        && l.contains(&format!("{calls} calls"))
                        && (!approval || l.contains("approval, legacy asked: ok"))),
                    "{client} {mode} through {url}:\n{out}"
                );
            }
        }
    }
}
