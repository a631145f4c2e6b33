//! PostgreSQL for fleets: the schema is migrated at open (the gateway does not start if that
//! fails), batches go in one multi-row insert, a lost connection is retried until the records
//! land (they wait in the queue meanwhile), and a retention setting deletes old records hourly.
//! The chain head is published to `mcp_edge_audit_anchor` (one row per sink, the anchor as text:
//! export it beside the trail to verify; retention never deletes it).

use super::{Chained, Sink, chain};
use crate::metrics::Metrics;
use std::time::{Duration, Instant};
use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls};

const MIGRATIONS: &[&str] = &[
    r"
CREATE TABLE mcp_edge_audit (
    seq        bigserial PRIMARY KEY,
    at         timestamptz NOT NULL,
    subject    text,
    route      text,
    target     text,
    method     text NOT NULL,
    decision   text NOT NULL,
    outcome    text NOT NULL,
    prev_hash  text NOT NULL,
    hash       text NOT NULL,
    record     jsonb NOT NULL,
    line       text NOT NULL
);
CREATE INDEX mcp_edge_audit_subject ON mcp_edge_audit (subject, at);
CREATE INDEX mcp_edge_audit_route_target ON mcp_edge_audit (route, target, at);
CREATE INDEX mcp_edge_audit_at ON mcp_edge_audit (at);
",
    r"
CREATE TABLE mcp_edge_audit_anchor (
    sink   text PRIMARY KEY,
    at     timestamptz NOT NULL DEFAULT now(),
    anchor text NOT NULL
);
",
];

const COLUMNS: usize = 11;

pub struct PgSink {
    url: String,
    client: Option<Client>,
    head: chain::Head,
    retention_days: Option<u32>,
    last_error_log: Option<Instant>,
}

async fn connect(url: &str) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = tokio_postgres::connect(url, NoTls).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            log::warn!("audit sink postgres: connection ended: {e}");
        }
    });
    Ok(client)
}

/// A connection error without the connection string (it may hold a password).
fn describe(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_else(|| e.to_string())
}

impl PgSink {
    pub async fn open(url: &str, retention_days: Option<u32>) -> Result<Self, String> {
        let mut client = connect(url)
            .await
            .map_err(|e| format!("cannot connect: {}", describe(&e)))?;
        let tx = client.transaction().await.map_err(|e| describe(&e))?;
        tx.batch_execute("CREATE TABLE IF NOT EXISTS mcp_edge_schema (version int NOT NULL); LOCK TABLE mcp_edge_schema")
            .await
            .map_err(|e| format!("migration failed: {}", describe(&e)))?;
        let version: i32 = tx
            .query_opt("SELECT version FROM mcp_edge_schema", &[])
            .await
            .map_err(|e| describe(&e))?
            .map_or(0, |r| r.get(0));
        for (i, m) in MIGRATIONS.iter().enumerate().skip(version.max(0) as usize) {
            tx.batch_execute(m)
                .await
                .map_err(|e| format!("migration {} failed: {}", i + 1, describe(&e)))?;
        }
        tx.execute("DELETE FROM mcp_edge_schema", &[])
            .await
            .map_err(|e| describe(&e))?;
        tx.execute(
            "INSERT INTO mcp_edge_schema VALUES ($1)",
            &[&(MIGRATIONS.len() as i32)],
        )
        .await
        .map_err(|e| describe(&e))?;
        tx.commit()
            .await
            .map_err(|e| format!("migration failed: {}", describe(&e)))?;
        let last: Option<String> = client
            .query_opt(
                "SELECT line FROM mcp_edge_audit ORDER BY seq DESC LIMIT 1",
                &[],
            )
            .await
            .map_err(|e| describe(&e))?
            .map(|r| r.get(0));
        let head = match last {
            None => chain::Head::default(),
            Some(line) => chain::resume(&line).ok_or(
                "the last record in mcp_edge_audit is not a keyed audit record (move the table away to start a new chain)",
            )?,
        };
        Ok(Self {
            url: url.to_string(),
            client: Some(client),
            head,
            retention_days,
            last_error_log: None,
        })
    }

