//! The audit trail: one record per proxied call (`tools/call`, `resources/read`, `prompts/get`,
//! `completion/complete`), per approval answer, relayed client answer and cancellation, and per
//! refusal of an authenticated request (refusals before authentication are counted in metrics). The data path hands a few references to a bounded queue through a slot it
//! reserved when the request began, so a record is never dropped and nothing waits on disk or
//! network; a writer thread of its own shapes the records (argument shape, keyed HMACs), chains
//! them per sink and writes them. On shutdown or upgrade the queue drains before the process ends.

pub mod chain;
mod jsonl;
mod postgres;
pub mod verify;

use crate::config::raw::WhenFull;
use crate::config::snapshot::{AuditSettings, SinkSettings};
use crate::metrics::Metrics;
use crate::policy::Caller;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use serde::Serialize;
use serde_json::{Map, Value};
use sha2::Sha256;
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use tokio::sync::mpsc;

/// What the data path hands over: cheap to build, shaped later by the writer.
pub struct Pending {
    pub at: SystemTime,
    pub request_id: Option<String>,
    pub session: Option<u128>,
    pub caller: Option<Arc<Caller>>,
    pub method: &'static str,
    pub route: Option<String>,
    /// The exposed tool or prompt name, or resource URI.
    pub target: Option<String>,
    /// The request body, to read `params.arguments` from off the data path.
    pub body: Option<Bytes>,
    pub refused: Option<String>,
    pub outcome: &'static str,
    pub upstream_status: Option<u16>,
    pub latency: Duration,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// One audit record as written.
#[derive(Debug, Serialize)]
pub struct Record {
    /// Chain value of the previous record in the same sink.
    pub prev: String,
    /// Position in the sink's chain (1 for the first record ever).
    pub seq: u64,
    /// Id of the chain key this record is under.
    pub key: String,
    pub time: String,
    pub request_id: Option<String>,
    pub session: Option<String>,
    pub subject: Option<String>,
    pub groups: Vec<String>,
    pub tenant: Option<String>,
    pub client_id: Option<String>,
    pub method: String,
    pub route: Option<String>,
    pub target: Option<String>,
    /// Keys and JSON types; each value as a keyed HMAC, never the value.
    pub arguments: Value,
    pub decision: &'static str,
    pub reason: Option<String>,
    pub outcome: String,
    pub upstream_status: Option<u16>,
    pub latency_ms: f64,
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// The data path's side of the trail.
pub struct Audit {
    tx: Option<mpsc::Sender<Message>>,
    when_full: WhenFull,
    finished: std::sync::Mutex<Option<std::thread::JoinHandle<()>>>,
}

enum Message {
    Record(Box<Pending>),
    /// Everything before this is written; the writer may stop.
    Finish,
}

/// A reserved place in the queue: whatever happens to the request, its record fits.
pub struct Slot(mpsc::OwnedPermit<Message>);

impl Slot {
    pub fn send(self, p: Pending) {
        self.0.send(Message::Record(Box::new(p)));
    }
}

/// The queue is full and the policy is to refuse.
#[derive(Debug)]
pub struct Full;

/// Opens every sink of the settings, each ready to resume its chain.
fn open_sinks(
    settings: &AuditSettings,
    runtime: &tokio::runtime::Runtime,
) -> Result<Vec<Box<dyn Sink>>, String> {
    let mut sinks: Vec<Box<dyn Sink>> = Vec::new();
    for s in &settings.sinks {
        match s {
            SinkSettings::Jsonl {
                dir,
                max_file_bytes,
                fsync,
                anchor,
            } => {
                if anchor.is_none() {
                    log::warn!(
                        "audit sink jsonl {}: no `anchor` file: the chain head is published only as a metric",
                        dir.display()
                    );
                }
                sinks.push(Box::new(
                    jsonl::JsonlSink::open(dir, *max_file_bytes, *fsync, anchor.clone())
                        .map_err(|e| format!("audit sink jsonl {}: {e}", dir.display()))?,
                ))
            }
            SinkSettings::Postgres {
                url,
                retention_days,
            } => {
                let sink = runtime
                    .block_on(postgres::PgSink::open(url, *retention_days))
                    .map_err(|e| format!("audit sink postgres: {e}"))?;
                sinks.push(Box::new(sink));
            }
        }
    }
    Ok(sinks)
}

impl Audit {
    /// No sinks: nothing is recorded and nothing waits.
    pub fn disabled() -> Self {
        Self {
            tx: None,
            when_full: WhenFull::Block,
            finished: std::sync::Mutex::new(None),
        }
    }

