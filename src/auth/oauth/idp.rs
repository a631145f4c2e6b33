//! The IdP side of the OAuth proxy: the callback from the IdP (single-use state, a code of our
//! own for the client) and the token endpoint (code and refresh exchanges forwarded with the
//! gateway's client credentials and `resource` handled as configured).

use super::*;
use crate::upstream::MAX_DOCUMENT;

impl OAuthFront {
    /// The IdP comes back: check the single-use state, hand the client a code of ours.
    pub(super) async fn callback(&self, s: &Session, snap: &Snapshot) -> Reply {
        let q = form(s.req_header().uri.query().unwrap_or("").as_bytes());
        let flight: Option<Flight> = q.get("state").and_then(|st| self.sealer.open_as(STATE, st));
        let Some(flight) = flight.filter(|f| f.exp > now_secs()) else {
            return Reply::error(
                400,
                "invalid_request",
                "unknown or expired login state; start again",
            );
        };
        // The login must come back to the browser that consented: a link to the IdP sent to
        // someone else (a confused deputy) ends here, before its state is spent.
        if cookie_value(s, FLOW_COOKIE) != Some(flight.browser.as_str()) {
            return Reply::error(
                400,
                "invalid_request",
                "this login was started in another browser; start again from your application",
            );
        }
        if !self.use_once(flight.nonce, flight.exp).await {
            return Reply::error(400, "invalid_request", "this login state was already used");
        }
        let req = flight.req;
        let mut params: Vec<(&str, String)> = Vec::new();
        match (q.get("code"), q.get("error")) {
            (Some(code), _) => {
                let ours = self.sealer.seal_as(
                    CODE,
                    &Code {
                        idp: code.clone(),
                        client_id: req.client_id.clone(),
                        redirect_uri: req.redirect_uri.clone(),
                        exp: now_secs() + CODE_SECS,
                    },
                );
                params.push(("code", ours));
            }
            (None, error) => {
                params.push((
                    "error",
                    error.cloned().unwrap_or_else(|| "server_error".into()),
                ));
                if let Some(d) = q.get("error_description") {
                    params.push(("error_description", d.clone()));
                }
            }
        }
        if let Some(st) = &req.state {
            params.push(("state", st.clone()));
        }
        // RFC 9207: name the issuer, so clients can tell authorization servers apart.
        params.push(("iss", snap.public_base()));
        let params: Vec<(&str, &str)> = params.iter().map(|(k, v)| (*k, v.as_str())).collect();
        Reply::redirect(with_query(&req.redirect_uri, &params)).cookie(set_cookie(
            FLOW_COOKIE,
            "",
            0,
        ))
    }

    /// Exchanges (or refreshes) at the IdP with the gateway's credentials; the IdP's answer goes
    /// back unchanged on success.
    pub(super) async fn token(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        oauth: &OAuthProxy,
    ) -> Reply {
        let Ok(body) = crate::http::read_body(s, 64 * 1024).await else {
            return Reply::error(400, "invalid_request", "unreadable form");
        };
        let Some(idp) = discovery::current(&self.discovered, oauth) else {
            return idp_unknown();
        };
        let f = form(&body);
        let callback = format!("{}/oauth/callback", snap.public_base());
        let mut out: Vec<(String, String)> = Vec::new();
        let client_id;
        match f.get("grant_type").map(String::as_str) {
            Some("authorization_code") => {
                let code: Option<Code> = f.get("code").and_then(|c| self.sealer.open_as(CODE, c));
                let Some(code) = code.filter(|c| c.exp > now_secs()) else {
                    return Reply::error(400, "invalid_grant", "unknown or expired code");
                };
                if f.get("client_id") != Some(&code.client_id)
                    || f.get("redirect_uri") != Some(&code.redirect_uri)
                {
                    return Reply::error(
                        400,
                        "invalid_grant",
                        "client_id or redirect_uri does not match the authorization request",
                    );
                }
                let Some(verifier) = f.get("code_verifier") else {
                    return Reply::error(
                        400,
                        "invalid_request",
                        "code_verifier is required (PKCE)",
                    );
                };
                client_id = Some(code.client_id);
                out.push(("grant_type".into(), "authorization_code".into()));
                out.push(("code".into(), code.idp));
                out.push(("redirect_uri".into(), callback));
                out.push(("code_verifier".into(), verifier.clone()));
            }
            Some("refresh_token") => {
                let Some(refresh) = f.get("refresh_token") else {
                    return Reply::error(400, "invalid_request", "refresh_token is required");
                };
                // A refresh token works only for the client it was issued to.
                let bound: Option<Refresh> = self.sealer.open_as(REFRESH, refresh);
                let Some(bound) = bound.filter(|b| f.get("client_id") == Some(&b.client_id)) else {
                    return Reply::error(
                        400,
                        "invalid_grant",
                        "unknown refresh token, or issued to another client",
                    );
                };
                client_id = Some(bound.client_id);
                out.push(("grant_type".into(), "refresh_token".into()));
                out.push(("refresh_token".into(), bound.idp));
                let scope = idp_scope(
                    oauth,
                    f.get("scope").map(String::as_str),
                    f.contains_key("resource"),
                );
                if !scope.is_empty() {
                    out.push(("scope".into(), scope));
                }
            }
            _ => {
                return Reply::error(
                    400,
                    "unsupported_grant_type",
                    "authorization_code or refresh_token",
                );
            }
        }
        if let Some(param) = resource_param(oauth, f.get("resource").map(String::as_str)) {
            out.push(param);
        }
        let mut basic = None;
        if oauth.basic_auth {
            let secret = oauth.client_secret.as_deref().unwrap_or_default();
            basic = Some(format!(
                "Basic {}",
                STANDARD.encode(format!("{}:{secret}", oauth.client_id))
            ));
        } else {
            out.push(("client_id".into(), oauth.client_id.clone()));
            if let Some(secret) = &oauth.client_secret {
                out.push(("client_secret".into(), secret.clone()));
            }
        }
        let body: String = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(out.iter())
            .finish();
        match self.post_form(&idp.token, body, basic.as_deref()).await {
            Ok((status, answer)) if (200..300).contains(&status) => Reply {
                status,
                content_type: "application/json",
                body: self.bind_refresh(answer, client_id.unwrap_or_default()),
                headers: vec![
                    ("cache-control", "no-store".into()),
                    ("pragma", "no-cache".into()),
                ],
            },
            Ok((status, answer)) => match serde_json::from_slice::<Value>(&answer) {
                Ok(v) if v.get("error").is_some() => Reply::json(400, &v),
                _ => Reply::error(
                    502,
                    "server_error",
                    &format!("the identity provider answered HTTP {status}"),
                ),
            },
            Err(e) => {
                log::warn!(
                    "token exchange with the IdP ({}) failed: {e}",
                    oauth.profile
                );
                Reply::error(
                    502,
                    "server_error",
                    "the identity provider could not be reached",
                )
            }
        }
    }

