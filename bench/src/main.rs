//! mcp-edge-bench: an MCP load generator and the harness that runs it against several targets
//! side by side — the upstream directly, nginx as a plain reverse proxy, mcp-edge with everything
//! off, and mcp-edge with JWT + policy + limits + audit on — interleaved, several rounds, medians.
//!
//! `mcp-edge-bench run [--quick]` writes bench/RESULTS.md; `mcp-edge-bench upstream ADDR MODE`
//! is the purpose-built upstream it starts (rmcp, an `echo` tool, JSON answers).

mod conns;
mod features;
mod floor;
mod load;
mod procs;
mod report;

use anyhow::{Context, Result, bail};
use features::{ALL, Idp, OFF};
use load::{Kind, Run, Target};
use procs::{spawn_gateway, spawn_nginx, spawn_upstream};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("upstream") => upstream(
            args.get(1).context("ADDR")?,
            args.get(2).map_or("json", String::as_str),
        ),
        Some("run") | None => run(args.iter().any(|a| a == "--quick")),
        Some("load") => load_only(&args[1..]),
        Some("serve") => features::serve(args.get(1).map_or("on", String::as_str)),
        Some("features") => features::run(args.iter().any(|a| a == "--quick")),
        Some("conns") => conns::run(args.get(1).map_or(Ok(5000), |n| n.parse())?),
        Some("pingora") => floor::pingora_proxy(
            args.get(1).context("LISTEN")?,
            args.get(2).context("UPSTREAM")?,
        ),
        Some("hold") => floor::hold(args.get(1).context("ADDR")?),
        Some(other) => {
            bail!("unknown command `{other}`; use `run [--quick]` or `upstream ADDR json|sessions`")
        }
    }
}

/// One closed loop against a URL, for profiling: `load URL PREFIX CONCURRENCY SECONDS [PID [TOKEN]]`.
fn load_only(args: &[String]) -> Result<()> {
    let url = args.first().context("URL")?;
    let prefix: &'static str = if args.get(1).is_some_and(|p| p == "bench__") {
        "bench__"
    } else {
        ""
    };
    let conc = args.get(2).map_or(Ok(16), |c| c.parse())?;
    let secs: f64 = args.get(3).map_or(Ok(10.0), |c| c.parse())?;
    let pids = args
        .get(4)
        .map(|p| p.parse())
        .transpose()?
        .into_iter()
        .collect();
    let token = args.get(5).filter(|t| !t.is_empty()).cloned();
    let t = Target::new("target", url, prefix, token, pids);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let r = rt.block_on(load::closed_loop(
        &t,
        Kind::Small,
        conc,
        Duration::from_secs_f64(secs),
    ))?;
    println!(
        "{:.0} rps, p50 {}µs, p99 {}µs, {} errors, {:.1} µs CPU/req",
        r.rps, r.p50_us, r.p99_us, r.errors, r.cpu_us_per_req
    );
    Ok(())
}

/// The purpose-built upstream, in its own process so its CPU is not the gateway's.
fn upstream(addr: &str, mode: &str) -> Result<()> {
    let mode = match mode {
        "sessions" => mcp_edge::demo::Mode::Sessions,
        _ => mcp_edge::demo::Mode::StatelessJson,
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let up = mcp_edge::demo::spawn_upstream_with("bench", addr, mode).await?;
        println!("ready {}", up.url);
        tokio::signal::ctrl_c().await?;
        drop(up);
        Ok(())
    })
}

