//! Test harness: real rmcp upstreams on port 0 and the real `mcp-edge` binary started from YAML
//! in a temp dir, torn down when dropped.

#![allow(dead_code, unused_imports)]

pub mod counting;
pub mod idp;
pub mod modern;
pub mod oauth;
pub mod postgres;
pub mod redis;
pub mod tls;
pub mod trail;

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub use mcp_edge::demo::{Upstream, spawn_upstream, spawn_upstream_on};

pub const ACCEPT: &str = "application/json, text/event-stream";

/// A running gateway process.
pub struct Gateway {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub base: String,
    /// `{base}/mcp`
    pub url: String,
    /// `http://127.0.0.1:PORT` of the admin listener.
    pub admin: String,
    /// The gateway's configuration file.
    pub config: PathBuf,
    pub dir: tempfile::TempDir,
    /// The process's stdout lines after the readiness line.
    lines: std::sync::Mutex<mpsc::Receiver<String>>,
}

impl Drop for Gateway {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What to put in the gateway's config besides the routes.
pub struct Setup<'a> {
    /// `(name, upstream url, extra route yaml)`
    pub routes: Vec<(&'a str, String, &'a str)>,
    /// Extra top-level YAML for `conf/mcp-edge.yaml`.
    pub extra: &'a str,
}

impl Gateway {
    pub fn start(setup: Setup<'_>) -> Gateway {
        Self::start_with(setup, |_| {})
    }

    /// Like `start`, with `prepare` writing more files into the config directory first.
    pub fn start_with(setup: Setup<'_>, prepare: impl FnOnce(&std::path::Path)) -> Gateway {
        let dir = tempfile::tempdir().expect("temp dir");
        let conf = dir.path().join("conf");
        let routes = dir.path().join("routes");
        std::fs::create_dir_all(&conf).expect("conf dir");
        std::fs::create_dir_all(&routes).expect("routes dir");
        // The public URL must name the real port (OAuth redirects, metadata), so pick it here.
        let port = free_port();
        let scheme = if setup.extra.contains("tls:") {
            "https"
        } else {
            "http"
        };
        // A test may name the public URL itself (a balancer in front of several instances).
        let public_url = if setup.extra.lines().any(|l| l.starts_with("public_url:")) {
            String::new()
        } else {
            format!("public_url: {scheme}://127.0.0.1:{port}\n")
        };
        let gateway_yaml = format!(
            "listen: 127.0.0.1:{port}\n{public_url}routes_dir: ../routes\nmax_body_bytes: {}\n\
             admin:\n  listen: 127.0.0.1:0\n\
             server:\n  threads: 2\n  grace_period_seconds: 0\n  graceful_shutdown_timeout_seconds: 1\n{}\n",
            BODY_CAP, setup.extra
        );
        std::fs::write(conf.join("mcp-edge.yaml"), gateway_yaml).expect("write conf");
        for (name, url, extra) in &setup.routes {
            // Visible to everyone unless the test says otherwise (routes are hidden by default).
            let visibility = if extra.contains("visibility:") {
                ""
            } else {
                "visibility: [\"*\"]\n"
            };
            let yaml = format!("name: {name}\n{visibility}upstream:\n  url: {url}\n{extra}\n");
            std::fs::write(routes.join(format!("{name}.yaml")), yaml).expect("write route");
        }
        prepare(&conf);
        Self::spawn(dir, conf.join("mcp-edge.yaml"))
    }

    /// Where route files live.
    pub fn routes_dir(&self) -> PathBuf {
        self.dir.path().join("routes")
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM, then waits for the process to end; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        self.child.wait().expect("wait")
    }

