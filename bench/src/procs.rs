//! CPU time and memory of the processes under test, read from /proc.

/// Clock ticks per second of /proc/PID/stat times (`getconf CLK_TCK`; 100 on Linux).
const TICKS: f64 = 100.0;

/// User + system CPU seconds of `pid` so far.
pub fn cpu_secs(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces) start after the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of stat: 12 and 13 after the state field here.
    (ticks(11) + ticks(12)) / TICKS
}

/// Resident memory of `pid` in KiB.
pub fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// `pid` and its children (nginx's master and workers).
pub fn with_children(pid: u32) -> Vec<u32> {
    // Workers appear shortly after the master; wait for them.
    for _ in 0..100 {
        let children: Vec<u32> =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
                .unwrap_or_default()
                .split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect();
        if !children.is_empty() {
            let mut all = vec![pid];
            all.extend(children);
            return all;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    vec![pid]
}

use anyhow::{Context, Result, bail};
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A child process killed when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Starts a program and waits for the line that starts with `ready`, returning the rest.
pub fn start(cmd: &mut Command, ready: &str) -> Result<(Proc, String)> {
    let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn()?;
    let out = child.stdout.take().context("stdout")?;
    let mut lines = BufReader::new(out).lines();
    let proc_ = Proc(child);
    for line in lines.by_ref() {
        let line = line?;
        if let Some(rest) = line.strip_prefix(ready) {
            std::thread::spawn(move || for _ in lines {});
            return Ok((proc_, rest.trim().to_string()));
        }
    }
    bail!("{cmd:?} ended before it was ready")
}

pub fn spawn_upstream(me: &Path, mode: &str) -> Result<(Proc, String)> {
    let addr = format!("127.0.0.1:{}", free_port()?);
    start(Command::new(me).args(["upstream", &addr, mode]), "ready")
}

pub fn spawn_gateway(
    bin: &Path,
    dir: &Path,
    name: &str,
    extra: &str,
    routes: &[(String, String, &str)],
) -> Result<(Proc, String)> {
    let conf = dir.join(name);
    std::fs::create_dir_all(conf.join("routes"))?;
    let port = free_port()?;
    std::fs::write(
        conf.join("mcp-edge.yaml"),
        format!(
            "listen: 127.0.0.1:{port}\npublic_url: http://127.0.0.1:{port}\nroutes_dir: routes\nadmin: {{ listen: 127.0.0.1:0 }}\n{}{extra}",
            // `extra` may bring its own server section.
            if extra.contains("server:") {
                ""
            } else {
                "server: { threads: 2, grace_period_seconds: 0, graceful_shutdown_timeout_seconds: 1 }\n"
            }
        ),
    )?;
    for (route, url, more) in routes {
        std::fs::write(
            conf.join("routes").join(format!("{route}.yaml")),
            format!("name: {route}\nupstream:\n  url: {url}\n{more}\n"),
        )?;
    }
    let mut cmd = Command::new(bin);
    cmd.args(["run", "--config"])
        .arg(conf.join("mcp-edge.yaml"))
        .env("RUST_LOG", "error");
    let (p, line) = start(&mut cmd, "mcp-edge listening on")?;
    let url = line.split_whitespace().next().context("url")?.to_string();
    Ok((p, url))
}

pub fn spawn_nginx(dir: &Path, upstream: &str) -> Result<(Proc, String)> {
    let port = free_port()?;
    let up = upstream
        .trim_start_matches("http://")
        .trim_end_matches("/mcp");
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off; master_process on; worker_processes 2; user root; pid {d}/nginx.pid; error_log {d}/nginx-error.log;\n\
             worker_rlimit_nofile 20000; events {{ worker_connections 16384; }}\n\
             http {{ access_log off; client_body_temp_path {d}/body; proxy_temp_path {d}/proxy;\n\
               fastcgi_temp_path {d}/fcgi; uwsgi_temp_path {d}/uwsgi; scgi_temp_path {d}/scgi;\n\
               upstream up {{ server {up}; keepalive 256; }}\n\
               server {{ listen 127.0.0.1:{port}; client_max_body_size 16m;\n\
                 location / {{ proxy_pass http://up; proxy_http_version 1.1; proxy_set_header Connection \"\"; proxy_set_header Host 127.0.0.1;\n\
                   proxy_buffering off; proxy_request_buffering off; }} }} }}\n"
        ),
    )?;
    let nginx = ["/usr/sbin/nginx", "/usr/local/sbin/nginx"]
        .into_iter()
        .find(|p| Path::new(p).exists())
        .context("nginx is not installed (apt-get install nginx)")?;
    let child = Command::new(nginx)
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()?;
    let p = Proc(child);
    for _ in 0..200 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok((p, format!("http://127.0.0.1:{port}/mcp")));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    bail!("nginx did not start")
}
