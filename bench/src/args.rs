//! Command-line parsing (hand-rolled: `--flag value` or `--flag=value`).

use std::path::PathBuf;
use std::time::Duration;

pub const USAGE: &str = "\
kvik-bench: runs kvik and etcd side by side (interleaved, same flags and
filesystem) under one workload and reports latency, throughput, writes per
fsync and server CPU per request.

USAGE:
    kvik-bench [OPTIONS]

WORKLOAD:
    --workload put|range|mixed|watch|lease-grant|lease-keepalive|put-lease
                                what the clients send (default: put); watch: --watchers
                                streams watch the key prefix while the clients put, and
                                latency is put-to-event
    --workload restart|compact-pause|big
                                the revision store's benchmarks (see below)
    --watchers N                watch streams for --workload watch (default: 100)
    --keys N                    key space size; range/mixed preload all N keys (default: 10000)
    --key-size N                key length in bytes (default: 8)
    --val-size N                value length in bytes (default: 256)
    --serializable              range requests are serializable (default: linearizable)
    --read-ratio F              mixed: fraction of requests that are ranges (default: 0.5)
    --conns N                   HTTP/2 connections (default: 1)
    --clients N                 concurrent outstanding requests, spread over the connections (default: 1)
    --total N                   requests per run (default: 10000 unless --duration is given)
    --duration D                run length per run, e.g. 10s, 500ms, 1m (stops at whichever of
                                --total/--duration comes first when both are given)
    --runs N                    interleaved runs per server (default: 3)
    --timeout D                 per-request deadline; a request past it counts as an error
                                (and fails the preload) instead of hanging the run (default: 30s)

REVISION STORE (--workload restart|compact-pause|big; --val-size defaults to 128KiB):
    restart: loads --data-bytes (--passes times over the same keys), stops the
    server with SIGKILL, times the restart until Status and a linearizable
    Range answer, checks the data, then the same after a SIGTERM stop.
    compact-pause: loads --data-bytes, then puts at --rate for --duration
    (default 60s) over the same keys, compacting every --compact-every and
    calling Defragment once at --defrag-at; latency runs from each put's
    scheduled send time, so a pause counts in full.
    big (kvik only): loads --data-bytes in --rounds revisions, checks key
    counts and values at every round's revision, restarts after SIGKILL and
    checks again; reports the server's memory from /proc/<pid>/status.
    --data-bytes SIZE           live data, e.g. 2GiB, 512MiB (default: restart 2GiB,
                                compact-pause 1GiB, big 9GiB)
    --passes N                  restart: times every key is written before the kill (default: 1)
    --rounds N                  big: revisions the data is written in (default: 3)
    --rate N                    compact-pause: puts per second (default: 200)
    --compact-every D           compact-pause: compaction period (default: 5s)
    --defrag-at D               compact-pause: when Defragment is called (default: half of --duration)
    --defrag-window D           compact-pause: the defrag window runs from the call until
                                this long after its answer (default: 5s)
    --settle D                  compact-pause: idle time after the writes before the final
                                sizes are taken (default: 10s)
    --cold                      restart, big: evict the data files from the page cache
                                before each restart
    --spot-checks N             values compared byte for byte per check (default: 32)

SERVERS:
    --server-flag FLAG          extra flag for both servers, repeatable; the revision store
                                workloads add --quota-backend-bytes=17179869184 (etcd's
                                default quota, 2 GiB, is below their data) unless given
    --dir DIR                   parent of the per-run data dirs (default: system temp dir)
    --kvik-bin PATH             kvik binary (default: `kvik` next to this executable)
    --etcd-bin PATH             etcd binary (default: the vendored etcd 3.7.2)
    --only kvik|etcd            run one side only
    --endpoint URL              run against an already running server; starts none
    --members N                 start N members of each server on loopback, bootstrapped
                                with etcd's --initial-cluster flags, and wait until every
                                member agrees on a leader (default: 1); fsyncs and server
                                CPU are summed over the members
    --target all|leader         with --members 2 or more: spread the connections over every
                                member (connection i to member i mod N; followers forward
                                writes), or open them all to the leader (default: all)

