//! JSON lines in a directory: `audit-YYYYMMDD-HHMMSS.jsonl` (`…_001.jsonl` for a second one in the
//! same second; names sort bytewise in writing order), a new file per UTC day and past a
//! size; the chain continues across files and restarts (the newest file's last hash is read at
//! open). `fsync` decides when a batch is on disk. The chain head is published to an anchor
//! file (written whole and renamed into place), kept apart from the trail.

use super::{Chained, Sink, chain};
use crate::config::raw::Fsync;
use crate::metrics::Metrics;
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

pub struct JsonlSink {
    dir: PathBuf,
    max: u64,
    fsync: Fsync,
    file: Option<(File, String, u64)>,
    head: chain::Head,
    anchor: Option<PathBuf>,
    last_sync: Instant,
}

fn utc_stamp() -> (String, String) {
    // "2026-11-22T01:28:11.123Z" → day "20261122", time "012811"
    let t = humantime::format_rfc3339_millis(SystemTime::now()).to_string();
    let day: String = t[..10].chars().filter(|c| c.is_ascii_digit()).collect();
    let time: String = t[11..19].chars().filter(|c| c.is_ascii_digit()).collect();
    (day, time)
}

fn newest(dir: &Path) -> std::io::Result<Option<PathBuf>> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("audit-") && n.ends_with(".jsonl"))
        })
        .collect();
    files.sort();
    Ok(files.pop())
}

impl JsonlSink {
    pub fn open(
        dir: &Path,
        max: u64,
        fsync: Fsync,
        anchor: Option<PathBuf>,
    ) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        let mut head = chain::Head::default();
        if let Some(last) = newest(dir)? {
            let reader = BufReader::new(File::open(&last)?);
            if let Some(line) = reader
                .lines()
                .map_while(Result::ok)
                .filter(|l| !l.trim().is_empty())
                .last()
            {
                head = chain::resume(&line).ok_or_else(|| {
                    std::io::Error::other(format!(
                        "{} does not end with a keyed audit record (move it away to start a new chain)",
                        last.display()
                    ))
                })?;
            }
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            max,
            fsync,
            file: None,
            head,
            anchor,
            last_sync: Instant::now(),
        })
    }

    /// The file to append to, opening a new one per day and past the size limit.
    fn current(&mut self, incoming: u64) -> std::io::Result<&mut File> {
        let (day, time) = utc_stamp();
        let stale = match &self.file {
            Some((_, d, size)) => *d != day || size + incoming > self.max,
            None => true,
        };
        if stale {
            let mut path = self.dir.join(format!("audit-{day}-{time}.jsonl"));
            // A second file in the same second sorts after the first (`_` > `.`, bytewise).
            let mut n = 1;
            while path.exists() {
                path = self.dir.join(format!("audit-{day}-{time}_{n:03}.jsonl"));
                n += 1;
            }
            let file = OpenOptions::new().create(true).append(true).open(&path)?;
            self.file = Some((file, day, 0));
        }
        match &mut self.file {
            Some((f, _, size)) => {
                *size += incoming;
                Ok(f)
            }
            None => Err(std::io::Error::other("no audit file")),
        }
    }

    fn append(&mut self, records: &[Chained<'_>]) -> std::io::Result<()> {
        let mut out = String::with_capacity(records.iter().map(|r| r.line.len() + 1).sum());
        for r in records {
            out.push_str(&r.line);
            out.push('\n');
        }
        let fsync = self.fsync;
        let due = self.last_sync.elapsed() >= Duration::from_secs(1);
        let file = self.current(out.len() as u64)?;
        file.write_all(out.as_bytes())?;
        if fsync == Fsync::Always || (fsync == Fsync::Interval && due) {
            file.sync_data()?;
            self.last_sync = Instant::now();
        }
        Ok(())
    }

    /// Writes the anchor beside its final name and renames it into place, so a reader sees the
    /// previous anchor or the new one, never a half-written one.
    fn write_anchor(&self, path: &Path, anchor: &chain::Anchor) -> std::io::Result<()> {
        let tmp = path.with_extension("tmp");
        let mut file = File::create(&tmp)?;
        file.write_all(anchor.to_json().as_bytes())?;
        file.write_all(b"\n")?;
        if self.fsync != Fsync::Never {
            file.sync_data()?;
        }
        std::fs::rename(&tmp, path)
    }
}

#[async_trait::async_trait]
impl Sink for JsonlSink {
    fn name(&self) -> &'static str {
        "jsonl"
    }

    fn head(&self) -> chain::Head {
        self.head.clone()
    }

    async fn anchor(&mut self, anchor: &chain::Anchor) {
        if let Some(path) = &self.anchor
            && let Err(e) = self.write_anchor(path, anchor)
        {
            log::error!("audit anchor {}: {e}", path.display());
        }
    }

    async fn write(&mut self, records: &[Chained<'_>], metrics: &Metrics) {
        loop {
            match self.append(records) {
                Ok(()) => {
                    metrics
                        .audit_written
                        .with_label_values(&["jsonl"])
                        .inc_by(records.len() as u64);
                    return;
                }
                Err(e) => {
                    metrics
                        .audit_write_errors
                        .with_label_values(&["jsonl"])
                        .inc();
                    log::error!("audit sink jsonl ({}): {e}; retrying", self.dir.display());
                    // A half-written file is abandoned; the chain resumes in a new one.
                    self.file = None;
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}
