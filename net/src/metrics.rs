//! Process metrics under etcd's names, and the HTTP/1.1 endpoint that serves
//! them (`--listen-metrics-urls`): `/metrics` in Prometheus text format and
//! `/health` as etcd answers it.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use compio::io::{AsyncRead, AsyncWriteExt};

/// Counters shared by every core; updated with relaxed atomics.
#[derive(Debug, Default)]
pub struct Metrics {
    pub wal_fsyncs: AtomicU64,
    pub wal_fsync_nanos: AtomicU64,
    pub wal_entries_synced: AtomicU64,
    pub wal_bytes_written: AtomicU64,
    pub applied_index: AtomicU64,
    pub revision: AtomicU64,
    pub db_size_bytes: AtomicU64,
    pub db_size_in_use_bytes: AtomicU64,
    /// Checkpoints written since start.
    pub checkpoints: AtomicU64,
    /// Bytes written by checkpoints since start.
    pub checkpoint_bytes: AtomicU64,
    /// WAL entries replayed at start (past the checkpoint).
    pub wal_entries_replayed: AtomicU64,
    /// Raft snapshots (checkpoints) this member sent to lagging members.
    pub snapshots_sent: AtomicU64,
    /// Raft snapshots this member installed from a leader.
    pub snapshots_installed: AtomicU64,
    /// 1 while the member knows a leader, else 0.
    pub has_leader: AtomicU64,
    /// 1 while the member leads, else 0.
    pub is_leader: AtomicU64,
    /// Times the member saw a new leader since start.
    pub leader_changes: AtomicU64,
}

pub static METRICS: Metrics = Metrics {
    wal_fsyncs: AtomicU64::new(0),
    wal_fsync_nanos: AtomicU64::new(0),
    wal_entries_synced: AtomicU64::new(0),
    wal_bytes_written: AtomicU64::new(0),
    applied_index: AtomicU64::new(0),
    revision: AtomicU64::new(0),
    db_size_bytes: AtomicU64::new(0),
    db_size_in_use_bytes: AtomicU64::new(0),
    checkpoints: AtomicU64::new(0),
    checkpoint_bytes: AtomicU64::new(0),
    wal_entries_replayed: AtomicU64::new(0),
    snapshots_sent: AtomicU64::new(0),
    snapshots_installed: AtomicU64::new(0),
    has_leader: AtomicU64::new(0),
    is_leader: AtomicU64::new(0),
    leader_changes: AtomicU64::new(0),
};

impl Metrics {
    pub fn record_sync(&self, entries: u64, took: Duration) {
        self.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
        self.wal_fsync_nanos
            .fetch_add(took.as_nanos() as u64, Ordering::Relaxed);
        self.wal_entries_synced
            .fetch_add(entries, Ordering::Relaxed);
    }