    /// Polls stdout (the process and any it started) for a line starting with `prefix`.
    pub async fn wait_line(&self, prefix: &str, secs: u64) -> Option<String> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            let line = self
                .lines
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .try_recv();
            match line {
                Ok(l) if l.starts_with(prefix) => return Some(l),
                Ok(_) => {}
                Err(mpsc::TryRecvError::Empty) => {
                    tokio::time::sleep(Duration::from_millis(20)).await
                }
                Err(mpsc::TryRecvError::Disconnected) => return None,
            }
        }
        None
    }

    /// The exit status once the process has ended (polled for up to `secs`).
    pub async fn wait_exit(&mut self, secs: u64) -> Option<std::process::ExitStatus> {
        let deadline = std::time::Instant::now() + Duration::from_secs(secs);
        while std::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        None
    }

    /// The whole `/metrics` text.
    pub async fn metrics_text(&self) -> String {
        http()
            .get(format!("{}/metrics", self.admin))
            .send()
            .await
            .expect("GET /metrics")
            .text()
            .await
            .expect("metrics text")
    }

    /// The value of one metric series on `/metrics` (0 when absent).
    pub async fn metric(&self, series: &str) -> f64 {
        let text = self.metrics_text().await;
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().expect("number"))
    }

    /// Polls a metric until `done` holds for it (or 15 s pass); its last value.
    pub async fn wait_metric(&self, series: &str, done: impl Fn(f64) -> bool) -> f64 {
        let deadline = std::time::Instant::now() + Duration::from_secs(15);
        loop {
            let v = self.metric(series).await;
            if done(v) || std::time::Instant::now() > deadline {
                return v;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn spawn(dir: tempfile::TempDir, config: PathBuf) -> Gateway {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mcp-edge"))
            .args(["run", "--config"])
            .arg(&config)
            .env("RUST_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start mcp-edge");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let line = loop {
            let line = rx
                .recv_timeout(Duration::from_secs(30))
                .expect("mcp-edge did not report that it listens");
            if line.starts_with("mcp-edge listening on ") {
                break line;
            }
        };
        let url = line
            .trim_start_matches("mcp-edge listening on ")
            .split_whitespace()
            .next()
            .expect("url")
            .to_string();
        let admin = line
            .rsplit("admin on ")
            .next()
            .and_then(|rest| rest.split_whitespace().next())
            .expect("admin url")
            .to_string();
        let base = url.trim_end_matches("/mcp").to_string();
        Gateway {
            child,
            base,
            url,
            admin,
            config,
            dir,
            lines: std::sync::Mutex::new(rx),
        }
    }
}

/// A loopback port free right now.
/// A free loopback port, never one handed out before in this test process: a port is free from
/// when it is picked until the process it is for binds it, and tests running in parallel must
/// not pick the same one meanwhile (two gateways sharing a port would split its connections).
pub fn free_port() -> u16 {
    // Below the kernel's ephemeral range, so no outgoing connection's local port can take it
    // between this pick and the gateway's bind (that race refused connections now and then).
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    let low = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|r| {
            r.split_whitespace()
                .next()
                .and_then(|p| p.parse::<u16>().ok())
        })
        .unwrap_or(32768);
    let (from, to) = (10_000u16, low.max(10_001));
    loop {
        let port = from + rand::random::<u16>() % (to - from);
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
            continue;
        }
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// The body cap every test gateway runs with.
pub const BODY_CAP: usize = 256 * 1024;

/// Two sample upstreams whose tools clash by name (`echo` on both).
pub async fn two_upstreams() -> (Upstream, Upstream) {
    (
        spawn_upstream("alpha").await.expect("alpha"),
        spawn_upstream("beta").await.expect("beta"),
    )
}

/// Two clashing sample upstreams (`alpha`, `beta`) behind a fresh gateway.
pub async fn standard_gateway() -> (Upstream, Upstream, Gateway) {
    let (alpha, beta) = two_upstreams().await;
    let gw = Gateway::start(Setup {
        routes: routes_for(&[("alpha", &alpha), ("beta", &beta)]),
        extra: "",
    });
    (alpha, beta, gw)
}

pub fn routes_for<'a>(ups: &[(&'a str, &Upstream)]) -> Vec<(&'a str, String, &'a str)> {
    ups.iter().map(|(n, u)| (*n, u.url.clone(), "")).collect()
}