OUTPUT:
    --json FILE                 also write the full results as JSON
    -h, --help                  this text
";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Workload {
    Put,
    Range,
    Mixed,
    /// `--watchers` watch streams on the key prefix while the clients put.
    Watch,
    LeaseGrant,
    LeaseKeepAlive,
    /// Puts attached to a lease granted per client before the run.
    PutLease,
    /// Restart time after SIGKILL and SIGTERM with `--data-bytes` stored.
    Restart,
    /// Write latency while compaction and space reclamation run.
    CompactPause,
    /// More live data than memory should hold, read back across a restart.
    Big,
}

impl Workload {
    pub fn name(self) -> &'static str {
        match self {
            Workload::Put => "put",
            Workload::Range => "range",
            Workload::Mixed => "mixed",
            Workload::Watch => "watch",
            Workload::LeaseGrant => "lease-grant",
            Workload::LeaseKeepAlive => "lease-keepalive",
            Workload::PutLease => "put-lease",
            Workload::Restart => "restart",
            Workload::CompactPause => "compact-pause",
            Workload::Big => "big",
        }
    }

    /// The revision store's benchmarks, which `crate::store` drives.
    pub fn is_store(self) -> bool {
        matches!(
            self,
            Workload::Restart | Workload::CompactPause | Workload::Big
        )
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    Kvik,
    Etcd,
}

impl Side {
    pub fn name(self) -> &'static str {
        match self {
            Side::Kvik => "kvik",
            Side::Etcd => "etcd",
        }
    }
}

/// Where the client connections go when a cluster runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterTarget {
    /// Connection `i` goes to member `i mod N`.
    All,
    /// Every connection goes to the member that leads when the run starts.
    Leader,
}

impl ClusterTarget {
    pub fn name(self) -> &'static str {
        match self {
            ClusterTarget::All => "all",
            ClusterTarget::Leader => "leader",
        }
    }
}

#[derive(Clone, Debug)]
pub struct Args {
    pub workload: Workload,
    pub watchers: usize,
    pub keys: u64,
    pub key_size: usize,
    pub val_size: usize,
    pub serializable: bool,
    pub read_ratio: f64,
    pub conns: usize,
    pub clients: usize,
    pub total: Option<u64>,
    pub duration: Option<Duration>,
    pub runs: usize,
    pub timeout: Duration,
    pub dir: PathBuf,
    pub kvik_bin: Option<PathBuf>,
    pub etcd_bin: Option<PathBuf>,
    pub only: Option<Side>,
    pub endpoint: Option<String>,
    /// Members of each server's cluster (1: a single node).
    pub members: usize,
    pub target: ClusterTarget,
    pub json: Option<PathBuf>,
    pub data_bytes: u64,
    pub passes: u64,
    pub rounds: u64,
    pub rate: u64,
    pub compact_every: Duration,
    pub defrag_at: Duration,
    pub defrag_window: Duration,
    pub settle: Duration,
    pub cold: bool,
    pub spot_checks: usize,
    pub server_flags: Vec<String>,
}

/// The quota the revision store workloads give both servers unless told
/// otherwise: etcd's default (2 GiB) is below their data, in bytes.
pub const STORE_QUOTA_BYTES: u64 = 16 << 30;

