//! `kvik-bench`: the side-by-side load generator for kvik and etcd.
//!
//! This crate owns the benchmark harness and nothing else: it starts each
//! server itself as a child process (same etcd-style flags, fresh data dir
//! under the same `--dir`, free loopback ports), interleaves the runs
//! (kvik first on odd runs, etcd first on even ones), drives a put, range or
//! mixed workload over `--conns` HTTP/2 connections with `--clients`
//! outstanding requests, and reports per-request latency percentiles,
//! throughput, writes per WAL fsync (from each server's Prometheus
//! `etcd_disk_wal_fsync_duration_seconds_count`) and server CPU per request
//! (from `/proc/<pid>/stat`), per run and as the median of the runs.
//!
//! The revision store's workloads (`restart`, `compact-pause`, `big`) live
//! in `store`: restart time after SIGKILL and SIGTERM, write latency while
//! compaction, space reclamation and Defragment run, and a data set larger
//! than memory read back across a restart.
//!
//! Run `kvik-bench --help` for the flags.

mod args;
mod load;
mod report;
mod server;
mod store;
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use args::{Args, Side};
use load::Plan;
use report::RunFigures;
use server::Server;

/// One thing to benchmark: a server this process starts, or an endpoint.
enum Target {
    Spawn { side: Side, bin: PathBuf },
    Endpoint(String),
}

impl Target {
    fn name(&self) -> &str {
        match self {
            Target::Spawn { side, .. } => side.name(),
            Target::Endpoint(_) => "remote",
        }
    }
}

/// Removes the benchmark's scratch directory, also when unwinding.
struct ScratchDir(PathBuf);

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let args = match args::parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => {
            print!("{}", args::USAGE);
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("kvik-bench: {e}");
            return ExitCode::from(2);
        }
    };
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kvik-bench: tokio runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvik-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

fn targets(a: &Args) -> Result<Vec<Target>, String> {
    if let Some(url) = &a.endpoint {
        return Ok(vec![Target::Endpoint(url.clone())]);
    }
    let mut out = Vec::new();
    for side in [Side::Kvik, Side::Etcd] {
        if a.only.is_some_and(|o| o != side) {
            continue;
        }
        let bin = match side {
            Side::Kvik => match &a.kvik_bin {
                Some(p) => p.clone(),
                None => std::env::current_exe()
                    .map_err(|e| format!("current_exe: {e}"))?
                    .parent()
                    .ok_or("current_exe has no parent directory")?
                    .join("kvik"),
            },
            Side::Etcd => match &a.etcd_bin {
                Some(p) => p.clone(),
                None => etcd_bin_vendored::etcd_bin_path()
                    .map_err(|e| format!("vendored etcd: {e}"))?
                    .to_path_buf(),
            },
        };
        if !bin.is_file() {
            return Err(format!(
                "{} binary not found at {} (build it, or pass --{}-bin)",
                side.name(),
                bin.display(),
                side.name()
            ));
        }
        out.push(Target::Spawn { side, bin });
    }
    Ok(out)
}

