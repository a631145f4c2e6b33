//! Sealed session ids: the `Mcp-Session-Id` the gateway issues is the session itself (negotiated
//! version and upstream session ids), encrypted and authenticated, so any instance can serve any
//! request with no session store.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{ChaCha20Poly1305, Key, Nonce};
use serde::{Deserialize, Serialize};
use std::time::{SystemTime, UNIX_EPOCH};

const SESSION: &[u8] = b"mcp-edge session v1";
const NONCE_LEN: usize = 12;

/// What a client session is.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct SessionState {
    /// Random id, the key of the few things an instance remembers locally about a session.
    #[serde(rename = "i")]
    pub id: u128,
    /// Hash of the subject who opened it: only they may use it.
    #[serde(rename = "o")]
    pub owner: u64,
    /// Protocol version negotiated with the client.
    #[serde(rename = "v")]
    pub version: String,
    /// Unix seconds after which the id is refused.
    #[serde(rename = "e")]
    pub expires: u64,
    /// The client's declared capabilities (JSON, `compact_capabilities`), for opening upstream
    /// sessions on its behalf.
    #[serde(rename = "c")]
    pub capabilities: String,
    /// Upstream sessions sealed into ids issued before they were opened lazily (still honoured
    /// across an upgrade); new ids carry none, so their size does not grow with the routes.
    #[serde(rename = "u", default, skip_serializing_if = "Vec::is_empty")]
    pub upstreams: Vec<UpstreamSession>,
}

/// The gateway's session with one upstream, on behalf of one client session.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct UpstreamSession {
    #[serde(rename = "r")]
    pub route: String,
    /// The upstream's `Mcp-Session-Id`; none for upstreams without sessions.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session: Option<String>,
    /// Protocol version negotiated with the upstream.
    #[serde(rename = "v")]
    pub version: String,
}

impl SessionState {
    pub fn upstream(&self, route: &str) -> Option<&UpstreamSession> {
        self.upstreams.iter().find(|u| u.route == route)
    }
}

/// The most of a client's declared capabilities a session id carries (its size stays bounded).
const MAX_CAPABILITIES: usize = 384;

/// The client capabilities an upstream session is opened with, as carried in the session id:
/// the ones the specification defines (an unknown or experimental one is not relayed), each
/// cut to `{}` (roots keeping `listChanged`) if all of them would be longer than
/// `MAX_CAPABILITIES`, and dropped if even that is.
pub fn compact_capabilities(declared: &serde_json::Value) -> String {
    const KNOWN: [&str; 4] = ["roots", "sampling", "elicitation", "tasks"];
    let mut kept = serde_json::Map::new();
    for key in KNOWN {
        if let Some(v) = declared.get(key).filter(|v| v.is_object()) {
            kept.insert(key.into(), v.clone());
        }
    }
    let full = serde_json::Value::Object(kept.clone()).to_string();
    if full.len() <= MAX_CAPABILITIES {
        return full;
    }
    for (key, v) in kept.iter_mut() {
        let list_changed = v.get("listChanged").cloned();
        *v = serde_json::json!({});
        if let (Some(l), "roots") = (list_changed, key.as_str()) {
            v["listChanged"] = l;
        }
    }
    let cut = serde_json::Value::Object(kept).to_string();
    if cut.len() <= MAX_CAPABILITIES {
        cut
    } else {
        "{}".into()
    }
}

/// Seals with the first key, opens with any (key rotation).
pub struct Sealer {
    ciphers: Vec<ChaCha20Poly1305>,
}

impl Sealer {
    /// `keys` empty: one random key, good for this process only.
    pub fn new(keys: &[[u8; 32]]) -> Self {
        let ciphers = if keys.is_empty() {
            vec![ChaCha20Poly1305::new(&ChaCha20Poly1305::generate_key(
                &mut chacha20poly1305::aead::OsRng,
            ))]
        } else {
            keys.iter()
                .map(|k| ChaCha20Poly1305::new(Key::from_slice(k)))
                .collect()
        };
        Self { ciphers }
    }

    pub fn seal(&self, state: &SessionState) -> String {
        self.seal_as(SESSION, state)
    }