    /// Opens every sink (migrations included) and starts the writer. Fails, and the gateway
    /// does not start, when a sink cannot be opened. A process taking over from another (binary
    /// upgrade) opens its sinks once that one has ended, so the chain goes on without a fork;
    /// records wait in the queue meanwhile, and if a sink then fails to open, calls are refused.
    pub fn start(settings: &AuditSettings, metrics: Arc<Metrics>) -> Result<Self, String> {
        if settings.sinks.is_empty() {
            return Ok(Self::disabled());
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| e.to_string())?;
        let key = settings.hmac_key.clone().unwrap_or_else(|| {
            log::warn!("audit.hmac_key is not set: argument HMACs compare only within this run");
            rand::random::<[u8; 32]>().to_vec()
        });
        let chain_key = chain::ChainKey::new(
            settings
                .chain_key
                .as_deref()
                .ok_or("audit.chain_key is not set")?,
        );
        let later = crate::upgrade::has_predecessor();
        let mut opened = if later {
            None
        } else {
            Some(open_sinks(settings, &runtime)?)
        };
        let when_full = settings.when_full;
        let settings = settings.clone();
        let (tx, rx) = mpsc::channel(settings.queue);
        let depth = tx.clone();
        let writer = std::thread::Builder::new()
            .name("mcp-edge audit".into())
            .spawn(move || {
                let sinks = match opened.take() {
                    Some(sinks) => sinks,
                    None => {
                        crate::upgrade::wait_for_predecessor();
                        match open_sinks(&settings, &runtime) {
                            Ok(sinks) => sinks,
                            Err(e) => {
                                log::error!("{e}; calls are refused until a restart");
                                return;
                            }
                        }
                    }
                };
                let chain = Chain {
                    key: chain_key,
                    every: settings.anchor_records,
                    interval: settings.anchor_interval,
                    sinks: sinks.into_iter().map(ChainedSink::new).collect(),
                };
                runtime.block_on(write_loop(rx, chain, key, metrics, depth))
            })
            .map_err(|e| e.to_string())?;
        Ok(Self {
            tx: Some(tx),
            when_full,
            finished: std::sync::Mutex::new(Some(writer)),
        })
    }

    /// A place for this request's record: waits for room (`block`) or fails (`refuse`).
    /// `None` when auditing is off.
    pub async fn reserve(&self) -> Result<Option<Slot>, Full> {
        let Some(tx) = &self.tx else {
            return Ok(None);
        };
        match self.when_full {
            WhenFull::Block => tx
                .clone()
                .reserve_owned()
                .await
                .map(|p| Some(Slot(p)))
                .map_err(|_| Full),
            WhenFull::Refuse => tx
                .clone()
                .try_reserve_owned()
                .map(|p| Some(Slot(p)))
                .map_err(|_| Full),
        }
    }

