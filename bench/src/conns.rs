//! Memory per client connection: `conns [N]` (default 5 000) opens N idle TCP connections, then N
//! open `GET` event streams, against mcp-edge as shipped (`server.read_buffer_bytes: 0`),
//! mcp-edge with Pingora's default 64 KiB read buffer, a plain Pingora proxy and nginx, in one
//! run, and writes the growth of each target's resident memory per connection to
//! bench/CONNECTIONS.md. The proxies' streams go to an upstream that holds them open; mcp-edge's
//! `GET /mcp` stream is its own (no upstream connection).

use crate::procs::{self, Proc, free_port, spawn_gateway, spawn_nginx, spawn_upstream, start};
use anyhow::{Context, Result, bail};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

struct Target {
    name: &'static str,
    pids: Vec<u32>,
    addr: SocketAddr,
    /// The request that opens an event stream.
    get: String,
    _procs: Vec<Proc>,
}

struct Row {
    name: &'static str,
    idle: f64,
    streams: f64,
}

pub fn run(n: usize) -> Result<()> {
    let me = std::env::current_exe()?;
    let gateway = me.parent().context("exe dir")?.join("mcp-edge");
    let tmp = std::env::temp_dir().join(format!("mcp-edge-conns-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    // A fresh process per target and phase: memory freed by one phase would be reused by the next.
    let fresh = |i: usize| -> Result<Target> {
        match i {
            0 => rt.block_on(mcp_edge(&me, &gateway, &tmp, "mcp-edge", 0)),
            1 => rt.block_on(mcp_edge(&me, &gateway, &tmp, "mcp-edge 64k", 65536)),
            2 => plain(&me, &tmp, "plain Pingora proxy"),
            _ => plain(&me, &tmp, "nginx"),
        }
    };
    let mut rows = Vec::new();
    for i in 0..4 {
        let t = fresh(i)?;
        let idle = rt.block_on(per_connection(&t, n, None))?;
        drop(t);
        let t = fresh(i)?;
        let streams = rt.block_on(per_connection(&t, n, Some(&t.get)))?;
        println!(
            "{}: {idle:.0} B per idle connection, {streams:.0} B per open GET stream",
            t.name
        );
        rows.push(Row {
            name: t.name,
            idle,
            streams,
        });
    }
    let _ = std::fs::remove_dir_all(&tmp);
    let out = Path::new(env!("CARGO_MANIFEST_DIR")).join("CONNECTIONS.md");
    std::fs::write(&out, render(n, &rows))?;
    println!("wrote {}", out.display());
    Ok(())
}

async fn mcp_edge(
    me: &Path,
    gateway: &Path,
    tmp: &Path,
    name: &'static str,
    read_buffer: usize,
) -> Result<Target> {
    let (up, up_url) = spawn_upstream(me, "json")?;
    let (gw, url) = spawn_gateway(
        gateway,
        tmp,
        &format!("conns-{read_buffer}"),
        &format!(
            "server: {{ threads: 2, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1, read_buffer_bytes: {read_buffer} }}\n"
        ),
        &[("bench".into(), up_url, "visibility: [\"*\"]")],
    )?;
    let init = reqwest::Client::new()
        .post(&url)
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(r#"{"jsonrpc":"2.0","id":0,"method":"initialize","params":{"protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"conns","version":"1"}}}"#)
        .send()
        .await?;
    let session = init
        .headers()
        .get("mcp-session-id")
        .context("no session id")?
        .to_str()?
        .to_string();
    let addr = address(&url)?;
    Ok(Target {
        name,
        pids: vec![gw.0.id()],
        addr,
        get: format!(
            "GET /mcp HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\nmcp-protocol-version: 2025-11-25\r\nmcp-session-id: {session}\r\n\r\n"
        ),
        _procs: vec![gw, up],
    })
}

fn plain(me: &Path, tmp: &Path, name: &'static str) -> Result<Target> {
    let hold_addr = format!("127.0.0.1:{}", free_port()?);
    let (hold, hold_url) = start(Command::new(me).args(["hold", &hold_addr]), "ready")?;
    let (proxy, url) = if name == "nginx" {
        spawn_nginx(tmp, &hold_url)?
    } else {
        let listen = format!("127.0.0.1:{}", free_port()?);
        start(
            Command::new(me).args(["pingora", &listen, &hold_url]),
            "ready",
        )?
    };
    let pids = procs::with_children(proxy.0.id());
    let addr = address(&url)?;
    Ok(Target {
        name,
        pids,
        addr,
        get: format!("GET /mcp HTTP/1.1\r\nhost: {addr}\r\naccept: text/event-stream\r\n\r\n"),
        _procs: vec![proxy, hold],
    })
}

fn address(url: &str) -> Result<SocketAddr> {
    Ok(url
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("address")?
        .parse()?)
}

/// Resident memory growth per connection while `n` connections are open (after a warm-up batch
/// has been opened and closed, so the allocator's first growth is not counted).
async fn per_connection(t: &Target, n: usize, request: Option<&str>) -> Result<f64> {
    drop(open(t.addr, 200, request).await?);
    let before = settle(&t.pids).await;
    let conns = open(t.addr, n, request).await?;
    let after = settle(&t.pids).await;
    drop(conns);
    settle(&t.pids).await;
    Ok((after.saturating_sub(before) * 1024) as f64 / n as f64)
}

fn rss_kb(pids: &[u32]) -> u64 {
    pids.iter().map(|p| procs::rss_kb(*p)).sum()
}

/// Polls resident memory until it has not moved for 300 ms (at most 10 s).
async fn settle(pids: &[u32]) -> u64 {
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut last = rss_kb(pids);
    let mut still = Instant::now();
    while Instant::now() < deadline && still.elapsed() < Duration::from_millis(300) {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let now = rss_kb(pids);
        if now != last {
            last = now;
            still = Instant::now();
        }
    }
    last
}

/// `n` connections, 100 at a time; with a request, each has its answer's head read (200).
async fn open(addr: SocketAddr, n: usize, request: Option<&str>) -> Result<Vec<TcpStream>> {
    let mut all = Vec::with_capacity(n);
    while all.len() < n {
        let batch = (n - all.len()).min(100);
        let mut tasks = Vec::with_capacity(batch);
        for _ in 0..batch {
            let request = request.map(str::to_string);
            tasks.push(tokio::spawn(async move {
                let mut conn = TcpStream::connect(addr).await?;
                if let Some(r) = request {
                    conn.write_all(r.as_bytes()).await?;
                    let mut head = Vec::new();
                    let mut buf = [0u8; 512];
                    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                        let k = conn.read(&mut buf).await?;
                        if k == 0 {
                            bail!("closed before the answer's head");
                        }
                        head.extend_from_slice(&buf[..k]);
                    }
                    if !head.starts_with(b"HTTP/1.1 200") {
                        bail!("{}", String::from_utf8_lossy(&head));
                    }
                }
                anyhow::Ok(conn)
            }));
        }
        for t in tasks {
            all.push(t.await??);
        }
    }
    Ok(all)
}

fn render(n: usize, rows: &[Row]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "# Memory per client connection\n\n`bench/run.sh conns` (`mcp-edge-bench conns {n}`): {n} idle TCP connections (connected, \
         nothing sent), then {n} open `GET` event streams, against each target in one run; resident \
         memory (VmRSS of the process and its workers) before and after, divided by {n}, after a \
         warm-up batch of 200 opened and closed. The proxies' streams go to an upstream that holds \
         them open (so they also hold an upstream connection each); mcp-edge's `GET /mcp` stream is \
         its own. The plain Pingora proxy is built with the same patched `pingora-core` \
         (vendor/PATCHES.md). Where the memory goes: bench/PROFILE.md, \"Memory per connection\".\n"
    );
    let _ = writeln!(
        md,
        "| target | bytes per idle connection | bytes per open GET stream |\n|---|---:|---:|"
    );
    for r in rows {
        let _ = writeln!(md, "| {} | {:.0} | {:.0} |", r.name, r.idle, r.streams);
    }
    md
}
