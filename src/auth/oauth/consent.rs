//! The consent step of the OAuth proxy: the page that asks the user about a new client (CSRF
//! token in a hidden field and a `__Host-` cookie) and the form's answer, remembered per browser.

use super::*;

impl OAuthFront {
    pub(super) fn consent_page(&self, client: &Client, req: Request) -> Reply {
        let csrf = URL_SAFE_NO_PAD.encode(rand::random::<[u8; 24]>());
        let sealed = self.sealer.seal_as(
            FORM,
            &Form {
                req: req.clone(),
                csrf: csrf.clone(),
                exp: now_secs() + FLOW_SECS,
            },
        );
        let scopes = req.scope.as_deref().unwrap_or("(none requested)");
        let page = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\"><title>Allow access?</title></head><body>\
             <h1>Allow {name} to use your MCP tools?</h1>\
             <p>The application <strong>{name}</strong> will receive access to this MCP gateway on your behalf.</p>\
             <p>It will be sent back to: <code>{uri}</code></p>\
             <p>Scopes: <code>{scopes}</code></p>\
             <form method=\"post\" action=\"/oauth/consent\">\
             <input type=\"hidden\" name=\"request\" value=\"{sealed}\">\
             <input type=\"hidden\" name=\"csrf\" value=\"{csrf}\">\
             <button type=\"submit\" name=\"decision\" value=\"allow\">Allow</button> \
             <button type=\"submit\" name=\"decision\" value=\"deny\">Deny</button>\
             </form></body></html>",
            name = html_escape(&client.name),
            uri = html_escape(&req.redirect_uri),
            scopes = html_escape(scopes),
        );
        Reply {
            status: 200,
            content_type: "text/html; charset=utf-8",
            body: page.into_bytes(),
            headers: vec![
                ("cache-control", "no-store".into()),
                ("x-frame-options", "DENY".into()),
                (
                    "content-security-policy",
                    "default-src 'none'; form-action 'self'; frame-ancestors 'none'".into(),
                ),
            ],
        }
        .cookie(set_cookie(CSRF_COOKIE, &csrf, FLOW_SECS))
    }

    pub(super) async fn consent(
        &self,
        s: &mut Session,
        snap: &Snapshot,
        oauth: &OAuthProxy,
    ) -> Reply {
        let cookie_csrf = cookie_value(s, CSRF_COOKIE).map(String::from);
        let consents = cookie_value(s, CONSENT_COOKIE)
            .and_then(|c| self.sealer.open_as::<Consents>(CONSENTS, c))
            .filter(|c| c.exp > now_secs())
            .unwrap_or_default();
        let Ok(body) = crate::http::read_body(s, 64 * 1024).await else {
            return Reply::error(400, "invalid_request", "unreadable form");
        };
        let f = form(&body);
        let sealed: Option<Form> = f.get("request").and_then(|r| self.sealer.open_as(FORM, r));
        let Some(sealed) = sealed.filter(|x| x.exp > now_secs()) else {
            return Reply::error(
                400,
                "invalid_request",
                "the consent form expired or was altered; start again",
            );
        };
        // Double submit: the form's token, the cookie's and the sealed one must all agree.
        let csrf_ok =
            f.get("csrf") == Some(&sealed.csrf) && cookie_csrf.as_ref() == Some(&sealed.csrf);
        if !csrf_ok {
            return Reply::error(
                403,
                "access_denied",
                "cross-site request refused (CSRF check failed)",
            );
        }
        let req = sealed.req;
        if f.get("decision").map(String::as_str) != Some("allow") {
            let mut params = vec![
                ("error", "access_denied"),
                ("error_description", "the user denied access"),
            ];
            if let Some(st) = &req.state {
                params.push(("state", st));
            }
            return Reply::redirect(with_query(&req.redirect_uri, &params));
        }
        let mut clients = consents.clients;
        let key = client_key(&req.client_id);
        if !clients.contains(&key) {
            clients.push(key);
        }
        clients.truncate(64);
        let cookie = self.sealer.seal_as(
            CONSENTS,
            &Consents {
                clients,
                exp: now_secs() + CONSENT_SECS,
            },
        );
        self.to_idp(s, snap, oauth, req)
            .cookie(set_cookie(CONSENT_COOKIE, &cookie, CONSENT_SECS))
            .cookie(set_cookie(CSRF_COOKIE, "", 0))
    }
}