    /// Prometheus text exposition.
    pub fn render(&self) -> String {
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut s = String::new();
        let fsyncs = g(&self.wal_fsyncs);
        let secs = g(&self.wal_fsync_nanos) as f64 / 1e9;
        let _ = writeln!(s, "# HELP etcd_disk_wal_fsync_duration_seconds The latency distributions of fsync called by WAL.");
        let _ = writeln!(s, "# TYPE etcd_disk_wal_fsync_duration_seconds histogram");
        let _ = writeln!(
            s,
            "etcd_disk_wal_fsync_duration_seconds_bucket{{le=\"+Inf\"}} {fsyncs}"
        );
        let _ = writeln!(s, "etcd_disk_wal_fsync_duration_seconds_sum {secs}");
        let _ = writeln!(s, "etcd_disk_wal_fsync_duration_seconds_count {fsyncs}");
        let _ = writeln!(
            s,
            "# HELP kvik_wal_entries_synced_total Log entries made durable."
        );
        let _ = writeln!(s, "# TYPE kvik_wal_entries_synced_total counter");
        let _ = writeln!(
            s,
            "kvik_wal_entries_synced_total {}",
            g(&self.wal_entries_synced)
        );
        let _ = writeln!(s, "# TYPE etcd_server_has_leader gauge");
        let _ = writeln!(s, "etcd_server_has_leader {}", g(&self.has_leader));
        let _ = writeln!(s, "# TYPE etcd_server_is_leader gauge");
        let _ = writeln!(s, "etcd_server_is_leader {}", g(&self.is_leader));
        let _ = writeln!(s, "# TYPE etcd_server_leader_changes_seen_total counter");
        let _ = writeln!(
            s,
            "etcd_server_leader_changes_seen_total {}",
            g(&self.leader_changes)
        );
        let _ = writeln!(s, "# TYPE etcd_server_proposals_applied_total gauge");
        let _ = writeln!(
            s,
            "etcd_server_proposals_applied_total {}",
            g(&self.applied_index)
        );
        let _ = writeln!(s, "# TYPE etcd_mvcc_db_total_size_in_use_in_bytes gauge");
        let _ = writeln!(
            s,
            "etcd_mvcc_db_total_size_in_use_in_bytes {}",
            g(&self.db_size_in_use_bytes)
        );
        let _ = writeln!(s, "# TYPE kvik_checkpoints_total counter");
        let _ = writeln!(s, "kvik_checkpoints_total {}", g(&self.checkpoints));
        let _ = writeln!(s, "# TYPE kvik_snapshots_sent_total counter");
        let _ = writeln!(s, "kvik_snapshots_sent_total {}", g(&self.snapshots_sent));
        let _ = writeln!(s, "# TYPE kvik_snapshots_installed_total counter");
        let _ = writeln!(
            s,
            "kvik_snapshots_installed_total {}",
            g(&self.snapshots_installed)
        );
        let _ = writeln!(s, "# TYPE kvik_checkpoint_bytes_total counter");
        let _ = writeln!(
            s,
            "kvik_checkpoint_bytes_total {}",
            g(&self.checkpoint_bytes)
        );
        let _ = writeln!(s, "# TYPE kvik_wal_entries_replayed gauge");
        let _ = writeln!(
            s,
            "kvik_wal_entries_replayed {}",
            g(&self.wal_entries_replayed)
        );
        let _ = writeln!(s, "# TYPE etcd_mvcc_db_total_size_in_bytes gauge");
        let _ = writeln!(
            s,
            "etcd_mvcc_db_total_size_in_bytes {}",
            g(&self.db_size_bytes)
        );
        let _ = writeln!(s, "# TYPE etcd_debugging_mvcc_current_revision gauge");
        let _ = writeln!(
            s,
            "etcd_debugging_mvcc_current_revision {}",
            g(&self.revision)
        );
        s
    }
}

/// Request heads larger than this are refused.
const REQUEST_HEAD_BYTES_MAX: usize = 8192;

/// Serves `/metrics` and `/health` on one listener, one request per
/// connection.
pub async fn serve(listener: compio::net::TcpListener) {
    loop {
        let Ok((mut stream, _)) = listener.accept().await else {
            compio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        compio::runtime::spawn(async move {
            let mut head = Vec::with_capacity(1024);
            loop {
                let buf = Vec::with_capacity(1024);
                let compio::BufResult(res, buf) = stream.read(buf).await;
                match res {
                    Ok(0) | Err(_) => return,
                    Ok(_) => head.extend_from_slice(&buf),
                }
                if head.windows(4).any(|w| w == b"\r\n\r\n") {
                    break;
                }
                if head.len() > REQUEST_HEAD_BYTES_MAX {
                    return;
                }
            }
            let line = head.split(|b| *b == b'\r').next().unwrap_or_default();
            let path = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
            const TEXT: &str = "text/plain; charset=utf-8";
            let has_leader = METRICS.has_leader.load(Ordering::Relaxed) != 0;
            let (status, ctype, body) = match path {
                b"/metrics" => ("200 OK", "text/plain; version=0.0.4", METRICS.render()),
                // etcd's answers: /health is JSON (sent as text/plain), and
                // fails while no leader is known; /readyz and /livez are
                // Kubernetes-style checks, "ok" when they pass.
                b"/health" if !has_leader => (
                    "503 Service Unavailable",
                    TEXT,
                    // etcd ends this body, and only this one, with a newline.
                    "{\"health\":\"false\",\"reason\":\"RAFT NO LEADER\"}\n".to_string(),
                ),
                b"/health" => (
                    "200 OK",
                    TEXT,
                    "{\"health\":\"true\",\"reason\":\"\"}".to_string(),
                ),
                b"/readyz" if !has_leader => (
                    "503 Service Unavailable",
                    TEXT,
                    // etcd's linearizable read check times out without a
                    // leader; kvik answers at once, with etcd's words.
                    "[-]linearizable_read failed: etcdserver: request timed out\n\
                     [+]non_learner ok\n[+]data_corruption ok\n[+]serializable_read ok\n\n"
                        .to_string(),
                ),
                b"/readyz" | b"/livez" => ("200 OK", TEXT, "ok\n".to_string()),
                _ => ("404 Not Found", "text/plain", "404 page not found\n".to_string()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = stream.write_all(resp.into_bytes()).await;
        })
        .detach();
    }
}