    /// Writes everything queued, then stops the writer. Called once the server has stopped.
    pub fn finish(&self) {
        let handle = self
            .finished
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let (Some(tx), Some(handle)) = (&self.tx, handle) {
            let _ = tx.blocking_send(Message::Finish);
            let _ = handle.join();
        }
    }
}

/// Where records go. `write` returns only when the lines are stored (it retries on its own).
#[async_trait::async_trait]
trait Sink: Send {
    /// The label of this sink in metrics.
    fn name(&self) -> &'static str;
    /// Where the stored chain ends (at open).
    fn head(&self) -> chain::Head;
    async fn write(&mut self, records: &[Chained], metrics: &Metrics);
    /// Publishes the chain head outside the trail. Failures are logged; the next anchor retries.
    async fn anchor(&mut self, anchor: &chain::Anchor);
    async fn housekeeping(&mut self) {}
}

/// A record with its place in one sink's chain.
pub struct Chained {
    pub record: Record,
    pub line: String,
    pub hash: String,
}

/// One sink and where its chain and its anchor stand.
struct ChainedSink {
    sink: Box<dyn Sink>,
    head: chain::Head,
    /// Records written since the last anchor.
    unanchored: u64,
}

impl ChainedSink {
    fn new(sink: Box<dyn Sink>) -> Self {
        Self {
            head: sink.head(),
            sink,
            unanchored: 0,
        }
    }
}

/// The writer's state: the chain key, the anchor cadence and the sinks.
struct Chain {
    key: chain::ChainKey,
    every: u64,
    interval: Duration,
    sinks: Vec<ChainedSink>,
}

impl Chain {
    async fn write(&mut self, pending: &[Pending], shape_key: &[u8], metrics: &Metrics) {
        for s in &mut self.sinks {
            let mut head = s.head.clone();
            let records: Vec<Chained> = pending
                .iter()
                .map(|p| {
                    let mut record = shape(p, shape_key);
                    let (line, next) = chain::link(&mut record, &head, &self.key);
                    let hash = next.hash.clone();
                    head = next;
                    Chained { record, line, hash }
                })
                .collect();
            s.sink.write(&records, metrics).await;
            let name = s.sink.name();
            let _ = metrics
                .audit_chain_head
                .remove_label_values(&[name, &s.head.hash]);
            s.head = head;
            metrics
                .audit_chain_head
                .with_label_values(&[name, &s.head.hash])
                .set(s.head.seq as i64);
            s.unanchored += records.len() as u64;
            if s.unanchored >= self.every {
                Self::anchor(s, &self.key).await;
            }
        }
    }

    /// Anchors every sink with records written since its last anchor.
    async fn anchor_all(&mut self) {
        for s in &mut self.sinks {
            if s.unanchored > 0 {
                Self::anchor(s, &self.key).await;
            }
        }
    }

    async fn anchor(s: &mut ChainedSink, key: &chain::ChainKey) {
        let time = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
        s.sink.anchor(&chain::Anchor::new(&s.head, time, key)).await;
        s.unanchored = 0;
    }
}

async fn write_loop(
    mut rx: mpsc::Receiver<Message>,
    mut chain: Chain,
    key: Vec<u8>,
    metrics: Arc<Metrics>,
    depth: mpsc::Sender<Message>,
) {
    let mut batch = Vec::with_capacity(512);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(3600));
    let mut anchoring = tokio::time::interval(chain.interval);
    loop {
        batch.clear();
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, 512) => n,
            _ = anchoring.tick() => {
                chain.anchor_all().await;
                continue;
            }
            _ = housekeeping.tick() => {
                for s in &mut chain.sinks {
                    s.sink.housekeeping().await;
                }
                continue;
            }
        };
        if n == 0 {
            chain.anchor_all().await;
            return;
        }
        let finish = batch.iter().any(|m| matches!(m, Message::Finish));
        let pending: Vec<Pending> = batch
            .drain(..)
            .filter_map(|m| match m {
                Message::Record(p) => Some(*p),
                Message::Finish => None,
            })
            .collect();
        metrics
            .audit_queue_depth
            .set((depth.max_capacity() - depth.capacity()) as i64);
        if !pending.is_empty() {
            chain.write(&pending, &key, &metrics).await;
        }
        if finish && rx.is_empty() {
            chain.anchor_all().await;
            return;
        }
    }
}

/// The arguments of a request body as sent, unparsed (any depth: raw values are skipped
/// without recursion).
pub fn raw_arguments(body: &[u8]) -> Option<&serde_json::value::RawValue> {
    #[derive(serde::Deserialize)]
    struct Body<'a> {
        #[serde(borrow)]
        params: Option<Params<'a>>,
    }
    #[derive(serde::Deserialize)]
    struct Params<'a> {
        #[serde(borrow)]
        arguments: Option<&'a serde_json::value::RawValue>,
    }
    serde_json::from_slice::<Body>(body).ok()?.params?.arguments
}

