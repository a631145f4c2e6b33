//! `upstream.tls` of a route: the CAs an https upstream's certificate must chain to, and a
//! client certificate for upstreams that require mTLS. Files are read at every load, only from
//! the route's own secrets directory, and checked here (Pingora's connector would panic on a key
//! it cannot use).

use super::Errors;
use crate::config::raw::RawUpstreamTls;
use crate::config::security::Scope;
use crate::config::snapshot::Upstream;
use pingora::utils::tls::{CertKey, WrappedX509, parse_x509};
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub(in crate::config) fn apply(
    raw: &RawUpstreamTls,
    upstream: &mut Upstream,
    scope: Scope<'_>,
    own_dir: Option<&Path>,
    errs: &mut Errors,
) {
    if !upstream.url.starts_with("https://") {
        errs.push("upstream.tls", "needs an https:// upstream.url");
        return;
    }
    let file = |p: &PathBuf, at: &str, errs: &mut Errors| -> Option<PathBuf> {
        let full = match own_dir {
            Some(dir) if p.is_relative() => dir.join(p),
            _ => p.clone(),
        };
        match scope.refuses("file", &full.to_string_lossy()) {
            Some(why) => {
                errs.push(at, why);
                None
            }
            None => Some(full),
        }
    };
    if let Some(ca) = raw
        .ca
        .as_ref()
        .and_then(|p| file(p, "upstream.tls.ca", errs))
    {
        match crate::tls::read_chain(&ca) {
            Ok(certs) => {
                let list: Vec<WrappedX509> = certs
                    .iter()
                    .map(|c| WrappedX509::new(c.to_vec(), parse_x509))
                    .collect();
                upstream.peer.options.ca = Some(Arc::from(list.into_boxed_slice()));
            }
            Err(e) => errs.push("upstream.tls.ca", e),
        }
    }
    match (&raw.cert, &raw.key) {
        (None, None) => {}
        (Some(cert), Some(key)) => {
            let (Some(cert), Some(key)) = (
                file(cert, "upstream.tls.cert", errs),
                file(key, "upstream.tls.key", errs),
            ) else {
                return;
            };
            match client_cert(&cert, &key) {
                Ok(ck) => upstream.peer.client_cert_key = Some(Arc::new(ck)),
                Err(e) => errs.push("upstream.tls", e),
            }
        }
        _ => errs.push("upstream.tls", "`cert` and `key` go together"),
    }
}

/// The chain and key, checked to belong together.
fn client_cert(cert: &Path, key: &Path) -> Result<CertKey, String> {
    let chain = crate::tls::read_chain(cert)?;
    let private = crate::tls::read_private_key(key)?;
    let der = private.secret_der().to_vec();
    let provider = rustls::crypto::ring::default_provider();
    rustls::sign::CertifiedKey::from_der(chain.clone(), private, &provider)
        .map_err(|e| format!("{} does not go with {}: {e}", key.display(), cert.display()))?;
    Ok(CertKey::new(
        chain.iter().map(|c| c.to_vec()).collect(),
        der,
    ))
}