/// Parses `argv` (without the program name). `Ok(None)` means help was asked.
pub fn parse(argv: &[String]) -> Result<Option<Args>, String> {
    let mut a = Args {
        workload: Workload::Put,
        watchers: 100,
        keys: 10_000,
        key_size: 8,
        val_size: 256,
        serializable: false,
        read_ratio: 0.5,
        conns: 1,
        clients: 1,
        total: None,
        duration: None,
        runs: 3,
        timeout: Duration::from_secs(30),
        dir: std::env::temp_dir(),
        kvik_bin: None,
        etcd_bin: None,
        only: None,
        endpoint: None,
        members: 1,
        target: ClusterTarget::All,
        json: None,
        data_bytes: 0,
        passes: 1,
        rounds: 3,
        rate: 200,
        compact_every: Duration::from_secs(5),
        defrag_at: Duration::ZERO,
        defrag_window: Duration::from_secs(5),
        settle: Duration::from_secs(10),
        cold: false,
        spot_checks: 32,
        server_flags: Vec::new(),
    };
    let mut val_size_given = false;
    let mut defrag_at_given = false;
    let mut target_given = false;
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if matches!(flag, "-h" | "--help") {
            return Ok(None);
        }
        if flag == "--cold" {
            a.cold = inline.as_deref() != Some("false");
            continue;
        }
        if flag == "--serializable" {
            a.serializable = match inline.as_deref() {
                None | Some("true") => true,
                Some("false") => false,
                Some(v) => return Err(format!("--serializable: expected true|false, got {v:?}")),
            };
            continue;
        }
        let mut value = || -> Result<String, String> {
            match &inline {
                Some(v) => Ok(v.clone()),
                None => it
                    .next()
                    .cloned()
                    .ok_or_else(|| format!("{flag} needs a value")),
            }
        };
        match flag {
            "--workload" => {
                a.workload = match value()?.as_str() {
                    "put" => Workload::Put,
                    "range" => Workload::Range,
                    "mixed" => Workload::Mixed,
                    "watch" => Workload::Watch,
                    "lease-grant" => Workload::LeaseGrant,
                    "lease-keepalive" => Workload::LeaseKeepAlive,
                    "put-lease" => Workload::PutLease,
                    "restart" => Workload::Restart,
                    "compact-pause" => Workload::CompactPause,
                    "big" => Workload::Big,
                    v => {
                        return Err(format!(
                            "--workload: expected put|range|mixed|watch|lease-grant|lease-keepalive|put-lease|restart|compact-pause|big, got {v:?}"
                        ))
                    }
                }
            }
            "--keys" => a.keys = num(flag, &value()?)?,
            "--watchers" => a.watchers = num(flag, &value()?)?,
            "--key-size" => a.key_size = num(flag, &value()?)?,
            "--val-size" => {
                a.val_size = size(flag, &value()?)? as usize;
                val_size_given = true;
            }
            "--data-bytes" => a.data_bytes = size(flag, &value()?)?,
            "--passes" => a.passes = num(flag, &value()?)?,
            "--rounds" => a.rounds = num(flag, &value()?)?,
            "--rate" => a.rate = num(flag, &value()?)?,
            "--compact-every" => a.compact_every = duration(flag, &value()?)?,
            "--defrag-at" => {
                a.defrag_at = duration(flag, &value()?)?;
                defrag_at_given = true;
            }
            "--defrag-window" => a.defrag_window = duration(flag, &value()?)?,
            "--settle" => a.settle = duration(flag, &value()?)?,
            "--spot-checks" => a.spot_checks = num(flag, &value()?)?,
            "--server-flag" => a.server_flags.push(value()?),
            "--read-ratio" => {
                let v = value()?;
                a.read_ratio = v
                    .parse::<f64>()
                    .ok()
                    .filter(|r| (0.0..=1.0).contains(r))
                    .ok_or_else(|| format!("--read-ratio: expected 0..=1, got {v:?}"))?;
            }
            "--conns" => a.conns = num(flag, &value()?)?,
            "--clients" => a.clients = num(flag, &value()?)?,
            "--total" => a.total = Some(num(flag, &value()?)?),
            "--duration" => a.duration = Some(duration(flag, &value()?)?),
            "--timeout" => a.timeout = duration(flag, &value()?)?,
            "--runs" => a.runs = num(flag, &value()?)?,
            "--dir" => a.dir = PathBuf::from(value()?),
            "--kvik-bin" => a.kvik_bin = Some(PathBuf::from(value()?)),
            "--etcd-bin" => a.etcd_bin = Some(PathBuf::from(value()?)),
            "--only" => {
                a.only = Some(match value()?.as_str() {
                    "kvik" => Side::Kvik,
                    "etcd" => Side::Etcd,
                    v => return Err(format!("--only: expected kvik|etcd, got {v:?}")),
                })
            }
            "--endpoint" => a.endpoint = Some(value()?),
            "--members" => a.members = num(flag, &value()?)?,
            "--target" => {
                a.target = match value()?.as_str() {
                    "all" => ClusterTarget::All,
                    "leader" => ClusterTarget::Leader,
                    v => return Err(format!("--target: expected all|leader, got {v:?}")),
                };
                target_given = true;
            }
            "--json" => a.json = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
    }
    if a.workload.is_store() {
        if !val_size_given {
            a.val_size = 128 << 10;
        }
        if a.data_bytes == 0 {
            a.data_bytes = match a.workload {
                Workload::Restart => 2 << 30,
                Workload::CompactPause => 1 << 30,
                _ => 9 << 30,
            };
        }
        if a.workload == Workload::CompactPause && a.duration.is_none() {
            a.duration = Some(Duration::from_secs(60));
        }
        if !defrag_at_given {
            a.defrag_at = a.duration.unwrap_or_default() / 2;
        }
        if a.val_size == 0 || a.data_bytes < a.val_size as u64 {
            return Err("--val-size must be at least 1 and at most --data-bytes".into());
        }
        if a.passes == 0 || a.rounds == 0 || a.rate == 0 {
            return Err("--passes, --rounds and --rate must be at least 1".into());
        }
        if !a
            .server_flags
            .iter()
            .any(|f| f.trim_start_matches('-').starts_with("quota-backend-bytes"))
        {
            a.server_flags
                .push(format!("--quota-backend-bytes={STORE_QUOTA_BYTES}"));
        }
        if a.endpoint.is_some() {
            return Err(
                "the revision store workloads start their own servers: no --endpoint".into(),
            );
        }
        // Keys are numbered by the data set, not by --keys.
        a.keys = a.data_bytes / a.val_size as u64;
        a.key_size = a.key_size.max(crate::load::KEY_PREFIX.len() + 8);
    }
    if a.members == 0 {
        return Err("--members must be at least 1".into());
    }
    if a.members > 1 && a.workload.is_store() {
        return Err("the revision store workloads run a single node: no --members".into());
    }
    if a.members > 1 && a.endpoint.is_some() {
        return Err("--members starts its own servers: no --endpoint".into());
    }
    if target_given && a.members == 1 {
        return Err("--target needs --members 2 or more".into());
    }
    if a.total.is_none() && a.duration.is_none() {
        a.total = Some(10_000);
    }
    if a.conns == 0 || a.clients == 0 || a.runs == 0 || a.keys == 0 {
        return Err("--conns, --clients, --runs and --keys must be at least 1".into());
    }
    if a.total == Some(0) {
        return Err("--total must be at least 1".into());
    }
    // Keys are the workload prefix followed by the zero-padded key number.
    let needed = crate::load::KEY_PREFIX.len() + (a.keys - 1).max(1).ilog10() as usize + 1;
    if a.key_size < needed {
        return Err(format!(
            "--key-size {} is too small for --keys {} (needs {needed} bytes)",
            a.key_size, a.keys
        ));
    }
    Ok(Some(a))
}