/// The shape of a call's arguments: absent when none were sent; an explicit marker (never
/// `null`) when they nest deeper than JSON values are read here.
pub fn arguments_of(body: Option<&Bytes>, key: &[u8]) -> Value {
    let Some(raw) = body.and_then(|b| raw_arguments(b)) else {
        return Value::Null;
    };
    match serde_json::from_str::<Value>(raw.get()) {
        Ok(v) => argument_shape(&v, key),
        Err(_) => serde_json::json!({"cut": "nested deeper than 128 levels; not shaped"}),
    }
}

/// A pending record made whole: time, caller, argument shape.
fn shape(p: &Pending, key: &[u8]) -> Record {
    let arguments = arguments_of(p.body.as_ref(), key);
    let caller = p.caller.as_deref();
    Record {
        prev: String::new(),
        seq: 0,
        key: String::new(),
        time: humantime::format_rfc3339_millis(p.at).to_string(),
        request_id: p.request_id.clone(),
        session: p.session.map(|s| format!("{s:032x}")),
        subject: caller.map(|c| c.subject.clone()),
        groups: caller.map(|c| c.groups.clone()).unwrap_or_default(),
        tenant: caller.and_then(|c| c.tenant.clone()),
        client_id: caller.and_then(|c| c.client_id.clone()),
        method: p.method.to_string(),
        route: p.route.clone(),
        target: p.target.clone(),
        arguments,
        decision: if p.refused.is_some() {
            "refused"
        } else {
            "allowed"
        },
        reason: p.refused.clone(),
        outcome: p.outcome.to_string(),
        upstream_status: p.upstream_status,
        latency_ms: p.latency.as_secs_f64() * 1000.0,
        bytes_in: p.bytes_in,
        bytes_out: p.bytes_out,
    }
}

/// How deep argument shapes go; deeper values are a `{type, cut}` marker.
const SHAPE_DEPTH: usize = 32;

/// Keys and JSON types of the arguments; every leaf value becomes `{type, hmac}`, and anything
/// nested deeper than `SHAPE_DEPTH` a `{type, cut}` marker.
pub fn argument_shape(v: &Value, key: &[u8]) -> Value {
    shape_at(v, key, 0)
}

fn shape_at(v: &Value, key: &[u8], depth: usize) -> Value {
    match v {
        Value::Object(_) | Value::Array(_) if depth >= SHAPE_DEPTH => serde_json::json!({
            "type": if v.is_object() { "object" } else { "array" },
            "cut": format!("deeper than {SHAPE_DEPTH} levels"),
        }),
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), shape_at(v, key, depth + 1)))
                .collect::<Map<_, _>>(),
        ),
        Value::Array(items) => {
            Value::Array(items.iter().map(|i| shape_at(i, key, depth + 1)).collect())
        }
        leaf => {
            let kind = match leaf {
                Value::Null => "null",
                Value::Bool(_) => "boolean",
                Value::Number(_) => "number",
                _ => "string",
            };
            let digest = hmac(key, leaf.to_string().as_bytes());
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            serde_json::json!({"type": kind, "hmac": hex})
        }
    }
}

/// HMAC-SHA256 of `bytes` under `key`.
pub(crate) fn hmac(key: &[u8], bytes: &[u8]) -> [u8; 32] {
    // HMAC takes keys of any length: `new_from_slice` cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(key)
        .unwrap_or_else(|_| Hmac::<Sha256>::new(&Default::default()));
    mac.update(bytes);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn shapes_keep_keys_and_types_and_hide_values() {
        let args = json!({"table": "salaries", "limit": 5, "filters": [{"ssn": "123-45-6789"}], "dry": true});
        let shape = argument_shape(&args, b"0123456789abcdef");
        let text = shape.to_string();
        assert!(
            !text.contains("salaries") && !text.contains("123-45-6789"),
            "{text}"
        );
        assert_eq!(shape["limit"]["type"], "number");
        assert_eq!(shape["filters"][0]["ssn"]["type"], "string");
        assert_eq!(shape["dry"]["type"], "boolean");
        assert_eq!(
            shape["table"],
            argument_shape(&json!("salaries"), b"0123456789abcdef"),
            "same value, same HMAC"
        );
        assert_ne!(
            shape["table"],
            argument_shape(&json!("salaries"), b"another key 12345"),
            "keyed"
        );
    }
}
