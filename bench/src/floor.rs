//! Baselines that are not MCP-aware: a plain Pingora reverse proxy (the floor mcp-edge is built
//! on: same Pingora, same threads, no parsing), and an upstream that answers any request with an
//! event stream and holds it open (what a proxied `GET` stream costs a proxy).

use anyhow::Context;
use async_trait::async_trait;
use pingora::prelude::*;
use pingora::server::configuration::ServerConf;
use std::net::SocketAddr;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

struct Plain {
    upstream: SocketAddr,
}

#[async_trait]
impl ProxyHttp for Plain {
    type CTX = ();
    fn new_ctx(&self) {}

    async fn upstream_peer(
        &self,
        _session: &mut Session,
        _ctx: &mut (),
    ) -> pingora::Result<Box<HttpPeer>> {
        Ok(Box::new(HttpPeer::new(self.upstream, false, String::new())))
    }
}

/// `pingora LISTEN UPSTREAM`: runs until killed; prints `ready URL` once it accepts.
pub fn pingora_proxy(listen: &str, upstream: &str) -> anyhow::Result<()> {
    let upstream: SocketAddr = upstream
        .trim_start_matches("http://")
        .split('/')
        .next()
        .context("upstream address")?
        .parse()?;
    let conf = ServerConf {
        threads: 2,
        grace_period_seconds: Some(0),
        graceful_shutdown_timeout_seconds: Some(1),
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mut proxy = pingora::proxy::http_proxy_service(&server.configuration, Plain { upstream });
    proxy.add_tcp(listen);
    server.add_service(proxy);
    let addr = listen.to_string();
    std::thread::spawn(move || {
        while std::net::TcpStream::connect(&addr).is_err() {
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        println!("ready http://{addr}/mcp");
    });
    server.run_forever()
}

/// `hold ADDR`: answers every request head with an event stream's head and never ends it.
pub fn hold(addr: &str) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        println!("ready http://{addr}/mcp");
        loop {
            let (mut conn, _) = listener.accept().await?;
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match conn.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = conn
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncache-control: no-cache\r\ntransfer-encoding: chunked\r\n\r\n")
                    .await;
                // Held until the client goes.
                let _ = conn.read(&mut buf).await;
            });
        }
    })
}
