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
//! With `--members N`, each run starts N members of each server on
//! loopback, bootstrapped together with etcd's `--initial-cluster` flags,
//! and drives the same workloads against them: over every member, or all
//! to the leader (`--target`). Server CPU and fsyncs are summed over the
//! members.
//!
//! The revision store's workloads (`restart`, `compact-pause`, `big`) live
//! in `store`: restart time after SIGKILL and SIGTERM, write latency while
//! compaction, space reclamation and Defragment run, and a data set larger
//! than memory read back across a restart.
//!
//! Run `kvik-bench --help` for the flags.

mod args;
mod cluster;
mod load;
mod report;
mod server;
mod store;
mod sys;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use args::{Args, ClusterTarget, Side};
use cluster::Cluster;
use load::Plan;
use report::{MemberFigures, RunFigures};

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
    // On a signal, dropping the bench kills every server and removes the
    // data directories before the process exits.
    let result = rt.block_on(async {
        tokio::select! {
            r = bench(args) => r,
            sig = stop_signal() => Err(format!("stopped by {sig}")),
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kvik-bench: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The first of SIGINT, SIGTERM and SIGHUP to arrive.
async fn stop_signal() -> &'static str {
    use tokio::signal::unix::{signal, SignalKind};
    async fn recv(kind: SignalKind) {
        match signal(kind) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    }
    tokio::select! {
        _ = recv(SignalKind::interrupt()) => "SIGINT",
        _ = recv(SignalKind::terminate()) => "SIGTERM",
        _ = recv(SignalKind::hangup()) => "SIGHUP",
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
    if a.members > 1 {
        println!(
            "cluster: {} members of each server, connections {}",
            a.members,
            match a.target {
                ClusterTarget::All => "spread over every member",
                ClusterTarget::Leader => "all to the leader",
            }
        );
    }
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
        if let Some(n) = &r.cluster_note {
            notes.push(format!("{} run {}: {n}", r.target, r.run));
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
    if a.members > 1 {
        for r in &runs {
            let shares: Vec<String> = r
                .members
                .iter()
                .map(|m| {
                    format!(
                        "{}{} {}",
                        m.name,
                        if m.leader { "*" } else { "" },
                        report::opt(m.server_cpu_us_per_req, 1)
                    )
                })
                .collect();
            println!(
                "{} run {} srv CPU us/req by member (* leader): {}",
                r.target,
                r.run,
                shares.join(", ")
            );
        }
        println!(
            "with {} members: srv CPU sums every member's; fsyncs are the members' total, and writes/fsync divides the puts by the fsyncs per member",
            a.members
        );
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
    let mut cluster = None;
    let (urls, ready) = match t {
        Target::Spawn { bin, .. } => {
            let dir = scratch.join(format!("{name}-r{run}"));
            let token = format!("kvik-bench-{name}-r{run}");
            let mut c =
                Cluster::start(bin, dir, a.members, &token, &a.server_flags).map_err(ctx)?;
            let ready = c.wait_ready().await.map_err(ctx)?;
            let urls = match a.target {
                ClusterTarget::All => c.members().iter().map(|m| m.client_url.clone()).collect(),
                ClusterTarget::Leader => vec![c.members()[ready.leader].client_url.clone()],
            };
            cluster = Some(c);
            (urls, Some(ready))
        }
        Target::Endpoint(url) => (vec![url.clone()], None),
    };
    let members = cluster.as_ref().map_or(&[][..], |c| c.members());
    eprint!("run {run}/{} {name}: ", a.runs);
    if let Some(r) = ready {
        eprint!("ready in {:.2}s, ", r.elapsed.as_secs_f64());
        if a.members > 1 {
            eprint!("leader {}, ", members[r.leader].name);
        }
    }
    let channels = load::connect_spread(&urls, a.conns, a.timeout)
        .await
        .map_err(ctx)?;
    if plan.needs_preload() {
        eprint!("preloading {} keys, ", plan.keys.len());
        load::preload(&channels, plan).await.map_err(ctx)?;
    }

    // Per member: WAL fsyncs and CPU ticks, before and after.
    let fsyncs = || -> Vec<Result<f64, String>> {
        members
            .iter()
            .map(|s| sys::scrape_counter(&s.metrics_addr, sys::FSYNC_METRIC))
            .collect()
    };
    let cpu = || -> Vec<Option<u64>> { members.iter().map(|s| sys::cpu_ticks(s.pid())).collect() };
    let fsync_before = fsyncs();
    let cpu_before = cpu();
    let mark_before = sys::CpuMark::now();

    let result = load::run(&channels, plan, run as u64).await.map_err(ctx)?;

    let mark_after = sys::CpuMark::now();
    let cpu_after = cpu();
    let fsync_after = fsyncs();
    drop(channels);
    let leader_after = match (&cluster, ready) {
        (Some(c), Some(r)) if a.members > 1 => Some((c.leader().await, r.leader)),
        _ => None,
    };

    let mut fig = RunFigures::new(name, run, pos, &result);
    fig.ready_s = ready.map(|r| r.elapsed.as_secs_f64());
    let per_req = |ticks_used: Option<u64>| match ticks_used {
        Some(t) if result.ok > 0 => Some(t as f64 / ticks * 1e6 / result.ok as f64),
        _ => None,
    };
    let used = |b: &Option<u64>, a: &Option<u64>| b.zip(*a).map(|(b, a)| a.saturating_sub(b));
    let srv_ticks: Vec<Option<u64>> = cpu_before
        .iter()
        .zip(&cpu_after)
        .map(|(b, a)| used(b, a))
        .collect();
    let srv_total: Option<u64> = if members.is_empty() {
        None
    } else {
        srv_ticks.iter().copied().sum()
    };
    fig.server_cpu_us_per_req = per_req(srv_total);
    fig.client_cpu_us_per_req = per_req(used(&mark_before.me, &mark_after.me));
    fig.other_cpu_cores = mark_before.other_cores(
        &mark_after,
        srv_total.unwrap_or(0),
        ticks,
        result.elapsed.as_secs_f64(),
    );
    let fsync_used: Vec<Result<f64, String>> = fsync_before
        .into_iter()
        .zip(fsync_after)
        .map(|(b, a)| Ok(a? - b?))
        .collect();
    fig.members = members
        .iter()
        .enumerate()
        .map(|(i, m)| MemberFigures {
            name: m.name.clone(),
            leader: ready.is_some_and(|r| r.leader == i),
            server_cpu_us_per_req: per_req(srv_ticks[i]),
            fsyncs: fsync_used[i].as_ref().ok().copied(),
        })
        .collect();
    if !members.is_empty() {
        match fsync_used.into_iter().sum::<Result<f64, String>>() {
            Ok(d) => {
                fig.fsyncs = Some(d);
                let per_member = d / members.len() as f64;
                if result.puts_ok > 0 && per_member > 0.0 {
                    fig.writes_per_fsync = Some(result.puts_ok as f64 / per_member);
                }
            }
            Err(e) => fig.fsync_note = Some(format!("writes/fsync n/a: {e}")),
        }
    }
    fig.cluster_note = match leader_after {
        Some((Ok(now), before)) if now != before => Some(format!(
            "the leader changed during the run, from {} to {}",
            members[before].name, members[now].name
        )),
        Some((Err(e), _)) => Some(format!("leader after the run unknown: {e}")),
        _ => None,
    };
    drop(cluster);
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