fn num<T: std::str::FromStr>(flag: &str, v: &str) -> Result<T, String> {
    v.parse()
        .map_err(|_| format!("{flag}: expected a number, got {v:?}"))
}

/// A byte count: a number with an optional KiB/MiB/GiB (or K/M/G) suffix.
fn size(flag: &str, v: &str) -> Result<u64, String> {
    let bad = || format!("{flag}: expected e.g. 131072, 128KiB, 2GiB, got {v:?}");
    let (n, unit) = v.split_at(v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len()));
    let n: u64 = n.parse().map_err(|_| bad())?;
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kib" => 10,
        "m" | "mib" => 20,
        "g" | "gib" => 30,
        _ => return Err(bad()),
    };
    n.checked_mul(1 << shift).ok_or_else(bad)
}

fn duration(flag: &str, v: &str) -> Result<Duration, String> {
    let bad = || format!("{flag}: expected e.g. 10s, 500ms, 2m, got {v:?}");
    let (n, unit) = match v.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => v.split_at(i),
        None => (v, "s"),
    };
    let n: f64 = n.parse().map_err(|_| bad())?;
    let secs = match unit {
        "ms" => n / 1000.0,
        "s" => n,
        "m" => n * 60.0,
        _ => return Err(bad()),
    };
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(bad());
    }
    Ok(Duration::from_secs_f64(secs))
}