async fn bench(a: Args) -> Result<(), String> {
    let command = std::env::args()
        .map(|s| shell_quote(&s))
        .collect::<Vec<_>>()
        .join(" ");
    let info = sys::machine_info(&a.dir);
    let ticks = sys::clock_ticks();
    let targets = targets(&a)?;

    println!("command: {command}");
    println!("commit:  {}", info.commit);
    println!(
        "machine: {} CPUs ({}), kernel {}, --dir filesystem {}",
        info.nproc, info.cpu_model, info.kernel, info.dir_fs
    );
    for t in &targets {
        match t {
            Target::Spawn { side, bin } => println!("{}: {}", side.name(), bin.display()),
            Target::Endpoint(url) => {
                println!("endpoint: {url} (no server started; fsync and CPU n/a)")
            }
        }
    }
    let limit = match (a.total, a.duration) {
        _ if a.workload == args::Workload::CompactPause => {
            format!("{:?} at {} puts/s", a.duration.unwrap_or_default(), a.rate)
        }
        _ if a.workload.is_store() => "the whole data set".to_string(),
        (Some(t), Some(d)) => format!("{t} requests or {d:?}, whichever first"),
        (Some(t), None) => format!("{t} requests"),
        (None, Some(d)) => format!("{d:?}"),
        (None, None) => unreachable!("parse sets a default"),
    };
    println!(
        "workload: {}{}, {limit} per run, {} runs, {} conns, {} clients, {} keys, key {} B, value {} B{}",
        a.workload.name(),
        if a.serializable && a.workload != args::Workload::Put {
            " (serializable)"
        } else {
            ""
        },
        a.runs,
        a.conns,
        a.clients,
        a.keys,
        a.key_size,
        a.val_size,
        if a.workload == args::Workload::Mixed {
            format!(", read ratio {}", a.read_ratio)
        } else {
            String::new()
        },
    );
    println!();

    let scratch = ScratchDir(a.dir.join(format!("kvik-bench-{}", std::process::id())));
    if a.workload.is_store() {
        let spawns: Vec<store::Spawn> = targets
            .iter()
            .filter_map(|t| match t {
                Target::Spawn { side, bin } => Some(store::Spawn {
                    side: *side,
                    bin: bin.clone(),
                }),
                Target::Endpoint(_) => None,
            })
            .collect();
        let runs = store::run(&a, &spawns, &scratch.0).await?;
        drop(scratch);
        if let Some(path) = &a.json {
            let doc = serde_json::json!({
                "command": command,
                "commit": info.commit,
                "machine": report::machine_json(&info),
                "workload": a.workload.name(),
                "server_flags": a.server_flags,
                "runs": runs,
            });
            let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
            std::fs::write(path, text + "\n")
                .map_err(|e| format!("write {}: {e}", path.display()))?;
            println!("wrote {}", path.display());
        }
        return Ok(());
    }
    let plan = Arc::new(Plan::new(&a));
    let mut runs = Vec::new();
    for run in 1..=a.runs {
        let mut order: Vec<&Target> = targets.iter().collect();
        if run % 2 == 0 {
            order.reverse();
        }
        for (pos, t) in order.into_iter().enumerate() {
            let fig = run_one(t, run, pos + 1, &plan, &a, &scratch.0, ticks).await?;
            runs.push(fig);
        }
    }
    drop(scratch);

    let medians: Vec<_> = targets
        .iter()
        .map(|t| {
            let rs: Vec<&RunFigures> = runs.iter().filter(|r| r.target == t.name()).collect();
            report::medians(t.name(), &rs)
        })
        .collect();
    println!();
    print!("{}", report::table(&runs, &medians));
    if let [k, e] = &medians[..] {
        if e.throughput > 0.0 {
            println!(
                "median throughput {}/{}: {:.2}x",
                k.target,
                e.target,
                k.throughput / e.throughput
            );
        }
    }
    let mut notes: Vec<String> = Vec::new();
    for r in &runs {
        if let Some(n) = &r.fsync_note {
            let n = format!("{}: {n}", r.target);
            if !notes.contains(&n) {
                notes.push(n);
            }
        }
        if let Some(e) = &r.first_error {
            notes.push(format!(
                "{} run {}: {} errors, first: {e}",
                r.target, r.run, r.errors
            ));
        }
        if let Some(o) = r.other_cpu_cores.filter(|o| *o >= 0.25) {
            notes.push(format!(
                "{} run {}: other processes used {o:.2} cores during the run; its figures are disturbed",
                r.target, r.run
            ));
        }
        if r.misses > 0 {
            notes.push(format!(
                "{} run {}: {} ranges found no key (all keys were preloaded)",
                r.target, r.run, r.misses
            ));
        }
    }
    for n in &notes {
        println!("note: {n}");
    }
    println!(
        "latency per request, ms; writes/fsync = puts acknowledged / WAL fsyncs; CPU = utime+stime per acknowledged request;\nother CPU = cores used by all other processes on the machine during the run (interference)"
    );

    if let Some(path) = &a.json {
        let doc = report::json_doc(&command, &info, &a, &runs, &medians);
        let text = serde_json::to_string_pretty(&doc).map_err(|e| e.to_string())?;
        std::fs::write(path, text + "\n").map_err(|e| format!("write {}: {e}", path.display()))?;
        println!("wrote {}", path.display());
    }
    Ok(())
}

