//! An upstream URL made ready for the data path: scheme, authority, path, and the address
//! resolved here, once per load, so no request ever waits on DNS.

use super::super::snapshot::Upstream;
use pingora::upstreams::peer::HttpPeer;
use std::net::ToSocketAddrs;

/// Bytes of write buffer on each upstream connection: a call whose head and body fit leaves in
/// one send instead of two (bigger bodies go out as before).
const UPSTREAM_WRITE_BUFFER: usize = 4096;

thread_local! {
    /// Set by `offline`: upstream hosts are not resolved.
    static OFFLINE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with upstream names left unresolved (every host is taken as 127.0.0.1): for
/// compiling untrusted text in fuzzing without sending DNS queries anywhere.
pub fn offline<T>(f: impl FnOnce() -> T) -> T {
    OFFLINE.set(true);
    let out = f();
    OFFLINE.set(false);
    out
}

pub(in crate::config) fn compile_upstream(raw_url: &str) -> Result<Upstream, String> {
    let url = url::Url::parse(raw_url).map_err(|e| format!("`{raw_url}` is not a URL: {e}"))?;
    let tls = match url.scheme() {
        "http" => false,
        "https" => true,
        other => {
            return Err(format!(
                "scheme `{other}` is not supported; use http or https"
            ));
        }
    };
    let host = url
        .host_str()
        .ok_or_else(|| format!("`{raw_url}` has no host"))?
        .trim_start_matches('[')
        .trim_end_matches(']')
        .to_string();
    let port = url
        .port_or_known_default()
        .ok_or_else(|| format!("`{raw_url}` has no port"))?;
    // Resolved here, once per load, so the data path never waits on DNS.
    let addr = if OFFLINE.get() {
        std::net::SocketAddr::from(([127, 0, 0, 1], port))
    } else {
        (host.as_str(), port)
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve `{host}`: {e}"))?
            .next()
            .ok_or_else(|| format!("`{host}` resolves to no address"))?
    };
    let authority = match url.port() {
        Some(p) => format!("{}:{p}", url.host_str().unwrap_or(&host)),
        None => url.host_str().unwrap_or(&host).to_string(),
    };
    let mut path = url.path().to_string();
    if let Some(q) = url.query() {
        path.push('?');
        path.push_str(q);
    }
    let mut peer = HttpPeer::new(addr, tls, host);
    // A request's head and body leave in one send (vendor/PATCHES.md).
    peer.options.write_buffer = Some(UPSTREAM_WRITE_BUFFER);
    Ok(Upstream {
        peer,
        authority,
        path,
        addr,
        url: raw_url.to_string(),
    })
}
