//! Per-run figures, medians, the text table and the JSON document.

use serde_json::{json, Value};

use crate::args::Args;
use crate::load::LoadResult;
use crate::sys::MachineInfo;

/// One member's share of a run.
#[derive(Clone, Debug)]
pub struct MemberFigures {
    pub name: String,
    /// Led when the run started.
    pub leader: bool,
    pub server_cpu_us_per_req: Option<f64>,
    pub fsyncs: Option<f64>,
}

impl MemberFigures {
    fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "leader_at_start": self.leader,
            "server_cpu_us_per_request": self.server_cpu_us_per_req,
            "wal_fsyncs": self.fsyncs,
        })
    }
}

/// The figures of one run of one server.
#[derive(Clone, Debug)]
pub struct RunFigures {
    pub target: String,
    pub run: usize,
    /// Position within the run (1 = went first).
    pub order: usize,
    pub ready_s: Option<f64>,
    pub elapsed_s: f64,
    pub ok: u64,
    pub puts_ok: u64,
    pub ranges_ok: u64,
    pub errors: u64,
    pub misses: u64,
    pub first_error: Option<String>,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub fsyncs: Option<f64>,
    pub fsync_note: Option<String>,
    pub writes_per_fsync: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    pub client_cpu_us_per_req: Option<f64>,
    /// CPU used by everything else on the machine during the run, in cores.
    pub other_cpu_cores: Option<f64>,
    /// Each member's share (one entry for a single node). The server CPU
    /// and fsync figures above are summed over them.
    pub members: Vec<MemberFigures>,
    /// Something that happened to the cluster during the run, e.g. a new
    /// leader.
    pub cluster_note: Option<String>,
}

impl RunFigures {
    pub fn new(target: &str, run: usize, order: usize, r: &LoadResult) -> RunFigures {
        let ms = |q: f64| r.hist.value_at_quantile(q) as f64 / 1000.0;
        let secs = r.elapsed.as_secs_f64();
        RunFigures {
            target: target.to_string(),
            run,
            order,
            ready_s: None,
            elapsed_s: secs,
            ok: r.ok,
            puts_ok: r.puts_ok,
            ranges_ok: r.ranges_ok,
            errors: r.errors,
            misses: r.misses,
            first_error: r.first_error.clone(),
            throughput: if secs > 0.0 { r.ok as f64 / secs } else { 0.0 },
            p50_ms: ms(0.5),
            p90_ms: ms(0.9),
            p99_ms: ms(0.99),
            p999_ms: ms(0.999),
            max_ms: r.hist.max() as f64 / 1000.0,
            fsyncs: None,
            fsync_note: None,
            writes_per_fsync: None,
            server_cpu_us_per_req: None,
            client_cpu_us_per_req: None,
            other_cpu_cores: None,
            members: Vec::new(),
            cluster_note: None,
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "target": self.target,
            "run": self.run,
            "order_in_run": self.order,
            "ready_s": self.ready_s,
            "elapsed_s": self.elapsed_s,
            "requests_ok": self.ok,
            "puts_ok": self.puts_ok,
            "ranges_ok": self.ranges_ok,
            "errors": self.errors,
            "range_misses": self.misses,
            "first_error": self.first_error,
            "throughput_rps": self.throughput,
            "latency_ms": {
                "p50": self.p50_ms, "p90": self.p90_ms, "p99": self.p99_ms,
                "p99.9": self.p999_ms, "max": self.max_ms,
            },
            "wal_fsyncs": self.fsyncs,
            "wal_fsync_note": self.fsync_note,
            "writes_per_fsync": self.writes_per_fsync,
            "server_cpu_us_per_request": self.server_cpu_us_per_req,
            "client_cpu_us_per_request": self.client_cpu_us_per_req,
            "other_processes_cpu_cores": self.other_cpu_cores,
            "members": self.members.iter().map(MemberFigures::to_json).collect::<Vec<_>>(),
            "cluster_note": self.cluster_note,
        })
    }
}

/// Median of each figure over the runs of one target.
pub struct Medians {
    pub target: String,
    pub throughput: f64,
    pub p50_ms: f64,
    pub p90_ms: f64,
    pub p99_ms: f64,
    pub p999_ms: f64,
    pub max_ms: f64,
    pub writes_per_fsync: Option<f64>,
    pub fsyncs: Option<f64>,
    pub server_cpu_us_per_req: Option<f64>,
    pub client_cpu_us_per_req: Option<f64>,
    pub other_cpu_cores: Option<f64>,
    pub errors: u64,
}

pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

