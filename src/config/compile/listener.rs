//! The MCP listener's settings: server options and the TLS certificates, read from their files.

use super::Errors;
use crate::config::raw::{RawServer, RawTls};
use crate::config::snapshot::ServerOptions;
use crate::tls::ServerCerts;
use std::path::Path;
use std::sync::Arc;

pub(in crate::config) fn compile_server(raw: RawServer, errs: &mut Errors) -> ServerOptions {
    if raw.threads == 0 {
        errs.push("server.threads", "must be at least 1");
    }
    if raw.read_buffer_bytes > 1024 * 1024 {
        errs.push("server.read_buffer_bytes", "must be at most 1048576");
    }
    ServerOptions {
        threads: raw.threads,
        grace_period_seconds: raw.grace_period_seconds,
        graceful_shutdown_timeout_seconds: raw.graceful_shutdown_timeout_seconds,
        upstream_keepalive_pool_size: raw.upstream_keepalive_pool_size,
        read_buffer_bytes: raw.read_buffer_bytes,
        h2c: raw.h2c,
        upgrade_sock: raw.upgrade_sock,
    }
}

/// The certificates named by `tls:` (paths relative to the configuration file); `https_url`
/// says whether `public_url` is https, which a TLS listener requires.
pub(in crate::config) fn compile_tls(
    raw: Option<RawTls>,
    base: &Path,
    https_url: bool,
    errs: &mut Errors,
) -> Option<Arc<ServerCerts>> {
    let raw = raw?;
    if !https_url {
        errs.push(
            "public_url",
            "must be https:// when the listener serves TLS (`tls:` is set)",
        );
    }
    let pairs: Vec<_> = std::iter::once((raw.cert, raw.key))
        .chain(raw.more.into_iter().map(|c| (c.cert, c.key)))
        .map(|(c, k)| (base.join(c), base.join(k)))
        .collect();
    match ServerCerts::load(&pairs, raw.http2) {
        Ok(certs) => Some(Arc::new(certs)),
        Err(e) => {
            errs.push("tls", e);
            None
        }
    }
}