    /// The IdP's token answer with its refresh token sealed to `client_id`.
    fn bind_refresh(&self, answer: Vec<u8>, client_id: String) -> Vec<u8> {
        let Ok(mut v) = serde_json::from_slice::<Value>(&answer) else {
            return answer;
        };
        let Some(idp) = v.get("refresh_token").and_then(Value::as_str) else {
            return answer;
        };
        let bound = Refresh {
            idp: idp.to_string(),
            client_id,
        };
        v["refresh_token"] = Value::String(self.sealer.seal_as(REFRESH, &bound));
        serde_json::to_vec(&v).unwrap_or(answer)
    }

    async fn post_form(
        &self,
        up: &crate::config::snapshot::Upstream,
        body: String,
        authorization: Option<&str>,
    ) -> Result<(u16, Vec<u8>), String> {
        let mut out = Outgoing::post(Bytes::from(body));
        out.copied = vec![
            ("content-type", "application/x-www-form-urlencoded"),
            ("accept", "application/json"),
        ];
        if let Some(a) = authorization {
            out.copied.push(("authorization", a));
        }
        self.client
            .fetch(up, &out, std::time::Duration::from_secs(15), MAX_DOCUMENT)
            .await
    }

    /// Records a login state as used; false if it already was (replay), here or, with a
    /// sessions store, on any instance.
    async fn use_once(&self, nonce: u64, exp: u64) -> bool {
        crate::store::use_once(
            &self.used_states,
            self.store.as_deref(),
            "oauth-state",
            u128::from(nonce),
            exp,
        )
        .await
    }
}

/// The scope sent to the IdP: the client's, mapped, plus the profile's, plus the resource's
/// scope form when `resource: scope`.
pub(super) fn idp_scope(oauth: &OAuthProxy, client: Option<&str>, has_resource: bool) -> String {
    let mut scopes: Vec<String> = client
        .unwrap_or_default()
        .split_whitespace()
        .map(|s| {
            oauth
                .scope_map
                .get(s)
                .cloned()
                .unwrap_or_else(|| s.to_string())
        })
        .collect();
    for extra in &oauth.extra_scopes {
        if !scopes.contains(extra) {
            scopes.push(extra.clone());
        }
    }
    if has_resource
        && oauth.resource == ResourceMode::Scope
        && let Some(v) = &oauth.resource_value
        && !scopes.contains(v)
    {
        scopes.push(v.clone());
    }
    scopes.join(" ")
}

/// What becomes of the client's `resource` on the way to the IdP.
pub(super) fn resource_param(
    oauth: &OAuthProxy,
    resource: Option<&str>,
) -> Option<(String, String)> {
    let resource = resource?;
    match oauth.resource {
        ResourceMode::Pass => Some(("resource".into(), resource.to_string())),
        ResourceMode::Strip | ResourceMode::Scope => None,
        ResourceMode::Audience => oauth
            .resource_value
            .clone()
            .map(|v| (oauth.audience_parameter.clone(), v)),
    }
}