pub fn medians(target: &str, runs: &[&RunFigures]) -> Medians {
    let m =
        |f: &dyn Fn(&RunFigures) -> f64| median(runs.iter().map(|r| f(r)).collect()).unwrap_or(0.0);
    let mo =
        |f: &dyn Fn(&RunFigures) -> Option<f64>| median(runs.iter().filter_map(|r| f(r)).collect());
    Medians {
        target: target.to_string(),
        throughput: m(&|r| r.throughput),
        p50_ms: m(&|r| r.p50_ms),
        p90_ms: m(&|r| r.p90_ms),
        p99_ms: m(&|r| r.p99_ms),
        p999_ms: m(&|r| r.p999_ms),
        max_ms: m(&|r| r.max_ms),
        writes_per_fsync: mo(&|r| r.writes_per_fsync),
        fsyncs: mo(&|r| r.fsyncs),
        server_cpu_us_per_req: mo(&|r| r.server_cpu_us_per_req),
        client_cpu_us_per_req: mo(&|r| r.client_cpu_us_per_req),
        other_cpu_cores: mo(&|r| r.other_cpu_cores),
        errors: runs.iter().map(|r| r.errors).sum(),
    }
}

/// `v` with `prec` decimals, or "n/a".
pub fn opt(v: Option<f64>, prec: usize) -> String {
    v.map_or_else(|| "n/a".to_string(), |x| format!("{x:.prec$}"))
}

const HEADER: &str = "target  run        req/s   p50 ms   p90 ms   p99 ms p99.9 ms   max ms  writes/fsync   fsyncs  srv CPU us/req  cli CPU us/req  errors  other CPU";

pub fn table(runs: &[RunFigures], medians: &[Medians]) -> String {
    let mut s = String::new();
    s.push_str(HEADER);
    s.push('\n');
    for r in runs {
        s.push_str(&format!(
            "{:<6}  {:>3}  {:>11.0}  {:>7.3}  {:>7.3}  {:>7.3}  {:>7.3}  {:>7.3}  {:>12}  {:>7}  {:>14}  {:>14}  {:>6}  {:>9}\n",
            r.target,
            r.run,
            r.throughput,
            r.p50_ms,
            r.p90_ms,
            r.p99_ms,
            r.p999_ms,
            r.max_ms,
            opt(r.writes_per_fsync, 2),
            opt(r.fsyncs, 0),
            opt(r.server_cpu_us_per_req, 1),
            opt(r.client_cpu_us_per_req, 1),
            r.errors,
            opt(r.other_cpu_cores, 2),
        ));
    }
    s.push_str(&format!("{}\n", "-".repeat(HEADER.len())));
    for m in medians {
        s.push_str(&format!(
            "{:<6}  med  {:>11.0}  {:>7.3}  {:>7.3}  {:>7.3}  {:>7.3}  {:>7.3}  {:>12}  {:>7}  {:>14}  {:>14}  {:>6}  {:>9}\n",
            m.target,
            m.throughput,
            m.p50_ms,
            m.p90_ms,
            m.p99_ms,
            m.p999_ms,
            m.max_ms,
            opt(m.writes_per_fsync, 2),
            opt(m.fsyncs, 0),
            opt(m.server_cpu_us_per_req, 1),
            opt(m.client_cpu_us_per_req, 1),
            m.errors,
            opt(m.other_cpu_cores, 2),
        ));
    }
    s
}

/// The machine facts every JSON document records.
pub fn machine_json(info: &MachineInfo) -> Value {
    json!({
        "nproc": info.nproc,
        "cpu_model": info.cpu_model,
        "kernel": info.kernel,
        "dir_filesystem": info.dir_fs,
    })
}

pub fn json_doc(
    command: &str,
    info: &MachineInfo,
    a: &Args,
    runs: &[RunFigures],
    medians: &[Medians],
) -> Value {
    json!({
        "command": command,
        "commit": info.commit,
        "machine": machine_json(info),
        "config": {
            "workload": a.workload.name(),
            "keys": a.keys,
            "key_size": a.key_size,
            "val_size": a.val_size,
            "serializable": a.serializable,
            "read_ratio": a.read_ratio,
            "conns": a.conns,
            "clients": a.clients,
            "total": a.total,
            "duration_s": a.duration.map(|d| d.as_secs_f64()),
            "runs": a.runs,
            "endpoint": a.endpoint,
            "members": a.members,
            "target": a.target.name(),
        },
        "runs": runs.iter().map(RunFigures::to_json).collect::<Vec<_>>(),
        "median": medians.iter().map(|m| (m.target.clone(), json!({
            "throughput_rps": m.throughput,
            "latency_ms": {"p50": m.p50_ms, "p90": m.p90_ms, "p99": m.p99_ms, "p99.9": m.p999_ms, "max": m.max_ms},
            "writes_per_fsync": m.writes_per_fsync,
            "wal_fsyncs": m.fsyncs,
            "server_cpu_us_per_request": m.server_cpu_us_per_req,
            "client_cpu_us_per_request": m.client_cpu_us_per_req,
            "other_processes_cpu_cores": m.other_cpu_cores,
            "errors_all_runs": m.errors,
        }))).collect::<serde_json::Map<_, _>>(),
    })
}
