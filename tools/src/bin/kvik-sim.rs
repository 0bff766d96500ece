// kvik-sim: runs the deterministic cluster simulator over a range of seeds.
//
//   kvik-sim --seeds N --start S [--nodes 3|4|5] [--chaos-steps N]
//            [--planted NAME] [--core raft|reference] [--trace] [--quiet]
//            [--keep-going]
//
// Each seed is one simulated run (see `tools::sim`). The first failure
// stops the run and prints its seed, the violation, and the command that
// replays it; `--trace` prints the replayed run step by step. The exit
// status is 0 when every seed passed, 1 on a failure, 2 on bad arguments.

use std::process::ExitCode;
use std::time::Instant;

use tools::sim::{self, Options, Planted};

const USAGE: &str = "usage: kvik-sim [--seeds N] [--start S] [--nodes 3|4|5] [--chaos-steps N] \
[--planted none|skip-log-up-to-date-check|commit-previous-term-by-count|broken-apply|lying-fsync|volatile-vote|stale-reads|ack-on-propose] \
[--core raft|reference] [--trace] [--quiet] [--keep-going]";

struct Args {
    seeds: u64,
    start: u64,
    nodes: usize,
    chaos_steps: u64,
    planted: Planted,
    reference: bool,
    trace: bool,
    quiet: bool,
    keep_going: bool,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        seeds: 100,
        start: 0,
        nodes: 3,
        chaos_steps: Options::new(0, 3).chaos_steps,
        planted: Planted::None,
        reference: false,
        trace: false,
        quiet: false,
        keep_going: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = |name: &str| it.next().ok_or(format!("{name} needs a value"));
        let num = |s: String| s.parse::<u64>().map_err(|e| format!("{s:?}: {e}"));
        match flag.as_str() {
            "--seeds" => a.seeds = num(value("--seeds")?)?,
            "--start" => a.start = num(value("--start")?)?,
            "--nodes" => a.nodes = num(value("--nodes")?)? as usize,
            "--chaos-steps" => a.chaos_steps = num(value("--chaos-steps")?)?,
            "--planted" => {
                let v = value("--planted")?;
                a.planted = Planted::parse(&v).ok_or(format!("unknown planted bug {v:?}"))?;
            }
            "--core" => match value("--core")?.as_str() {
                "raft" => a.reference = false,
                "reference" => a.reference = true,
                v => return Err(format!("unknown core {v:?}")),
            },
            "--trace" => a.trace = true,
            "--quiet" => a.quiet = true,
            "--keep-going" => a.keep_going = true,
            "-h" | "--help" => return Err(String::new()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if !(3..=5).contains(&a.nodes) {
        return Err("--nodes must be 3, 4 or 5".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            if !e.is_empty() {
                eprintln!("kvik-sim: {e}");
            }
            eprintln!("{USAGE}");
            return ExitCode::from(2);
        }
    };
    let started = Instant::now();
    let mut passed = 0u64;
    let mut failed = 0u64;
    let mut steps = 0u64;
    let mut ops = 0u64;
    for seed in args.start..args.start.saturating_add(args.seeds) {
        let mut o = Options::new(seed, args.nodes);
        o.chaos_steps = args.chaos_steps;
        o.planted = args.planted;
        o.trace = args.trace;
        o.reference_core = args.reference;
        match sim::run(&o) {
            Ok(r) => {
                passed += 1;
                steps += r.steps;
                ops += r.ops_ok;
                if args.trace {
                    for line in &r.trace {
                        println!("{line}");
                    }
                }
                if !args.quiet && (args.seeds <= 20 || args.trace) {
                    println!(
                        "seed {seed}: ok, {} steps, trace {:016x}, commit {}, state {:08x}, {} elections, \
                         {} crashes, ops {} ok / {} unknown / {} failed, {} writes acknowledged",
                        r.steps,
                        r.trace_hash,
                        r.commit_index,
                        r.state_hash,
                        r.elections,
                        r.crashes,
                        r.ops_ok,
                        r.ops_unknown,
                        r.ops_failed,
                        r.acked_writes
                    );
                }
            }
            Err(f) => {
                failed += 1;
                for line in &f.trace {
                    println!("{line}");
                }
                eprintln!("{f}");
                if !args.keep_going {
                    break;
                }
            }
        }
        let done = passed + failed;
        if !args.quiet && args.seeds > 20 && done.is_multiple_of(1000) {
            eprintln!(
                "{done} seeds, {failed} failed, {:.1} s",
                started.elapsed().as_secs_f64()
            );
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{passed} passed, {failed} failed, {steps} steps, {ops} client operations, {secs:.1} s ({:.1} ms per seed)",
        1000.0 * secs / (passed + failed).max(1) as f64
    );
    if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}
