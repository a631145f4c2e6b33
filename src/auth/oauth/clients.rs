//! Clients of the OAuth proxy: registrations (RFC 7591, sealed into the client id) and Client
//! ID Metadata Documents, fetched only from public addresses (or allow-listed hosts), small,
//! quickly, and cached.

use super::*;

/// How long a fetched client metadata document is used before it is fetched again.
const CIMD_CACHE_SECS: u64 = 300;
/// The most a client metadata document may hold.
const CIMD_MAX_BYTES: usize = 16 * 1024;
/// Client metadata documents cached at most.
pub(super) const CIMD_CACHE_CAP: usize = 10_000;

/// Whether an address is one a metadata fetch may reach unasked: not loopback, private,
/// link-local, multicast, unspecified, shared (100.64/10), documentation or unique-local.
fn public_address(ip: std::net::IpAddr) -> bool {
    use std::net::IpAddr;
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            !(v4.is_loopback()
                || v4.is_private()
                || v4.is_link_local()
                || v4.is_multicast()
                || v4.is_broadcast()
                || v4.is_unspecified()
                || v4.is_documentation()
                || o[0] == 0
                || (o[0] == 100 && (64..128).contains(&o[1])))
        }
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => public_address(IpAddr::V4(v4)),
            None => {
                let seg = v6.segments()[0];
                !(v6.is_loopback()
                    || v6.is_unspecified()
                    || v6.is_multicast()
                    || (seg & 0xfe00) == 0xfc00
                    || (seg & 0xffc0) == 0xfe80)
            }
        },
    }
}

impl OAuthFront {
    /// RFC 7591: a public client whose registration is sealed into its id.
    pub(super) async fn register(&self, s: &mut Session) -> Reply {
        let Ok(body) = crate::http::read_body(s, 64 * 1024).await else {
            return Reply::error(400, "invalid_client_metadata", "unreadable body");
        };
        let Ok(meta) = serde_json::from_slice::<Value>(&body) else {
            return Reply::error(
                400,
                "invalid_client_metadata",
                "the body must be a JSON object",
            );
        };
        let uris: Vec<String> = strings(&meta["redirect_uris"]);
        if uris.is_empty() || uris.len() > 10 || !uris.iter().all(|u| acceptable_redirect(u)) {
            return Reply::error(
                400,
                "invalid_redirect_uri",
                "redirect_uris must be 1-10 https URLs or http loopback URLs, without fragments",
            );
        }
        let name = meta["client_name"].as_str().unwrap_or("an unnamed client");
        let name: String = name.chars().take(100).collect();
        let registration = Registration {
            redirect_uris: uris.clone(),
            name: name.clone(),
        };
        let client_id = format!("{REGISTERED}{}", self.sealer.seal_as(CLIENT, &registration));
        Reply::json(
            201,
            &json!({
                "client_id": client_id,
                "client_id_issued_at": now_secs(),
                "client_name": name,
                "redirect_uris": uris,
                "grant_types": ["authorization_code", "refresh_token"],
                "response_types": ["code"],
                "token_endpoint_auth_method": "none",
            }),
        )
    }

    /// A client: one the gateway registered (sealed id) or a Client ID Metadata Document URL.
    pub(super) async fn client(
        &self,
        oauth: &OAuthProxy,
        client_id: &str,
    ) -> Result<Client, String> {
        if let Some(sealed) = client_id.strip_prefix(REGISTERED) {
            let r: Registration = self
                .sealer
                .open_as(CLIENT, sealed)
                .ok_or("unknown client_id (register again)")?;
            return Ok(Client {
                name: r.name,
                redirect_uris: r.redirect_uris,
            });
        }
        if let Some(known) = self.documents.get(client_id) {
            return Ok(known);
        }
        let client = self.fetch_document(oauth, client_id).await.map_err(|e| {
            // The reason stays in the log: the caller learns nothing about the network.
            log::warn!("client metadata document {client_id:?} refused: {e}");
            "client_id is neither registered here nor a usable client metadata document URL"
                .to_string()
        })?;
        self.documents.insert(
            client_id.to_string(),
            client.clone(),
            now_secs() + CIMD_CACHE_SECS,
        );
        Ok(client)
    }

    /// Fetches a Client ID Metadata Document: https only (plain http only with the development
    /// switch), never from a loopback, private, link-local or multicast address unless the host
    /// is allow-listed (checked on the address resolved, which is the one connected to; no
    /// redirect is followed), at most 16 KiB within 5 s.
    async fn fetch_document(&self, oauth: &OAuthProxy, client_id: &str) -> Result<Client, String> {
        let url = url::Url::parse(client_id).map_err(|_| "not a URL")?;
        let secure =
            url.scheme() == "https" || (oauth.allow_insecure_cimd && url.scheme() == "http");
        if !secure || url.path() == "/" {
            return Err("not an https URL with a path".into());
        }
        let id = client_id.to_string();
        let up = tokio::task::spawn_blocking(move || crate::config::snapshot::upstream_for(&id))
            .await
            .map_err(|e| e.to_string())??;
        let host = url.host_str().unwrap_or_default().trim_matches(['[', ']']);
        let allowed = oauth.cimd_allowed_hosts.iter().any(|h| h == host);
        if !allowed && !public_address(up.addr.ip()) {
            return Err(format!("{} is not a public address", up.addr.ip()));
        }
        let doc = self
            .client
            .get_json(&up, Duration::from_secs(5), CIMD_MAX_BYTES)
            .await?;
        if doc["client_id"].as_str() != Some(client_id) {
            return Err("the document names another client_id".into());
        }
        let redirect_uris: Vec<String> = strings(&doc["redirect_uris"]);
        if redirect_uris.is_empty() {
            return Err("the document has no redirect_uris".into());
        }
        Ok(Client {
            name: doc["client_name"]
                .as_str()
                .unwrap_or(client_id)
                .chars()
                .take(100)
                .collect(),
            redirect_uris,
        })
    }
}