/// GETs a JSON document.
pub async fn get_json(url: &str) -> serde_json::Value {
    http()
        .get(url)
        .send()
        .await
        .expect("GET")
        .json()
        .await
        .expect("JSON")
}

pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client")
}

/// The JSON-RPC error code of an answer (0 when it is no error).
pub fn code(v: &serde_json::Value) -> i64 {
    v["error"]["code"].as_i64().unwrap_or(0)
}

/// Polls `check` until it holds or `secs` pass.
pub async fn eventually(secs: u64, mut check: impl FnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if check() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    check()
}

/// A raw MCP session over HTTP, for the protocol edges.
pub struct Raw {
    pub client: reqwest::Client,
    pub url: String,
    pub session: Option<String>,
    pub version: String,
    /// Sent as `Authorization: Bearer …` when set.
    pub bearer: Option<String>,
}

impl Raw {
    pub async fn open(url: &str) -> Raw {
        Raw::open_with(url, None).await
    }

    /// The same session over a fresh connection.
    pub fn clone_session(&self) -> Raw {
        Raw {
            client: http(),
            url: self.url.clone(),
            session: self.session.clone(),
            version: self.version.clone(),
            bearer: self.bearer.clone(),
        }
    }

    pub async fn open_with(url: &str, bearer: Option<&str>) -> Raw {
        Raw::open_over(http(), url, bearer).await
    }

    /// A session over the given client (TLS roots, HTTP versions).
    pub async fn open_over(client: reqwest::Client, url: &str, bearer: Option<&str>) -> Raw {
        Raw::open_declaring(client, url, bearer, "{}").await
    }

