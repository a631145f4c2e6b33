//! Identity toward upstreams (`identity: minted`): short-lived JWTs signed by the gateway's own
//! Ed25519 key, published as a JWKS at `/.well-known/jwks.json` so upstreams can verify them.

use crate::policy::Caller;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::SigningKey;
use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::time::Duration;

/// PKCS#8 v1 DER prefix of an Ed25519 private key; the 32-byte seed follows.
const PKCS8_PREFIX: [u8; 16] = [
    0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x04, 0x22, 0x04, 0x20,
];

pub struct Minter {
    key: EncodingKey,
    kid: String,
    public: [u8; 32],
}

impl Minter {
    /// A key made now (minted tokens then verify only until the next restart).
    pub fn generate() -> Self {
        Self::from_seed(rand::random())
    }

    /// From a PKCS#8 PEM, as `identity.signing_key_file` holds it.
    pub fn from_pem(text: &str) -> Result<Self, String> {
        let der = pem::parse(text).map_err(|e| format!("signing key: {e}"))?;
        let bytes = der.contents();
        if bytes.len() != 48 || bytes[..16] != PKCS8_PREFIX {
            return Err("signing key: not an Ed25519 PKCS#8 key".into());
        }
        let mut seed = [0u8; 32];
        seed.copy_from_slice(&bytes[16..]);
        Ok(Self::from_seed(seed))
    }

    fn from_seed(seed: [u8; 32]) -> Self {
        let mut der = PKCS8_PREFIX.to_vec();
        der.extend_from_slice(&seed);
        let public = SigningKey::from_bytes(&seed).verifying_key().to_bytes();
        let kid = URL_SAFE_NO_PAD.encode(&Sha256::digest(public)[..12]);
        Self {
            key: EncodingKey::from_ed_der(&der),
            kid,
            public,
        }
    }

    /// The public key set upstreams verify minted tokens with.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{
            "kty": "OKP",
            "crv": "Ed25519",
            "x": URL_SAFE_NO_PAD.encode(self.public),
            "kid": self.kid,
            "alg": "EdDSA",
            "use": "sig",
        }]})
    }

    /// A token telling `audience` (a route) who the caller is.
    pub fn mint(
        &self,
        issuer: &str,
        caller: &Caller,
        audience: &str,
        lifetime: Duration,
    ) -> String {
        let now = crate::mcp::session::now_secs();
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some(self.kid.clone());
        let claims = json!({
            "iss": issuer,
            "sub": caller.subject,
            "aud": audience,
            "groups": caller.groups,
            "scope": caller.scopes.join(" "),
            "tenant": caller.tenant,
            "client_id": caller.client_id,
            "iat": now,
            "exp": now + lifetime.as_secs().max(1),
        });
        encode(&header, &claims, &self.key).unwrap_or_default()
    }
}
