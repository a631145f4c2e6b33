//! Assembles and runs the Pingora server: the MCP listener, the admin listener, the configuration
//! reloader and housekeeping, with sane server options, and a readiness line on stdout once both
//! listeners accept connections.

use crate::admin::Admin;
use crate::config::reload::Reloader;
use crate::config::{Live, Snapshot};
use crate::housekeeping::Housekeeping;
use crate::pipeline::Shared;
use crate::proxy::Edge;
use crate::tls::ServerCerts;
use pingora::apps::HttpServerOptions;
use pingora::apps::http_app::HttpServer;
use pingora::listeners::ListenerConfig;
use pingora::listeners::tls::TlsSettings;
use pingora::protocols::l4::stream::{DEFAULT_L4_WRITE_BUFFER_SIZE, L4BufferSettings};
use pingora::server::configuration::{Opt, ServerConf};
use pingora::server::{RunArgs, Server};
use pingora::services::background::background_service;
use pingora::services::listening::Service;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use std::io::Write;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
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

/// Runs the gateway until SIGTERM (graceful) or SIGINT (fast). Blocks. With `config_path`, the
/// configuration is watched and reloaded live (and on SIGHUP). With `upgrade`, the listening
/// sockets are taken from the running process (see `upgrade.rs`).
pub fn run(snapshot: Snapshot, config_path: Option<PathBuf>, upgrade: bool) -> anyhow::Result<()> {
    let addr = resolve_listen(&snapshot.listen)?;
    let admin_addr = resolve_listen(&snapshot.admin_listen)?;
    if matches!(snapshot.auth, crate::config::snapshot::AuthSettings::None) {
        log::warn!(
            "AUTHENTICATION IS OFF (auth.mode: none): every request to {addr} is served as one anonymous caller{}",
            if addr.ip().is_loopback() {
                ""
            } else {
                ", from any address that can reach it (auth.allow_unauthenticated: true)"
            }
        );
    }
    let opts = snapshot.server.clone();
    let conf = ServerConf {
        threads: opts.threads,
        grace_period_seconds: Some(opts.grace_period_seconds),
        graceful_shutdown_timeout_seconds: Some(opts.graceful_shutdown_timeout_seconds),
        upstream_keepalive_pool_size: opts.upstream_keepalive_pool_size,
        upgrade_sock: opts.upgrade_sock.to_string_lossy().into_owned(),
        ..ServerConf::default()
    };
    let opt = Opt {
        upgrade,
        ..Opt::default()
    };
    let mut server = Server::new_with_opt_and_conf(Some(opt), conf);
    server.bootstrap();
    let mcp_path = snapshot.mcp_path.clone();
    let routes = snapshot.routes.len();
    let tls = snapshot.tls.clone();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let shared = Arc::new(Shared::new(snapshot).map_err(|e| anyhow::anyhow!("{e}"))?);

    let mut options = HttpServerOptions::default();
    options.h2c = opts.h2c;
    let mut mcp = Service::new(
        "mcp-edge".into(),
        Edge {
            shared: shared.clone(),
            options,
        },
    );
    let buffers = L4BufferSettings::new(opts.read_buffer_bytes, DEFAULT_L4_WRITE_BUFFER_SIZE);
    let mut listener = ListenerConfig::tcp(addr.to_string()).l4_buffer(buffers);
    if let Some(first) = tls {
        let mut settings = TlsSettings::with_callbacks(Box::new(NoCallbacks))?;
        if first.http2 {
            settings.enable_h2();
        }
        settings.set_cert_resolver(Arc::new(Resolver {
            live: shared.live.clone(),
            first,
        }));
        listener = listener.tls(settings);
    }
    mcp.add_listener(listener);
    server.add_service(mcp);

    let mut admin = Service::new(
        "mcp-edge admin".into(),
        HttpServer::new_app(Admin {
            live: shared.live.clone(),
            metrics: shared.metrics.clone(),
        }),
    );
    admin.add_tcp(&admin_addr.to_string());
    server.add_service(admin);

    server.add_service(background_service(
        "keys",
        crate::auth::keys::KeyRefresher {
            auth: shared.auth.clone(),
            live: shared.live.clone(),
            client: shared.upstreams.clone(),
        },
    ));
    server.add_service(background_service(
        "idp discovery",
        crate::auth::oauth::discovery::DiscoveryRefresher {
            live: shared.live.clone(),
            client: shared.upstreams.clone(),
            slot: shared.oauth.discovered.clone(),
        },
    ));
    server.add_service(background_service(
        "housekeeping",
        Housekeeping {
            live: shared.live.clone(),
            metrics: shared.metrics.clone(),
        },
    ));
    server.add_service(background_service(
        "binary upgrade",
        crate::upgrade::OnSignal {
            sock: opts.upgrade_sock.clone(),
            draining: shared.draining.clone(),
        },
    ));
    server.add_service(background_service(
        "stream closer",
        crate::housekeeping::StreamCloser {
            stopping: shared.stopping.clone(),
            draining: shared.draining.clone(),
        },
    ));
    if let Some(config_path) = config_path {
        server.add_service(background_service(
            "config reload",
            Reloader {
                live: shared.live.clone(),
                metrics: shared.metrics.clone(),
                config_path,
            },
        ));
    }

    // Announce readiness only once both listeners accept: tests and scripts wait for this line.
    std::thread::spawn(move || {
        let accepting =
            |a: &SocketAddr| TcpStream::connect_timeout(a, Duration::from_millis(100)).is_ok();
        for _ in 0..600 {
            if accepting(&addr) && accepting(&admin_addr) {
                let mut out = std::io::stdout().lock();
                let _ = writeln!(
                    out,
                    "mcp-edge listening on {scheme}://{addr}{mcp_path} ({routes} routes); admin on http://{admin_addr} (pid {})",
                    std::process::id()
                );
                let _ = out.flush();
                crate::upgrade::notify_ready();
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        log::error!("the listeners on {addr} and {admin_addr} did not come up");
    });
    server.run(RunArgs::default());
    // Every request has finished: write what is queued before the process ends.
    shared.audit.finish();
    Ok(())
}

/// Picks the listener's certificate per handshake from the configuration in force, so a reload
/// that read changed certificate files serves them from the next handshake on. A reload that
/// drops `tls:` keeps the certificates the listener started with (the listener stays TLS until a
/// restart).
struct Resolver {
    live: Arc<Live>,
    first: Arc<ServerCerts>,
}

impl std::fmt::Debug for Resolver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Resolver")
    }
}

impl ResolvesServerCert for Resolver {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let snapshot = self.live.snapshot();
        let certs = snapshot.tls.as_ref().unwrap_or(&self.first);
        Some(certs.choose(hello.server_name()))
    }
}

/// The listener's TLS callbacks: none (certificates come from the `Resolver`).
struct NoCallbacks;

#[async_trait::async_trait]
impl pingora::listeners::TlsAccept for NoCallbacks {}
