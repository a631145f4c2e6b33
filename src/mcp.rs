//! The Model Context Protocol as the gateway sees it: envelopes, SSE, sealed sessions, and the
//! protocol revisions it speaks.

pub mod era;
pub mod headers;
pub mod jsonrpc;
pub mod params;
pub mod rewrite;
pub mod session;
pub mod sse;

/// The stateless revision: no initialize, no session, routing headers on every request.
pub const STATELESS_VERSION: &str = "2026-07-28";
/// The newest revision with an `initialize` handshake; what the gateway asks upstreams for.
pub const SESSION_VERSION: &str = "2025-11-25";
/// Revisions the gateway serves, oldest first.
pub const SUPPORTED_VERSIONS: &[&str] = &[
    "2024-11-05",
    "2025-03-26",
    "2025-06-18",
    "2025-11-25",
    STATELESS_VERSION,
];
/// Where a stateless request carries its protocol version.
pub const META_PROTOCOL_VERSION: &str = "io.modelcontextprotocol/protocolVersion";
pub const META_CLIENT_CAPABILITIES: &str = "io.modelcontextprotocol/clientCapabilities";
/// The stateless revision's per-request envelope in `_meta`: never sent inside a 2025 session.
pub const STATELESS_META_KEYS: &[&str] = &[
    META_PROTOCOL_VERSION,
    META_CLIENT_CAPABILITIES,
    "io.modelcontextprotocol/clientInfo",
    "io.modelcontextprotocol/logLevel",
];

pub fn is_supported(version: &str) -> bool {
    SUPPORTED_VERSIONS.contains(&version)
}

/// The version answered to a client's `initialize`: its own if we speak it, else our newest
/// session revision (the client then decides whether to continue).
pub fn negotiate(requested: Option<&str>) -> &'static str {
    SUPPORTED_VERSIONS
        .iter()
        .copied()
        .filter(|v| *v != STATELESS_VERSION)
        .find(|v| Some(*v) == requested)
        .unwrap_or(SESSION_VERSION)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rmcp::model::ProtocolVersion;

    #[test]
    fn versions_track_the_sdk() {
        assert_eq!(
            SESSION_VERSION,
            ProtocolVersion::LATEST_WITH_INITIALIZE.as_str()
        );
        assert_eq!(STATELESS_VERSION, ProtocolVersion::V_2026_07_28.as_str());
        assert_eq!(negotiate(Some("2025-03-26")), "2025-03-26");
        assert_eq!(negotiate(Some("2099-01-01")), SESSION_VERSION);
        assert_eq!(negotiate(Some(STATELESS_VERSION)), SESSION_VERSION);
        assert_eq!(negotiate(None), SESSION_VERSION);
    }
}
