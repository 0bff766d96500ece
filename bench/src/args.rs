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

SERVERS:
    --dir DIR                   parent of the per-run data dirs (default: system temp dir)
    --kvik-bin PATH             kvik binary (default: `kvik` next to this executable)
    --etcd-bin PATH             etcd binary (default: the vendored etcd 3.7.2)
    --only kvik|etcd            run one side only
    --endpoint URL              run against an already running server; starts none

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
        }
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
    pub json: Option<PathBuf>,
}

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
        json: None,
    };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let (flag, inline) = match arg.split_once('=') {
            Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        if matches!(flag, "-h" | "--help") {
            return Ok(None);
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
                    v => {
                        return Err(format!(
                            "--workload: expected put|range|mixed|watch|lease-grant|lease-keepalive|put-lease, got {v:?}"
                        ))
                    }
                }
            }
            "--keys" => a.keys = num(flag, &value()?)?,
            "--watchers" => a.watchers = num(flag, &value()?)?,
            "--key-size" => a.key_size = num(flag, &value()?)?,
            "--val-size" => a.val_size = num(flag, &value()?)?,
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
            "--json" => a.json = Some(PathBuf::from(value()?)),
            _ => return Err(format!("unknown argument {arg:?} (see --help)")),
        }
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