    async fn connected(&mut self) -> Result<&Client, String> {
        if self.client.as_ref().is_none_or(Client::is_closed) {
            self.client = Some(connect(&self.url).await.map_err(|e| describe(&e))?);
        }
        self.client.as_ref().ok_or_else(|| "no connection".into())
    }

    async fn insert(&mut self, records: &[Chained<'_>]) -> Result<(), String> {
        let client = self.connected().await?;
        let rows: Vec<[Option<String>; COLUMNS]> = records
            .iter()
            .map(|c| {
                let r = &c.record;
                [
                    Some(r.time.clone()),
                    r.subject.map(str::to_string),
                    r.route.map(str::to_string),
                    r.target.map(str::to_string),
                    Some(r.method.to_string()),
                    Some(r.decision.to_string()),
                    Some(r.outcome.to_string()),
                    Some(r.prev.clone()),
                    Some(c.hash.clone()),
                    Some(serde_json::to_string(r).unwrap_or_default()),
                    Some(c.line.clone()),
                ]
            })
            .collect();
        let values: Vec<String> = (0..rows.len())
            .map(|i| {
                let b = i * COLUMNS;
                format!(
                    "(${}::timestamptz, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}, ${}::jsonb, ${})",
                    b + 1,
                    b + 2,
                    b + 3,
                    b + 4,
                    b + 5,
                    b + 6,
                    b + 7,
                    b + 8,
                    b + 9,
                    b + 10,
                    b + 11
                )
            })
            .collect();
        let sql = format!(
            "INSERT INTO mcp_edge_audit (at, subject, route, target, method, decision, outcome, prev_hash, hash, record, line) VALUES {}",
            values.join(", ")
        );
        let types = vec![Type::TEXT; rows.len() * COLUMNS];
        let statement = client
            .prepare_typed(&sql, &types)
            .await
            .map_err(|e| describe(&e))?;
        let params: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> = rows
            .iter()
            .flat_map(|row| {
                row.iter()
                    .map(|v| v as &(dyn tokio_postgres::types::ToSql + Sync))
            })
            .collect();
        client
            .execute(&statement, &params)
            .await
            .map_err(|e| describe(&e))?;
        Ok(())
    }
}

#[async_trait::async_trait]
impl Sink for PgSink {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn head(&self) -> chain::Head {
        self.head.clone()
    }

    async fn anchor(&mut self, anchor: &chain::Anchor) {
        let text = anchor.to_json();
        let stored = match self.connected().await {
            Ok(client) => client
                .execute(
                    "INSERT INTO mcp_edge_audit_anchor (sink, anchor) VALUES ('postgres', $1) \
                     ON CONFLICT (sink) DO UPDATE SET anchor = EXCLUDED.anchor, at = now()",
                    &[&text],
                )
                .await
                .map_err(|e| describe(&e)),
            Err(e) => Err(e),
        };
        if let Err(e) = stored {
            log::error!("audit anchor postgres: {e}");
        }
    }

    async fn write(&mut self, records: &[Chained<'_>], metrics: &Metrics) {
        loop {
            match self.insert(records).await {
                Ok(()) => {
                    metrics
                        .audit_written
                        .with_label_values(&["postgres"])
                        .inc_by(records.len() as u64);
                    return;
                }
                Err(e) => {
                    metrics
                        .audit_write_errors
                        .with_label_values(&["postgres"])
                        .inc();
                    if self
                        .last_error_log
                        .is_none_or(|t| t.elapsed() > Duration::from_secs(10))
                    {
                        log::error!(
                            "audit sink postgres: {e}; records wait in the queue, retrying"
                        );
                        self.last_error_log = Some(Instant::now());
                    }
                    self.client = None;
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
        }
    }

    async fn housekeeping(&mut self) {
        let (Some(days), Some(client)) = (self.retention_days, &self.client) else {
            return;
        };
        let deleted = client
            .execute(
                "DELETE FROM mcp_edge_audit WHERE at < now() - make_interval(days => $1)",
                &[&(days as i32)],
            )
            .await;
        match deleted {
            Ok(n) if n > 0 => {
                log::info!("audit retention: deleted {n} records older than {days} days")
            }
            Ok(_) => {}
            Err(e) => log::warn!("audit retention failed: {}", describe(&e)),
        }
    }
}