async fn run_one(
    t: &Target,
    run: usize,
    pos: usize,
    plan: &Arc<Plan>,
    a: &Args,
    scratch: &Path,
    ticks: f64,
) -> Result<RunFigures, String> {
    let name = t.name();
    let ctx = |e: String| format!("{name} run {run}: {e}");
    let mut server = None;
    let (url, ready_s) = match t {
        Target::Spawn { bin, .. } => {
            let dir = scratch.join(format!("{name}-r{run}"));
            let mut s = Server::start(bin, dir, &a.server_flags).map_err(ctx)?;
            let ready = s.wait_ready().await.map_err(ctx)?;
            let url = s.client_url.clone();
            server = Some(s);
            (url, Some(ready.as_secs_f64()))
        }
        Target::Endpoint(url) => (url.clone(), None),
    };
    eprint!("run {run}/{} {name}: ", a.runs);
    if let Some(r) = ready_s {
        eprint!("ready in {r:.2}s, ");
    }
    let channels = load::connect(&url, a.conns, a.timeout).await.map_err(ctx)?;
    if plan.needs_preload() {
        eprint!("preloading {} keys, ", plan.keys.len());
        load::preload(&channels, plan).await.map_err(ctx)?;
    }

    let fsync = |s: &Server| sys::scrape_counter(&s.metrics_addr, sys::FSYNC_METRIC);
    let fsync_before = server.as_ref().map(fsync);
    let cpu_before = server.as_ref().and_then(|s| sys::cpu_ticks(s.pid()));
    let mark_before = sys::CpuMark::now();

    let result = load::run(&channels, plan, run as u64).await.map_err(ctx)?;

    let mark_after = sys::CpuMark::now();
    let cpu_after = server.as_ref().and_then(|s| sys::cpu_ticks(s.pid()));
    let fsync_after = server.as_ref().map(fsync);
    drop(channels);
    drop(server);

    let mut fig = RunFigures::new(name, run, pos, &result);
    fig.ready_s = ready_s;
    let per_req = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if result.ok > 0 => {
            Some(a.saturating_sub(b) as f64 / ticks * 1e6 / result.ok as f64)
        }
        _ => None,
    };
    fig.server_cpu_us_per_req = per_req(cpu_before, cpu_after);
    fig.client_cpu_us_per_req = per_req(mark_before.me, mark_after.me);
    let srv = cpu_before
        .zip(cpu_after)
        .map_or(0, |(b, a)| a.saturating_sub(b));
    fig.other_cpu_cores =
        mark_before.other_cores(&mark_after, srv, ticks, result.elapsed.as_secs_f64());
    match (fsync_before, fsync_after) {
        (Some(Ok(b)), Some(Ok(a))) => {
            let d = a - b;
            fig.fsyncs = Some(d);
            if result.puts_ok > 0 && d > 0.0 {
                fig.writes_per_fsync = Some(result.puts_ok as f64 / d);
            }
        }
        (Some(Err(e)), _) | (_, Some(Err(e))) => {
            fig.fsync_note = Some(format!("writes/fsync n/a: {e}"))
        }
        _ => {}
    }
    eprintln!(
        "{} ok in {:.2}s = {:.0} req/s, p50 {:.3} ms, p99 {:.3} ms{}",
        result.ok,
        fig.elapsed_s,
        fig.throughput,
        fig.p50_ms,
        fig.p99_ms,
        if result.errors > 0 {
            format!(", {} errors", result.errors)
        } else {
            String::new()
        }
    );
    Ok(fig)
}
