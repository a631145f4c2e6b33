//! The audit trail: one record per proxied call (`tools/call`, `resources/read`, `prompts/get`,
//! `completion/complete`), per approval answer, relayed client answer and cancellation, and per
//! refusal of an authenticated request (refusals before authentication are counted in metrics). The data path hands a few references to a bounded queue through a slot it
//! reserved when the request began, so a record is never dropped and nothing waits on disk or
//! network; a writer thread of its own shapes the records (argument shape, keyed HMACs), chains
//! them per sink and writes them. On shutdown or upgrade the queue drains before the process ends.

pub mod chain;
mod jsonl;
mod postgres;
pub mod shape;
pub mod verify;

use crate::config::raw::WhenFull;
use crate::config::snapshot::{AuditSettings, SinkSettings};
use crate::metrics::Metrics;
use crate::policy::Caller;
use bytes::Bytes;
use serde::Serialize;
use serde_json::value::RawValue;
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

/// One audit record as written, borrowing what the data path handed over.
#[derive(Debug, Serialize)]
pub struct Record<'p> {
    /// Chain value of the previous record in the same sink.
    pub prev: String,
    /// Position in the sink's chain (1 for the first record ever).
    pub seq: u64,
    /// Id of the chain key this record is under.
    pub key: &'p str,
    pub time: String,
    pub request_id: Option<&'p str>,
    pub session: Option<String>,
    pub subject: Option<&'p str>,
    pub groups: &'p [String],
    pub tenant: Option<&'p str>,
    pub client_id: Option<&'p str>,
    pub method: &'p str,
    pub route: Option<&'p str>,
    pub target: Option<&'p str>,
    /// Keys and JSON types; each value as a keyed HMAC, never the value (`shape`).
    pub arguments: Option<Box<RawValue>>,
    pub decision: &'static str,
    pub reason: Option<&'p str>,
    pub outcome: &'p str,
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
                runtime.block_on(write_loop(
                    rx,
                    chain,
                    shape::Keyed::new(&key),
                    metrics,
                    depth,
                ))
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
    async fn write(&mut self, records: &[Chained<'_>], metrics: &Metrics);
    /// Publishes the chain head outside the trail. Failures are logged; the next anchor retries.
    async fn anchor(&mut self, anchor: &chain::Anchor);
    async fn housekeeping(&mut self) {}
}

/// A record with its place in one sink's chain.
pub struct Chained<'r> {
    pub record: &'r Record<'r>,
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
    /// Shapes each record once, then chains and writes it in every sink.
    async fn write(&mut self, pending: Vec<Pending>, shape_key: &shape::Keyed, metrics: &Metrics) {
        let mut shaped: Vec<Record> = pending.iter().map(|p| shape(p, shape_key)).collect();
        for s in &mut self.sinks {
            let mut head = s.head.clone();
            let records: Vec<Chained> = shaped
                .iter_mut()
                .map(|record| {
                    let (line, next) = chain::link(record, &head, &self.key);
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
    key: shape::Keyed,
    metrics: Arc<Metrics>,
    depth: mpsc::Sender<Message>,
) {
    let mut batch = Vec::with_capacity(BATCH);
    let mut housekeeping = tokio::time::interval(Duration::from_secs(3600));
    let mut anchoring = tokio::time::interval(chain.interval);
    loop {
        batch.clear();
        let n = tokio::select! {
            n = rx.recv_many(&mut batch, BATCH) => n,
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
        gather(&mut rx, &mut batch).await;
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
            chain.write(pending, &key, &metrics).await;
        }
        if finish && rx.is_empty() {
            chain.anchor_all().await;
            return;
        }
    }
}

/// Most records a batch holds.
const BATCH: usize = 512;

/// How long the writer lets records gather after the first one of a batch. While it waits no
/// waker is registered, so senders do not wake its thread per record (an eventfd write on the
/// data path each time): at 10 000 calls/s that is ~200 wake-ups instead of 10 000, and one
/// write per ~50 records. Records reach the sink at most this much later.
const GATHER: Duration = Duration::from_millis(5);

/// Tops up a batch that is not full (and not the last) with what arrives within `GATHER`.
async fn gather(rx: &mut mpsc::Receiver<Message>, batch: &mut Vec<Message>) {
    if batch.len() >= BATCH || batch.iter().any(|m| matches!(m, Message::Finish)) {
        return;
    }
    tokio::time::sleep(GATHER).await;
    while batch.len() < BATCH {
        match rx.try_recv() {
            Ok(m) => batch.push(m),
            Err(_) => return,
        }
    }
}

/// A pending record made whole: time, caller, argument shape.
fn shape<'p>(p: &'p Pending, key: &shape::Keyed) -> Record<'p> {
    let caller = p.caller.as_deref();
    Record {
        prev: String::new(),
        seq: 0,
        key: "",
        time: humantime::format_rfc3339_millis(p.at).to_string(),
        request_id: p.request_id.as_deref(),
        session: p.session.map(|s| hex::encode(s.to_be_bytes())),
        subject: caller.map(|c| c.subject.as_str()),
        groups: caller.map_or(&[], |c| c.groups.as_slice()),
        tenant: caller.and_then(|c| c.tenant.as_deref()),
        client_id: caller.and_then(|c| c.client_id.as_deref()),
        method: p.method,
        route: p.route.as_deref(),
        target: p.target.as_deref(),
        arguments: shape::arguments_of(p.body.as_deref(), key),
        decision: if p.refused.is_some() {
            "refused"
        } else {
            "allowed"
        },
        reason: p.refused.as_deref(),
        outcome: p.outcome,
        upstream_status: p.upstream_status,
        latency_ms: p.latency.as_secs_f64() * 1000.0,
        bytes_in: p.bytes_in,
        bytes_out: p.bytes_out,
    }
}