    /// The session behind an id, if the id is one of ours, untampered and unexpired.
    pub fn open(&self, token: &str) -> Option<SessionState> {
        let state: SessionState = self.open_as(SESSION, token)?;
        (state.expires > now_secs()).then_some(state)
    }

    /// Seals any value for one purpose: a value sealed for one purpose never opens as another
    /// (a registered client id is not a session id).
    pub fn seal_as<T: Serialize>(&self, purpose: &[u8], value: &T) -> String {
        let plain = serde_json::to_vec(value).unwrap_or_default();
        let nonce_bytes: [u8; NONCE_LEN] = rand::random();
        let nonce = Nonce::from_slice(&nonce_bytes);
        let mut out = nonce_bytes.to_vec();
        if let Some(cipher) = self.ciphers.first()
            && let Ok(ct) = cipher.encrypt(
                nonce,
                Payload {
                    msg: &plain,
                    aad: purpose,
                },
            )
        {
            out.extend_from_slice(&ct);
        }
        URL_SAFE_NO_PAD.encode(out)
    }

    pub fn open_as<T: for<'de> Deserialize<'de>>(&self, purpose: &[u8], token: &str) -> Option<T> {
        if token.len() > 8192 {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token).ok()?;
        if raw.len() <= NONCE_LEN {
            return None;
        }
        let (nonce, ct) = raw.split_at(NONCE_LEN);
        let plain = self.ciphers.iter().find_map(|c| {
            c.decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: ct,
                    aad: purpose,
                },
            )
            .ok()
        })?;
        serde_json::from_slice(&plain).ok()
    }
}

pub fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state() -> SessionState {
        SessionState {
            id: 42,
            owner: 7,
            version: "2025-11-25".into(),
            expires: now_secs() + 60,
            capabilities: "{}".into(),
            upstreams: vec![UpstreamSession {
                route: "alpha".into(),
                session: Some("abc".into()),
                version: "2025-11-25".into(),
            }],
        }
    }

    #[test]
    fn round_trip_rotation_and_tampering() {
        let old = Sealer::new(&[[1; 32]]);
        let token = old.seal(&state());
        assert!(token.bytes().all(|b| (0x21..=0x7e).contains(&b)));
        assert_eq!(old.open(&token), Some(state()));
        let rotated = Sealer::new(&[[2; 32], [1; 32]]);
        assert_eq!(rotated.open(&token), Some(state()));
        assert_eq!(Sealer::new(&[[2; 32]]).open(&token), None);
        let mut bytes = URL_SAFE_NO_PAD.decode(&token).unwrap();
        let last = bytes.len() - 1;
        bytes[last] ^= 1;
        assert_eq!(old.open(&URL_SAFE_NO_PAD.encode(bytes)), None);
        assert_eq!(old.open("not-a-session"), None);
    }

    #[test]
    fn a_session_id_stays_small_whatever_the_client_declares() {
        let huge = serde_json::json!({
            "roots": {"listChanged": true, "padding": "x".repeat(10_000)},
            "sampling": {"tools": {}},
            "experimental": {"big": "y".repeat(10_000)},
        });
        let caps = compact_capabilities(&huge);
        assert_eq!(caps, r#"{"roots":{"listChanged":true},"sampling":{}}"#);
        let small = serde_json::json!({"elicitation": {"form": {}}, "x-vendor": {}});
        assert_eq!(
            compact_capabilities(&small),
            r#"{"elicitation":{"form":{}}}"#
        );
        let mut st = state();
        st.upstreams.clear();
        st.id = u128::MAX;
        st.owner = u64::MAX;
        st.capabilities = "c".repeat(MAX_CAPABILITIES);
        let token = Sealer::new(&[[1; 32]]).seal(&st);
        assert!(token.len() <= 1024, "{} bytes", token.len());
        assert!(!token.is_empty());
    }

    #[test]
    fn expired_sessions_are_refused() {
        let s = Sealer::new(&[]);
        let mut st = state();
        st.expires = now_secs() - 1;
        assert_eq!(s.open(&s.seal(&st)), None);
    }
}
