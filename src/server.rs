//! Assembles and runs the Pingora server: the MCP listener with sane server options, and a
//! readiness line on stdout once it accepts connections.

use crate::config::Snapshot;
use crate::gateway::Gateway;
use crate::proxy::McpProxy;
use pingora::server::configuration::ServerConf;
use pingora::server::{RunArgs, Server};
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::Duration;

/// The concrete address to listen on: port 0 becomes a free port chosen now.
pub fn resolve_listen(listen: &str) -> std::io::Result<SocketAddr> {
    let addr: SocketAddr = listen
        .parse()
        .map_err(|_| std::io::Error::other(format!("`{listen}` is not an ip:port address")))?;
    if addr.port() != 0 {
        return Ok(addr);
    }
    TcpListener::bind(addr)?.local_addr()
}

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast). Blocks.
pub fn run(snapshot: Snapshot) -> anyhow::Result<()> {
    let addr = resolve_listen(&snapshot.listen)?;
    let opts = snapshot.server;
    let conf = ServerConf {
        threads: opts.threads,
        grace_period_seconds: Some(opts.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(opts.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: opts.upstream_keepalive_pool_size,
        ..ServerConf::default()
    };
    let mut server = Server::new_with_opt_and_conf(None, conf);
    server.bootstrap();
    let mcp_path = snapshot.mcp_path.clone();
    let routes = snapshot.routes.len();
    let gateway = Arc::new(Gateway::new(snapshot));
    let mut service = pingora::proxy::http_proxy_service_with_name(
        &server.configuration,
        McpProxy { gateway },
        "mcp-edge",
    );
    service.add_tcp(&addr.to_string());
    server.add_service(service);
    // Announce readiness only once the listener accepts: tests and scripts wait for this line.
    std::thread::spawn(move || {
        for _ in 0..600 {
            if TcpStream::connect_timeout(&addr, Duration::from_millis(100)).is_ok() {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "mcp-edge listening on http://{addr}{mcp_path} ({routes} routes)"
                );
                let _ = out.flush();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::error!("the MCP listener on {addr} did not come up");
    });
    server.run(RunArgs::default());
    Ok(())
}