    /// A session whose client declared elicitation support (it can be asked for approvals).
    pub async fn open_asking(url: &str) -> Raw {
        Raw::open_declaring(http(), url, None, r#"{"elicitation":{}}"#).await
    }

    /// A session whose client declared `capabilities` (JSON) at initialize.
    pub async fn open_declaring(
        client: reqwest::Client,
        url: &str,
        bearer: Option<&str>,
        capabilities: &str,
    ) -> Raw {
        let mut raw = Raw {
            client,
            url: url.to_string(),
            session: None,
            version: "2025-11-25".into(),
            bearer: bearer.map(String::from),
        };
        let resp = raw
            .post(format!(r#"{{"jsonrpc":"2.0","id":0,"method":"initialize","params":{{"protocolVersion":"2025-11-25","capabilities":{capabilities},"clientInfo":{{"name":"raw","version":"1"}}}}}}"#))
            .await;
        assert_eq!(resp.status(), 200);
        raw.session = resp
            .headers()
            .get("mcp-session-id")
            .map(|v| v.to_str().expect("ascii").to_string());
        assert!(raw.session.is_some(), "initialize must issue a session id");
        let r = raw
            .post(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#)
            .await;
        assert_eq!(r.status(), 202);
        raw
    }

    pub fn request(&self, body: impl Into<reqwest::Body>) -> reqwest::RequestBuilder {
        let mut b = self
            .client
            .post(&self.url)
            .header("content-type", "application/json")
            .header("accept", ACCEPT)
            .header("mcp-protocol-version", &self.version)
            .body(body);
        if let Some(s) = &self.session {
            b = b.header("mcp-session-id", s);
        }
        if let Some(t) = &self.bearer {
            b = b.header("authorization", format!("Bearer {t}"));
        }
        b
    }

    /// Ends the session (DELETE).
    pub async fn delete_session(&self) -> reqwest::Response {
        let session = self.session.as_deref().expect("a session to end");
        self.client
            .delete(&self.url)
            .header("mcp-session-id", session)
            .send()
            .await
            .expect("DELETE")
    }

    pub async fn post(&self, body: impl Into<reqwest::Body>) -> reqwest::Response {
        self.request(body).send().await.expect("POST")
    }

    /// The names in the answer to `tools/list`.
    pub async fn tool_names(&self) -> Vec<String> {
        let (_, v) = self
            .rpc(r#"{"jsonrpc":"2.0","id":"names","method":"tools/list"}"#)
            .await;
        v["result"]["tools"]
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|t| t["name"].as_str().map(String::from))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// POSTs and returns the JSON-RPC message that answers (JSON body or last SSE event).
    pub async fn rpc(&self, body: impl Into<reqwest::Body>) -> (u16, serde_json::Value) {
        let resp = self.post(body).await;
        let status = resp.status().as_u16();
        (status, answer(resp).await)
    }
}

/// The JSON-RPC message in a response: the JSON body, or the last `data:` of an SSE stream.
pub async fn answer(resp: reqwest::Response) -> serde_json::Value {
    let sse = resp
        .headers()
        .get("content-type")
        .is_some_and(|c| c.to_str().unwrap_or("").starts_with("text/event-stream"));
    let text = resp.text().await.expect("body");
    if sse {
        let last = text
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .rfind(|d| !d.is_empty())
            .unwrap_or("null");
        serde_json::from_str(last).expect("SSE data is JSON")
    } else {
        serde_json::from_str(&text).unwrap_or(serde_json::Value::Null)
    }
}

/// Gateway YAML for a JSONL audit trail in `dir` (fsync on every record).
pub fn audit_jsonl(dir: &std::path::Path) -> String {
    format!(
        "audit:\n  hmac_key: audit-test-key-0123456789\n  sinks:\n    - jsonl: {{ dir: {}, fsync: always }}\n",
        dir.display()
    )
}

/// Every line of the audit files under `dir`, oldest file first.
pub fn audit_lines(dir: &std::path::Path) -> Vec<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("audit dir")
        .map(|e| e.expect("entry").path())
        .collect();
    files.sort();
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(f)
                .expect("audit file")
                .lines()
                .map(String::from)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every audit record written under `dir`, oldest file first.
pub fn audit_records(dir: &std::path::Path) -> Vec<serde_json::Value> {
    audit_lines(dir)
        .iter()
        .map(|l| serde_json::from_str(l).expect("record"))
        .collect()
}

/// Reads SSE events from a streaming answer until `want` of them are read (or 10 s pass); what
/// is left of a partly read event stays in `buf` for the next call.
pub async fn sse_events(
    stream: &mut (impl futures::Stream<Item = reqwest::Result<bytes::Bytes>> + Unpin),
    buf: &mut String,
    want: usize,
) -> Vec<serde_json::Value> {
    use futures::StreamExt;
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while out.len() < want {
        while let Some(end) = buf.find("\n\n") {
            let block: String = buf.drain(..end + 2).collect();
            if let Some(data) = block.lines().find_map(|l| l.strip_prefix("data: ")) {
                out.push(serde_json::from_str(data).expect("SSE data is JSON"));
            }
        }
        if out.len() >= want {
            break;
        }
        match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(Ok(chunk))) => buf.push_str(&String::from_utf8_lossy(&chunk)),
            _ => break,
        }
    }
    out
}

/// Where `interop/setup.sh` installed what a test drives (`MCP_EDGE_INTEROP`, else
/// `target/interop`), if every part in `parts` is there. Under CI a missing part fails the test;
/// elsewhere the test says so and skips.
pub fn interop_dir(parts: &[&str]) -> Option<PathBuf> {
    let dir = std::env::var_os("MCP_EDGE_INTEROP")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/interop"));
    let ready = parts.iter().all(|p| dir.join(format!("{p}.ok")).exists());
    if !ready && std::env::var_os("CI").is_some() {
        panic!(
            "{parts:?} missing in {}: run interop/setup.sh",
            dir.display()
        );
    }
    if !ready {
        eprintln!("{parts:?} not installed (run interop/setup.sh); skipped");
    }
    ready.then_some(dir)
}