fn run(quick: bool) -> Result<()> {
    let me = std::env::current_exe()?;
    let gateway_bin = me.parent().context("exe dir")?.join("mcp-edge");
    if !gateway_bin.exists() {
        bail!(
            "{} is missing: build it first (cargo build --release --bin mcp-edge)",
            gateway_bin.display()
        );
    }
    let tmp = std::env::temp_dir().join(format!("mcp-edge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (up_proc, up_url) = spawn_upstream(&me, "json")?;
    let (nginx_proc, nginx_url) = spawn_nginx(&tmp, &up_url)?;
    let idp = Idp::new(&tmp)?;
    let (pingora_proc, pingora) = features::spawn_pingora(&me, &up_url)?;
    let (off_proc, off) =
        features::spawn(&gateway_bin, &tmp, "mcp-edge (all off)", OFF, &up_url, &idp)?;
    let (on_proc, on) = features::spawn(
        &gateway_bin,
        &tmp,
        "mcp-edge (JWT+policy+limits+audit)",
        ALL,
        &up_url,
        &idp,
    )?;
    let mut targets = vec![
        Target::new("direct", &up_url, "", None, vec![up_proc.0.id()]),
        Target::new(
            "nginx",
            &nginx_url,
            "",
            None,
            procs::with_children(nginx_proc.0.id()),
        ),
        pingora,
        off,
        on,
    ];
    // Another build of the gateway (say, the commit before a change) measured in the same run.
    let mut before_procs = Vec::new();
    if let Some(before) = std::env::var_os("MCP_EDGE_BENCH_BEFORE") {
        let before = Path::new(&before);
        for (name, f) in [
            ("before: mcp-edge (all off)", OFF),
            ("before: mcp-edge (JWT+policy+limits+audit)", ALL),
        ] {
            let (p, t) = features::spawn(before, &tmp, name, f, &up_url, &idp)?;
            targets.push(t);
            before_procs.push(p);
        }
    }
    let rounds = if quick { 1 } else { 3 };
    let secs = if quick { 1.5 } else { 3.0 };
    let scenarios: Vec<(&str, Kind, usize)> = vec![
        ("small tools/call, concurrency 16", Kind::Small, 16),
        ("small tools/call, concurrency 64", Kind::Small, 64),
        ("256 KiB argument, concurrency 16", Kind::Large, 16),
        (
            "streamed (SSE, 3 progress events), concurrency 16",
            Kind::Sse,
            16,
        ),
    ];
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let mut results: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for round in 0..rounds {
        for (si, (name, kind, conc)) in scenarios.iter().enumerate() {
            for (ti, t) in targets.iter().enumerate() {
                let r = rt.block_on(load::closed_loop(
                    t,
                    *kind,
                    *conc,
                    Duration::from_secs_f64(secs),
                ))?;
                eprintln!(
                    "round {} | {name} | {}: {:.0} rps, p50 {}µs, p99 {}µs, {} errors, {:.1} µs CPU/req",
                    round + 1,
                    t.name,
                    r.rps,
                    r.p50_us,
                    r.p99_us,
                    r.errors,
                    r.cpu_us_per_req
                );
                results.entry((si, ti)).or_default().push(r);
            }
        }
    }
    let list = rt.block_on(list_scenario(
        &me,
        &gateway_bin,
        &tmp,
        if quick { 50 } else { 300 },
    ))?;
    let idle = rt.block_on(idle_sessions(
        &me,
        &gateway_bin,
        &tmp,
        if quick { 1000 } else { 10_000 },
    ))?;
    let md = report::render(&targets, &scenarios, &results, &list, &idle, rounds, secs);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("RESULTS.md");
    std::fs::write(&out, md)?;
    eprintln!("wrote {}", out.display());
    drop((on_proc, off_proc, pingora_proc, nginx_proc, before_procs));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

/// `tools/list` merged from 10 upstreams versus each upstream's own list, sequentially.
async fn list_scenario(me: &Path, gateway: &Path, tmp: &Path, n: usize) -> Result<report::List> {
    let mut ups = Vec::new();
    for _ in 0..10 {
        ups.push(spawn_upstream(me, "json")?);
    }
    let routes: Vec<(String, String, &str)> = ups
        .iter()
        .enumerate()
        .map(|(i, (_, url))| (format!("up{i}"), url.clone(), "visibility: [\"*\"]"))
        .collect();
    let (gw, gw_url) = spawn_gateway(gateway, tmp, "list", "", &routes)?;
    let mut direct_p50 = Vec::new();
    for (_, url) in &ups {
        direct_p50.push(load::list_latency(url, n, 8).await?.0);
    }
    let (gw_p50, gw_p99, tools) = load::list_latency(&gw_url, n, 80).await?;
    drop(gw);
    Ok(report::List {
        slowest_direct_p50_us: direct_p50.iter().copied().max().unwrap_or(0),
        gateway_p50_us: gw_p50,
        gateway_p99_us: gw_p99,
        tools,
        requests: n,
    })
}

/// Memory of 10 000 idle sessions: the gateway's (sealed ids) versus a stateful upstream's.
async fn idle_sessions(me: &Path, gateway: &Path, tmp: &Path, n: usize) -> Result<report::Idle> {
    let (up, up_url) = spawn_upstream(me, "sessions")?;
    let (gw, gw_url) = spawn_gateway(
        gateway,
        tmp,
        "idle",
        "",
        &[("bench".into(), up_url.clone(), "visibility: [\"*\"]")],
    )?;
    // A first batch warms the allocator and connection pools; the second shows what a session
    // really costs (a gateway that kept per-session state would grow again by as much).
    let gw_start = procs::rss_kb(gw.0.id());
    load::open_sessions(&gw_url, n).await?;
    let gw_before = procs::rss_kb(gw.0.id());
    let up_before = procs::rss_kb(up.0.id());
    load::open_sessions(&gw_url, n).await?;
    let gw_after = procs::rss_kb(gw.0.id());
    let up_after = procs::rss_kb(up.0.id());
    Ok(report::Idle {
        sessions: n,
        gateway_start_kb: gw_start,
        gateway_kb: (gw_before, gw_after),
        upstream_kb: (up_before, up_after),
    })
}
