//! The gateway's features one at a time: a ladder of configurations from everything off to
//! JWT + policy + limits + audit, each step adding one feature, measured beside the plain
//! Pingora proxy in one interleaved run (`mcp-edge-bench features`, writes bench/FEATURES.md).
//! The step from one rung to the next is what that feature costs per call.

use crate::load::{self, Kind, Run, Target};
use crate::procs::{self, Proc, spawn_gateway, spawn_upstream, start};
use anyhow::{Context, Result};
use mcp_edge::auth::minted::Minter;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// What a gateway under test has on.
#[derive(Clone, Copy)]
pub struct Features {
    pub jwt: bool,
    pub policy: bool,
    pub limits: bool,
    pub audit: bool,
}

pub const OFF: Features = Features {
    jwt: false,
    policy: false,
    limits: false,
    audit: false,
};
pub const ALL: Features = Features {
    jwt: true,
    policy: true,
    limits: true,
    audit: true,
};

const LADDER: [(&str, Features); 5] = [
    ("mcp-edge (all off)", OFF),
    ("+ JWT", Features { jwt: true, ..OFF }),
    (
        "+ policy",
        Features {
            jwt: true,
            policy: true,
            ..OFF
        },
    ),
    (
        "+ limits",
        Features {
            audit: false,
            ..ALL
        },
    ),
    ("+ audit (all on)", ALL),
];

/// The identity provider the JWT targets trust: a static JWKS in `tmp`.
pub struct Idp {
    minter: Minter,
    jwks: String,
}

impl Idp {
    pub fn new(tmp: &Path) -> Result<Self> {
        let minter = Minter::generate();
        let jwks = tmp.join("jwks.json");
        std::fs::write(&jwks, minter.jwks().to_string())?;
        Ok(Self {
            minter,
            jwks: jwks.display().to_string(),
        })
    }

    fn token(&self, audience: &str) -> String {
        let caller = mcp_edge::policy::Caller {
            subject: "bench-user".into(),
            groups: vec!["bench".into()],
            scopes: vec!["mcp:read".into(), "mcp:write".into()],
            tenant: None,
            client_id: None,
        };
        self.minter
            .mint("bench-idp", &caller, audience, Duration::from_secs(3600))
    }
}

/// Starts a gateway `name` with `f` on, one route `bench` to `upstream`; the target carries the
/// token it needs. JWTs: EdDSA from a static JWKS; policy: group visibility and per-class
/// scopes; limits: buckets on caller and route that never refuse; audit: a JSONL sink with
/// `fsync: interval` and an HMAC chain.
pub fn spawn(
    bin: &Path,
    tmp: &Path,
    name: &'static str,
    f: Features,
    upstream: &str,
    idp: &Idp,
) -> Result<(Proc, Target)> {
    let mut extra = String::new();
    let mut route = vec!["visibility: [\"*\"]"];
    if f.jwt {
        let _ = writeln!(
            extra,
            "auth:\n  mode: jwt\n  issuer: bench-idp\n  jwks_file: {}\n  algorithms: [EdDSA]",
            idp.jwks
        );
    }
    if f.policy {
        route = vec![
            "visibility: [bench]",
            "access: { read: [mcp:read], write: [mcp:write] }",
        ];
    }
    if f.limits {
        extra.push_str("limits: { per_user_rpm: 100000000, burst: 1000000 }\n");
        route.push("limits: { per_user_rpm: 100000000, burst: 1000000 }");
    }
    if f.audit {
        let dir = tmp.join(format!(
            "audit-{}",
            name.replace(|c: char| !c.is_alphanumeric(), "")
        ));
        let _ = writeln!(
            extra,
            "audit:\n  hmac_key: bench-audit-key-0123456789\n  sinks:\n    - jsonl: {{ dir: {}, fsync: interval }}",
            dir.display()
        );
    }
    let dir_name = format!("gw-{}", name.replace(|c: char| !c.is_alphanumeric(), ""));
    let route = route.join("\n");
    let (p, url) = spawn_gateway(
        bin,
        tmp,
        &dir_name,
        &extra,
        &[("bench".into(), upstream.to_string(), &route)],
    )?;
    let token = f.jwt.then(|| idp.token(&url));
    let target = Target::new(name, &url, "bench__", token, vec![p.0.id()]);
    Ok((p, target))
}

/// The plain Pingora reverse proxy (same Pingora, same 2 threads, parses nothing) to `upstream`.
pub fn spawn_pingora(me: &Path, upstream: &str) -> Result<(Proc, Target)> {
    let listen = format!("127.0.0.1:{}", procs::free_port()?);
    let (p, url) = start(
        Command::new(me).args(["pingora", &listen, upstream]),
        "ready",
    )?;
    let target = Target::new("plain Pingora proxy", &url, "", None, vec![p.0.id()]);
    Ok((p, target))
}

