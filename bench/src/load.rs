//! The MCP load generator: virtual clients that each initialize (the handshake a real client
//! does), then call `tools/call` in a closed loop and check every answer; a wrong answer counts
//! as an error, not a success.

use crate::procs;
use anyhow::{Context, Result};
use hdrhistogram::Histogram;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

pub struct Target {
    pub name: &'static str,
    pub url: String,
    /// Tool names are `{prefix}echo`: empty direct, `bench__` through the gateway.
    pub prefix: &'static str,
    pub token: Option<String>,
    /// Processes whose CPU and memory are the target's cost.
    pub pids: Vec<u32>,
}

impl Target {
    pub fn new(
        name: &'static str,
        url: &str,
        prefix: &'static str,
        token: Option<String>,
        pids: Vec<u32>,
    ) -> Self {
        Self {
            name,
            url: url.to_string(),
            prefix,
            token,
            pids,
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// `echo` with a short text.
    Small,
    /// `echo` with a 256 KiB text (it comes back too).
    Large,
    /// `progress` with 3 steps: an SSE answer with 3 notifications before the result.
    Sse,
}

#[derive(Clone, Debug, Default)]
pub struct Run {
    pub rps: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub max_us: u64,
    pub errors: u64,
    pub cpu_us_per_req: f64,
    pub peak_rss_kb: u64,
}

const ACCEPT: &str = "application/json, text/event-stream";

/// One virtual client: its own connection and (when the server issues one) session.
struct Client {
    http: reqwest::Client,
    url: String,
    session: Option<String>,
    token: Option<String>,
}

impl Client {
    async fn connect(url: &str, token: Option<String>) -> Result<Client> {
        let http = reqwest::Client::builder()
            .pool_max_idle_per_host(1)
            .build()?;
        let mut c = Client {
            http,
            url: url.to_string(),
            session: None,
            token,
        };
        let init = json!({"jsonrpc":"2.0","id":0,"method":"initialize","params":{
            "protocolVersion":"2025-11-25","capabilities":{},"clientInfo":{"name":"mcp-edge-bench","version":"1"}}});
        let r = c.post(init.to_string()).await?;
        c.session = r
            .headers()
            .get("mcp-session-id")
            .and_then(|v| v.to_str().ok())
            .map(String::from);
        let v = answer(r).await?;
        v["result"]["protocolVersion"]
            .as_str()
            .context("initialize failed")?;
        c.post(json!({"jsonrpc":"2.0","method":"notifications/initialized"}).to_string())
            .await?;
        Ok(c)
    }

    async fn post(&self, body: String) -> Result<reqwest::Response> {
        let mut b = self
            .http
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", "2025-11-25")
            .body(body);
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        if let Some(t) = &self.token {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        Ok(b.send().await?)
    }
}

/// The JSON-RPC answer: the JSON body, or the last event of an SSE stream (and how many events).
async fn answer_events(r: reqwest::Response) -> Result<(Value, usize)> {
    let sse = r
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = r.text().await?;
    if sse {
        let events: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| !d.is_empty())
            .collect();
        let last = events.last().copied().unwrap_or("null");
        Ok((serde_json::from_str(last)?, events.len()))
    } else {
        Ok((serde_json::from_str(&text)?, 1))
    }
}

async fn answer(r: reqwest::Response) -> Result<Value> {
    Ok(answer_events(r).await?.0)
}

/// One call and whether its answer is the right one.
async fn call(c: &Client, kind: Kind, prefix: &str, id: u64, big: &Arc<String>) -> bool {
    let (tool, args, expect, events) = match kind {
        Kind::Small => {
            let t = format!("hello-{id}");
            ("echo", json!({"text": t}), format!("bench: {t}"), 1)
        }
        Kind::Large => (
            "echo",
            json!({"text": big.as_str()}),
            format!("bench: {big}"),
            1,
        ),
        Kind::Sse => ("progress", json!({"steps": 3}), "done".to_string(), 4),
    };
    let body = json!({"jsonrpc":"2.0","id":id,"method":"tools/call",
        "params":{"name": format!("{prefix}{tool}"), "arguments": args, "_meta": {"progressToken": id}}});
    let Ok(r) = c.post(body.to_string()).await else {
        return false;
    };
    if !r.status().is_success() {
        return false;
    }
    match answer_events(r).await {
        Ok((v, n)) => {
            v["id"] == json!(id)
                && v["result"]["content"][0]["text"] == json!(expect)
                && n == events
        }
        Err(_) => false,
    }
}

/// A closed loop: `concurrency` clients, each sending its next call when the last is answered.
pub async fn closed_loop(
    t: &Target,
    kind: Kind,
    concurrency: usize,
    duration: Duration,
) -> Result<Run> {
    let mut clients = Vec::with_capacity(concurrency);
    for _ in 0..concurrency {
        clients.push(Client::connect(&t.url, t.token.clone()).await?);
    }
    let big = Arc::new("a".repeat(256 * 1024));
    let next_id = Arc::new(AtomicU64::new(1));
    // Warm-up: connections and caches, not measured.
    for c in &clients {
        call(
            c,
            kind,
            t.prefix,
            next_id.fetch_add(1, Ordering::Relaxed),
            &big,
        )
        .await;
    }
    let cpu0: f64 = t.pids.iter().map(|p| procs::cpu_secs(*p)).sum();
    let peak = Arc::new(AtomicU64::new(0));
    let sampling = Arc::new(std::sync::atomic::AtomicBool::new(true));
    let sampler = {
        let (pids, peak, sampling) = (t.pids.clone(), peak.clone(), sampling.clone());
        tokio::spawn(async move {
            while sampling.load(Ordering::Relaxed) {
                let rss: u64 = pids.iter().map(|p| procs::rss_kb(*p)).sum();
                peak.fetch_max(rss, Ordering::Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        })
    };
    let started = Instant::now();
    let deadline = started + duration;
    let tasks: Vec<_> = clients
        .into_iter()
        .map(|c| {
            let (next_id, big, prefix) = (next_id.clone(), big.clone(), t.prefix);
            tokio::spawn(async move {
                let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3).expect("histogram");
                let mut errors = 0u64;
                while Instant::now() < deadline {
                    let id = next_id.fetch_add(1, Ordering::Relaxed);
                    let t0 = Instant::now();
                    let ok = call(&c, kind, prefix, id, &big).await;
                    let _ = h.record(t0.elapsed().as_micros() as u64);
                    if !ok {
                        errors += 1;
                    }
                }
                (h, errors)
            })
        })
        .collect();
    let mut all = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut errors = 0;
    for task in tasks {
        let (h, e) = task.await?;
        all.add(&h)?;
        errors += e;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let cpu1: f64 = t.pids.iter().map(|p| procs::cpu_secs(*p)).sum();
    sampling.store(false, Ordering::Relaxed);
    let _ = sampler.await;
    let requests = all.len();
    Ok(Run {
        rps: requests as f64 / elapsed,
        p50_us: all.value_at_quantile(0.5),
        p90_us: all.value_at_quantile(0.9),
        p99_us: all.value_at_quantile(0.99),
        max_us: all.max(),
        errors,
        cpu_us_per_req: (cpu1 - cpu0) * 1e6 / requests.max(1) as f64,
        peak_rss_kb: peak.load(Ordering::Relaxed),
    })
}

/// `tools/list` latency, one request at a time: (p50 µs, p99 µs, tools in the answer).
pub async fn list_latency(url: &str, n: usize, expect_tools: usize) -> Result<(u64, u64, usize)> {
    let c = Client::connect(url, None).await?;
    let mut h = Histogram::<u64>::new_with_bounds(1, 60_000_000, 3)?;
    let mut tools = 0;
    for i in 0..n + 10 {
        let t0 = Instant::now();
        let v = answer(
            c.post(json!({"jsonrpc":"2.0","id":i,"method":"tools/list"}).to_string())
                .await?,
        )
        .await?;
        let us = t0.elapsed().as_micros() as u64;
        tools = v["result"]["tools"].as_array().map_or(0, Vec::len);
        anyhow::ensure!(
            tools == expect_tools,
            "{url}: {tools} tools, expected {expect_tools}"
        );
        if i >= 10 {
            h.record(us)?;
        }
    }
    Ok((h.value_at_quantile(0.5), h.value_at_quantile(0.99), tools))
}

/// Opens `n` sessions (initialize + initialized) and leaves them idle.
pub async fn open_sessions(url: &str, n: usize) -> Result<()> {
    let done = Arc::new(AtomicU64::new(0));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (url, done) = (url.to_string(), done.clone());
            tokio::spawn(async move {
                while done.fetch_add(1, Ordering::Relaxed) < n as u64 {
                    Client::connect(&url, None).await?;
                }
                anyhow::Ok(())
            })
        })
        .collect();
    for t in tasks {
        t.await??;
    }
    Ok(())
}
