//! TLS material: the MCP listener's certificates (chosen by SNI, read at every load so a changed
//! file is picked up by the reloader without a restart), and the PEM reading the upstream side
//! shares (CA bundles, client certificates).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::sign::CertifiedKey;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The listener's certificates: the first is served when SNI is absent or names none of them.
pub struct ServerCerts {
    list: Vec<Named>,
    /// Offer h2 by ALPN.
    pub http2: bool,
    /// The files read, for the reloader to watch.
    pub files: Vec<PathBuf>,
    /// What the files said: a reload whose certificates are unchanged is no change.
    pub fingerprint: u64,
}

struct Named {
    /// DNS names of the leaf (lowercase; `*.example.com` wildcards kept as written).
    names: Vec<String>,
    key: Arc<CertifiedKey>,
}

impl std::fmt::Debug for ServerCerts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<_> = self.list.iter().map(|n| &n.names).collect();
        f.debug_struct("ServerCerts")
            .field("names", &names)
            .field("http2", &self.http2)
            .finish()
    }
}

impl ServerCerts {
    /// Reads each `(cert, key)` pair: the chain must parse, the key must be the leaf's.
    pub fn load(pairs: &[(PathBuf, PathBuf)], http2: bool) -> Result<Self, String> {
        use std::hash::{Hash, Hasher};
        let provider = rustls::crypto::ring::default_provider();
        let mut fingerprint = std::hash::DefaultHasher::new();
        let mut list = Vec::with_capacity(pairs.len());
        let mut files = Vec::with_capacity(pairs.len() * 2);
        for (cert_file, key_file) in pairs {
            let cert_pem = read(cert_file)?;
            let key_pem = read(key_file)?;
            cert_pem.hash(&mut fingerprint);
            key_pem.hash(&mut fingerprint);
            let chain = chain(cert_file, &cert_pem)?;
            let key = private_key(key_file, &key_pem)?;
            let names = dns_names(cert_file, &chain[0])?;
            let key = CertifiedKey::from_der(chain, key, &provider).map_err(|e| {
                format!(
                    "{} does not go with {}: {e}",
                    key_file.display(),
                    cert_file.display()
                )
            })?;
            list.push(Named {
                names,
                key: Arc::new(key),
            });
            files.extend([cert_file.clone(), key_file.clone()]);
        }
        if list.is_empty() {
            return Err("no certificate".into());
        }
        Ok(Self {
            list,
            http2,
            files,
            fingerprint: fingerprint.finish(),
        })
    }

    /// The certificate for a ClientHello's server name: an exact name first, then a wildcard
    /// covering one label, else the default.
    pub fn choose(&self, sni: Option<&str>) -> Arc<CertifiedKey> {
        let found = sni.and_then(|sni| {
            let sni = sni.trim_end_matches('.');
            let exact = |n: &Named| n.names.iter().any(|name| name.eq_ignore_ascii_case(sni));
            let wildcard = |n: &Named| {
                let parent = sni.split_once('.').map(|(_, p)| p);
                n.names.iter().any(|name| {
                    name.strip_prefix("*.")
                        .zip(parent)
                        .is_some_and(|(w, p)| w.eq_ignore_ascii_case(p))
                })
            };
            self.list
                .iter()
                .find(|n| exact(n))
                .or_else(|| self.list.iter().find(|n| wildcard(n)))
        });
        found.unwrap_or(&self.list[0]).key.clone()
    }
}

fn read(file: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))
}

/// Every certificate in a PEM file, in order.
pub fn chain(file: &Path, pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{} is not PEM: {e}", file.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no certificate", file.display()));
    }
    for cert in &certs {
        x509_parser::parse_x509_certificate(cert).map_err(|e| {
            format!(
                "{} holds a certificate that does not parse: {e}",
                file.display()
            )
        })?;
    }
    Ok(certs)
}

/// The one private key of a PEM file (PKCS#8, PKCS#1 or SEC1).
pub fn private_key(file: &Path, pem: &[u8]) -> Result<PrivateKeyDer<'static>, String> {
    PrivateKeyDer::from_pem_slice(pem)
        .map_err(|e| format!("{} holds no usable private key: {e}", file.display()))
}

/// A PEM file read whole: a CA bundle or a client certificate chain.
pub fn read_chain(file: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    chain(file, &read(file)?)
}

pub fn read_private_key(file: &Path) -> Result<PrivateKeyDer<'static>, String> {
    private_key(file, &read(file)?)
}

/// The leaf's DNS names (subjectAltName); warns when it has expired or soon will.
fn dns_names(file: &Path, leaf: &CertificateDer<'_>) -> Result<Vec<String>, String> {
    use x509_parser::extensions::GeneralName;
    let (_, cert) = x509_parser::parse_x509_certificate(leaf)
        .map_err(|e| format!("{}: {e}", file.display()))?;
    let names: Vec<String> = match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(d) => Some(d.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    };
    let left = cert.validity().time_to_expiration();
    match left {
        None => log::warn!("the certificate in {} has expired", file.display()),
        Some(d) if d.whole_days() < 14 => log::warn!(
            "the certificate in {} expires in {} day(s)",
            file.display(),
            d.whole_days()
        ),
        Some(_) => {}
    }
    Ok(names)
}
