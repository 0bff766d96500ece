// The deterministic cluster simulator (`tools::sim`) over fixed seeds.
//
// Each test runs a fixed range of seeds, so a failure names a seed that
// fails again the same way: rerun it with the `kvik-sim` command the
// failure prints. The planted-bug tests show that the checkers catch
// broken rules within a bounded number of seeds.

use tools::sim::{self, Failure, Options, Planted, Report};

fn run_range(nodes: usize, seeds: std::ops::Range<u64>, chaos_steps: u64, reference: bool) {
    let mut ops = 0;
    let mut crashes = 0;
    let mut elections = 0;
    let mut acked = 0;
    let count = seeds.end - seeds.start;
    for seed in seeds {
        let mut o = Options::new(seed, nodes);
        o.chaos_steps = chaos_steps;
        o.reference_core = reference;
        match sim::run(&o) {
            Ok(r) => {
                ops += r.ops_ok;
                crashes += r.crashes;
                elections += r.elections;
                acked += r.acked_writes;
            }
            Err(f) => panic!("{f}"),
        }
    }
    // The runs must actually do something.
    assert!(ops > 10 * count, "{ops} operations in {count} seeds");
    assert!(
        acked > 5 * count,
        "{acked} acknowledged writes in {count} seeds"
    );
    assert!(crashes > count, "{crashes} crashes in {count} seeds");
    assert!(elections > count, "{elections} elections in {count} seeds");
}

#[test]
fn three_nodes_first_half() {
    run_range(3, 0..700, 2000, false);
}

#[test]
fn three_nodes_second_half() {
    run_range(3, 700..1400, 2000, false);
}

#[test]
fn five_nodes() {
    run_range(5, 0..500, 2000, false);
}

#[test]
fn long_runs() {
    run_range(3, 1_000_000..1_000_040, 20_000, false);
    run_range(5, 1_000_000..1_000_020, 20_000, false);
}

#[test]
fn reference_core() {
    run_range(3, 0..300, 2000, true);
}

fn traced(seed: u64, nodes: usize) -> Report {
    let mut o = Options::new(seed, nodes);
    o.chaos_steps = 1500;
    o.trace = true;
    sim::run(&o).unwrap_or_else(|f| panic!("{f}"))
}

#[test]
fn a_seed_replays_exactly() {
    for (seed, nodes) in [(7, 3), (8, 5), (123_456_789, 3)] {
        let a = traced(seed, nodes);
        let b = traced(seed, nodes);
        assert!(a.trace.len() > 50, "a trace of {} lines", a.trace.len());
        assert_eq!(a.trace, b.trace, "seed {seed}: traces differ");
        assert_eq!(a, b, "seed {seed}: reports differ");
    }
    // And different seeds make different runs.
    assert_ne!(traced(1, 3).trace_hash, traced(2, 3).trace_hash);
}

/// Runs seeds from 0 until `planted` is caught; returns the failure.
fn first_catch(planted: Planted, nodes: usize, max_seeds: u64, reference: bool) -> Failure {
    for seed in 0..max_seeds {
        let mut o = Options::new(seed, nodes);
        o.chaos_steps = 2000;
        o.planted = planted;
        o.reference_core = reference;
        if let Err(f) = sim::run(&o) {
            return f;
        }
    }
    panic!(
        "planted bug {} not caught in {max_seeds} seeds",
        planted.name()
    );
}

#[test]
fn skipping_the_log_up_to_date_check_is_caught() {
    let f = first_catch(Planted::SkipLogUpToDateCheck, 3, 200, false);
    assert!(
        f.message.contains("leader completeness")
            || f.message.contains("state machine safety")
            || f.message.contains("linearizab"),
        "{f}"
    );
    // A failure names its seed and how to replay it.
    let text = f.to_string();
    assert!(text.contains(&format!("seed {}", f.options.seed)), "{text}");
    assert!(
        text.contains("--planted skip-log-up-to-date-check"),
        "{text}"
    );
    // The same bug planted in the simulator's reference core.
    first_catch(Planted::SkipLogUpToDateCheck, 3, 200, true);
}

#[test]
fn a_broken_apply_is_caught() {
    let f = first_catch(Planted::BrokenApply, 3, 50, false);
    assert!(f.message.contains("state machine safety"), "{f}");
}

#[test]
fn stale_reads_are_caught() {
    let f = first_catch(Planted::StaleReads, 3, 100, false);
    assert!(
        f.message.contains("linearizab") || f.message.contains("revision"),
        "{f}"
    );
}

#[test]
fn acknowledging_before_commit_is_caught() {
    let f = first_catch(Planted::AckOnPropose, 3, 100, false);
    assert!(
        f.message.contains("linearizab") || f.message.contains("acknowledged"),
        "{f}"
    );
}

#[test]
fn a_lying_fsync_is_caught() {
    first_catch(Planted::LyingFsync, 3, 100, false);
}

#[test]
fn a_forgotten_vote_is_caught() {
    let f = first_catch(Planted::VolatileVote, 3, 3000, false);
    assert!(f.message.contains("safety"), "{f}");
}
