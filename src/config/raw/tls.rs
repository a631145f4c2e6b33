//! `tls:` of the gateway file as written: the MCP listener's certificates.

use super::*;

/// `tls:` certificates of the MCP listener, PEM files relative to this file. Each file is read at
/// every (re)load; a changed file reloads it, and handshakes in flight keep the old one.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    /// The default certificate's chain (leaf first) and its key: the one served when SNI names
    /// none of the others.
    pub cert: PathBuf,
    pub key: PathBuf,
    /// More certificates, chosen by SNI against each one's DNS names.
    #[serde(default)]
    pub more: Vec<RawCertificate>,
    /// Offer HTTP/2 by ALPN (HTTP/1.1 stays offered).
    #[serde(default = "yes")]
    pub http2: bool,
}

fn yes() -> bool {
    true
}

/// One certificate chain and its private key, PEM.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCertificate {
    pub cert: PathBuf,
    pub key: PathBuf,
}
