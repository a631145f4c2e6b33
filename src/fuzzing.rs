//! Fuzz entry points, shared by the cargo-fuzz targets in `fuzz/` and the smoke run in the test
//! suite: each feeds arbitrary bytes to one parser and checks what must hold for any input.
//! A panic is a finding.

use crate::config::compile::offline;
use crate::config::{Source, compile};
use crate::mcp::jsonrpc::{self, Kind, Message};
use crate::mcp::session::{Sealer, SessionState, now_secs};
use crate::mcp::sse;
use std::path::PathBuf;

/// The JSON-RPC envelope: a message that parses re-identifies into valid JSON with the new id,
/// and its params split into an object or are refused.
pub fn envelope(data: &[u8]) {
    let Ok((msg, kind)) = Message::parse(data) else {
        return;
    };
    let _ = msg.method();
    if kind == Kind::Response {
        let id = jsonrpc::to_raw("mcp-edge-1");
        let out = jsonrpc::reid_response(&msg, &id);
        let again = Message::parse(&out).map(|(m, k)| (m.id_text(), k));
        assert_eq!(
            again,
            Ok(("\"mcp-edge-1\"", Kind::Response)),
            "a re-identified response is a response with the new id"
        );
    }
    if let Ok(params) = jsonrpc::split_params(msg.params) {
        let out = jsonrpc::rebuild("m", None, Some(&params));
        let again = Message::parse(&out).map(|(_, k)| k);
        assert_eq!(
            again,
            Ok(Kind::Notification),
            "a rebuilt notification is one"
        );
    }
}

/// The SSE reader: any split of the same bytes yields the same events.
pub fn sse(data: &[u8]) {
    let whole = events(&[data]);
    let cut = data.first().map_or(0, |b| *b as usize % (data.len() + 1));
    let (a, b) = data.split_at(cut);
    assert_eq!(
        whole,
        events(&[a, b]),
        "events do not depend on read boundaries"
    );
    for ev in &whole {
        let mut out = Vec::new();
        sse::write_event(&mut out, ev.data.as_bytes());
        let again = events(&[&out]);
        assert_eq!(again.len(), 1, "a written event reads back as one");
        let lines = ev.data.replace("\r\n", "\n").replace('\r', "\n");
        assert_eq!(
            again[0].data, lines,
            "data reads back, line ends normalized"
        );
    }
}

fn events(chunks: &[&[u8]]) -> Vec<sse::Event> {
    let mut r = sse::Reader::default();
    let mut out = Vec::new();
    for c in chunks {
        r.push(c);
        while let Some(ev) = r.next_event() {
            out.push(ev);
        }
    }
    out
}

/// Sealed values: arbitrary text never opens; what was sealed opens as itself only.
pub fn sealed(data: &[u8]) {
    let sealer = Sealer::new(&[[7u8; 32]]);
    let text = String::from_utf8_lossy(data);
    assert!(
        sealer.open(&text).is_none(),
        "forged session ids never open"
    );
    let state = SessionState {
        id: u128::from(data.len() as u64),
        owner: 1,
        version: text.chars().take(40).collect(),
        expires: now_secs() + 60,
        capabilities: "{}".into(),
        upstreams: Vec::new(),
    };
    let token = sealer.seal(&state);
    assert_eq!(sealer.open(&token).as_ref(), Some(&state));
    assert!(
        sealer
            .open_as::<SessionState>(b"other purpose", &token)
            .is_none()
    );
}

/// Config compilation: any route file compiles or is refused with errors; it never panics.
/// Names are not resolved (no DNS query leaves the machine) and texts naming a file secret are
/// skipped (a fuzzer could name `/dev/zero`).
pub fn config(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if text.contains("file:") {
        return;
    }
    let gateway = Source {
        file: PathBuf::from("/fuzz/mcp-edge.yaml"),
        text: "listen: 127.0.0.1:0\nauth: { mode: none }\n".into(),
    };
    let route = Source {
        file: PathBuf::from("/fuzz/routes/r.yaml"),
        text: text.into_owned(),
    };
    if let Err(errors) = offline(|| compile(&gateway, &[route])) {
        assert!(!errors.0.is_empty(), "a refusal says why");
    }
}

/// The audit record's argument shaper: arguments that were sent are never recorded as `null`,
/// and the shape never nests much deeper than the cut.
pub fn audit_shape(data: &[u8]) {
    use crate::audit::shape;
    let key = shape::Keyed::new(b"fuzz-audit-key-0123");
    let shaped = shape::arguments_of(Some(data), &key);
    let sent = shape::raw_arguments(data).is_some();
    assert_eq!(
        sent,
        shaped.is_some(),
        "arguments are shaped exactly when sent"
    );
    let parsed = shaped.map(|raw| serde_json::from_str::<serde_json::Value>(raw.get()));
    assert!(!matches!(parsed, Some(Err(_))), "a shape is JSON");
    let shaped = parsed.and_then(Result::ok).unwrap_or_default();
    assert!(
        !sent || !shaped.is_null(),
        "sent arguments are never recorded as null"
    );
    fn depth(v: &serde_json::Value) -> usize {
        match v {
            serde_json::Value::Object(m) => 1 + m.values().map(depth).max().unwrap_or(0),
            serde_json::Value::Array(a) => 1 + a.iter().map(depth).max().unwrap_or(0),
            _ => 0,
        }
    }
    assert!(depth(&shaped) <= 34, "shapes are cut at 32 levels");
}