/// `serve off|on`: an upstream and one gateway with everything off or on, for `perf`; prints
/// `load` arguments for that gateway (URL, tool prefix, pid, token) and runs until killed.
pub fn serve(which: &str) -> Result<()> {
    let me = std::env::current_exe()?;
    let bin = me.parent().context("exe dir")?.join("mcp-edge");
    let tmp = std::env::temp_dir().join(format!("mcp-edge-serve-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (up, up_url) = spawn_upstream(&me, "json")?;
    let idp = Idp::new(&tmp)?;
    let f = if which == "on" { ALL } else { OFF };
    let (gw, t) = spawn(&bin, &tmp, "serve", f, &up_url, &idp)?;
    println!(
        "load {} bench__ 16 10 {} {}",
        t.url,
        gw.0.id(),
        t.token.as_deref().unwrap_or("")
    );
    let mut line = String::new();
    std::io::stdin().read_line(&mut line)?;
    drop((gw, up));
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

/// `features [--quick]`: the ladder beside the plain Pingora proxy, small `tools/call` at c16
/// and c64, interleaved rounds, medians.
pub fn run(quick: bool) -> Result<()> {
    let me = std::env::current_exe()?;
    let bin = me.parent().context("exe dir")?.join("mcp-edge");
    let tmp = std::env::temp_dir().join(format!("mcp-edge-features-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let (up, up_url) = spawn_upstream(&me, "json")?;
    let idp = Idp::new(&tmp)?;
    let mut procs = vec![up];
    let mut targets = Vec::new();
    let (p, t) = spawn_pingora(&me, &up_url)?;
    procs.push(p);
    targets.push(t);
    for (name, f) in LADDER {
        let (p, t) = spawn(&bin, &tmp, name, f, &up_url, &idp)?;
        procs.push(p);
        targets.push(t);
    }
    let (rounds, secs) = if quick { (1, 1.5) } else { (5, 3.0) };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let concurrencies = [16, 64];
    let mut results: BTreeMap<(usize, usize), Vec<Run>> = BTreeMap::new();
    for _ in 0..rounds {
        for (ci, conc) in concurrencies.iter().enumerate() {
            for (ti, t) in targets.iter().enumerate() {
                let r = rt.block_on(load::closed_loop(
                    t,
                    Kind::Small,
                    *conc,
                    Duration::from_secs_f64(secs),
                ))?;
                eprintln!(
                    "c{conc} | {}: {:.0} rps, {:.1} µs CPU/req, {} errors",
                    t.name, r.rps, r.cpu_us_per_req, r.errors
                );
                results.entry((ci, ti)).or_default().push(r);
            }
        }
    }
    let mut md = String::from("# mcp-edge, one feature at a time\n\n");
    let _ = writeln!(
        md,
        "Generated by `bench/run.sh features` ({rounds} interleaved rounds of {secs} s, medians; small `tools/call`; \
         CPU per call of the process under test from /proc). Each rung adds one feature to the one above it; \
         \"step\" is what that feature adds per call. How each cost divides inside is in PROFILE.md.\n"
    );
    for (ci, conc) in concurrencies.iter().enumerate() {
        let med =
            |ti: usize, f: &dyn Fn(&Run) -> f64| median(results[&(ci, ti)].iter().map(f).collect());
        let _ = writeln!(md, "## concurrency {conc}\n");
        let _ = writeln!(
            md,
            "| target | req/s | CPU µs/call | step µs/call | CPU vs Pingora | req/s vs Pingora | errors |\n|---|---:|---:|---:|---:|---:|---:|"
        );
        let (floor_cpu, floor_rps) = (med(0, &|r| r.cpu_us_per_req), med(0, &|r| r.rps));
        for (ti, t) in targets.iter().enumerate() {
            let cpu = med(ti, &|r| r.cpu_us_per_req);
            let step = if ti == 0 {
                "-".to_string()
            } else {
                format!("{:+.1}", cpu - med(ti - 1, &|r| r.cpu_us_per_req))
            };
            let rps = med(ti, &|r| r.rps);
            let errors: u64 = results[&(ci, ti)].iter().map(|r| r.errors).sum();
            let _ = writeln!(
                md,
                "| {} | {rps:.0} | {cpu:.1} | {step} | {:.2} | {:.2} | {errors} |",
                t.name,
                cpu / floor_cpu,
                rps / floor_rps
            );
        }
        let _ = writeln!(md);
    }
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("FEATURES.md");
    std::fs::write(&out, md)?;
    eprintln!("wrote {}", out.display());
    drop(procs);
    let _ = std::fs::remove_dir_all(&tmp);
    Ok(())
}
