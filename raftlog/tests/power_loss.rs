//! Seeded power-loss testing of the WAL over `SimDisk`.
//!
//! Each seed drives a random workload (appends, group syncs, suffix
//! truncation, prefix release, resets), cuts the power at random operations
//! (including between a write and its fsync, and during recovery itself),
//! crashes the disk and reopens. The oracle:
//!
//! * every entry acknowledged by `sync` (and not since truncated away or
//!   released) is recovered with identical term and bytes;
//! * recovered entries are contiguous from the recovered first index;
//! * every recovered entry is some version that was really appended at that
//!   index (unacknowledged entries may survive, never invented ones);
//! * a reset that a power cut interrupted recovers either the log before
//!   it (checked as above) or the empty log after its index with its term;
//! * opening never fails for any reason but the injected power cut, and
//!   nothing panics.

mod common;

use std::collections::HashMap;

use common::*;
use raftlog::sim::{block_on, SimDisk};
use raftlog::{Entry, Recovered, Wal, WalError, WalOptions};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[derive(Default, Debug)]
struct Report {
    reopens: u64,
    acked_checked: u64,
    torn_tails: u64,
    power_cuts: u64,
    resets: u64,
    interrupted_resets: u64,
}

struct Model {
    /// The log as the WAL should hold it: `first..=last`, acked or not.
    log: Vec<Entry>,
    first: u64,
    /// Entries `must_lo..=acked` must survive a crash.
    acked: u64,
    must_lo: u64,
    /// Every (term, payload) ever appended at each index.
    versions: HashMap<u64, Vec<(u64, Vec<u8>)>>,
    /// `(index, term)` of a reset that failed: recovery may find either log.
    pending_reset: Option<(u64, u64)>,
}

impl Model {
    fn last(&self) -> u64 {
        self.first + self.log.len() as u64 - 1
    }

    fn entry(&self, index: u64) -> &Entry {
        &self.log[(index - self.first) as usize]
    }

    /// The empty log after entry `index`, as a completed reset leaves it.
    fn reset_after(&mut self, index: u64) {
        self.log.clear();
        self.first = index + 1;
        self.acked = index;
        self.must_lo = index + 1;
    }

    fn reset_to(&mut self, rec: &Recovered) {
        self.log = rec.entries.clone();
        self.first = rec.first_index;
        self.acked = rec.last_index;
        self.must_lo = rec.first_index;
    }

    fn check(&mut self, rec: &Recovered) -> Result<u64, String> {
        if let Some((index, term)) = self.pending_reset.take() {
            if rec.base == Some((index, term))
                && (rec.first_index, rec.last_index) == (index + 1, index)
            {
                self.reset_after(index);
            }
        }
        for (i, e) in rec.entries.iter().enumerate() {
            if e.index != rec.first_index + i as u64 {
                return Err(format!(
                    "recovered entries not contiguous: position {i} holds index {}",
                    e.index
                ));
            }
            let known = self
                .versions
                .get(&e.index)
                .is_some_and(|v| v.iter().any(|(t, p)| *t == e.term && *p == e.payload));
            if !known {
                return Err(format!("recovered entry {} was never appended", e.index));
            }
        }
        if rec.last_index + 1 != rec.first_index + rec.entries.len() as u64 {
            return Err(format!(
                "last_index {} inconsistent with {} entries from {}",
                rec.last_index,
                rec.entries.len(),
                rec.first_index
            ));
        }
        if self.acked < self.must_lo {
            return Ok(0);
        }
        if rec.first_index > self.must_lo {
            return Err(format!(
                "acknowledged entries {}..{} lost: log starts at {}",
                self.must_lo, rec.first_index, rec.first_index
            ));
        }
        if rec.last_index < self.acked {
            return Err(format!(
                "acknowledged entry lost: recovered up to {}, acknowledged up to {}",
                rec.last_index, self.acked
            ));
        }
        for index in self.must_lo..=self.acked {
            let got = &rec.entries[(index - rec.first_index) as usize];
            if got != self.entry(index) {
                return Err(format!("acknowledged entry {index} differs after recovery"));
            }
        }
        Ok(self.acked - self.must_lo + 1)
    }
}

/// Crashes and reopens until an open survives (power cuts may also hit
/// recovery), then checks the result.
fn crash_and_reopen(
    disk: &SimDisk,
    o: WalOptions,
    rng: &mut StdRng,
    model: &mut Model,
    report: &mut Report,
) -> Result<Wal<SimDisk>, String> {
    for _attempt in 0..20 {
        disk.crash(rng.random());
        if rng.random_bool(0.3) {
            disk.cut_power_after(rng.random_range(0..4));
        }
        match block_on(Wal::open_with(disk.clone(), o)) {
            Ok((wal, rec)) => {
                report.reopens += 1;
                if let Some((index, term)) = model.pending_reset {
                    if rec.base == Some((index, term)) && wal.last_term() != term {
                        return Err(format!(
                            "recovered a reset after {index} with last term {}, not {term}",
                            wal.last_term()
                        ));
                    }
                }
                report.acked_checked += model.check(&rec)?;
                if rec.truncated_tail.is_some() {
                    report.torn_tails += 1;
                }
                model.reset_to(&rec);
                if disk.is_powered_off() {
                    return Err("open succeeded on a powered-off disk".into());
                }
                // Disarm a cut that recovery did not reach.
                disk.cut_power_after(u64::MAX);
                return Ok(wal);
            }
            Err(e) if disk.is_powered_off() => {
                report.power_cuts += 1;
                let _ = e;
            }
            Err(e) => return Err(format!("open failed: {e}")),
        }
    }
    Err("could not reopen".into())
}

/// Handles an error from a WAL call: only an injected power cut is allowed.
fn expect_power_cut(disk: &SimDisk, what: &str, e: WalError) -> Result<(), String> {
    if disk.is_powered_off() {
        Ok(())
    } else {
        Err(format!("{what} failed without a power cut: {e}"))
    }
}

fn run(seed: u64, lying_disk: bool) -> Result<Report, String> {
    let mut rng = StdRng::seed_from_u64(seed);
    let disk = SimDisk::new();
    disk.set_lying_sync(lying_disk);
    let o = opts([200, 700, 3000, 1 << 20][rng.random_range(0..4)]);
    let mut report = Report::default();
    let (mut wal, rec) = block_on(Wal::open_with(disk.clone(), o)).map_err(|e| e.to_string())?;
    let mut model = Model {
        log: Vec::new(),
        first: 1,
        acked: 0,
        must_lo: 1,
        versions: HashMap::new(),
        pending_reset: None,
    };
    model.reset_to(&rec);
    let mut term = 1;
    let steps = rng.random_range(20..120);
    for _ in 0..steps {
        if rng.random_bool(0.08) {
            disk.cut_power_after(rng.random_range(0..6));
        }
        let action = rng.random_range(0..100);
        let result = if action < 45 {
            // Append a batch.
            if rng.random_bool(0.1) {
                term += 1;
            }
            for _ in 0..rng.random_range(1..=8) {
                let index = wal.last_index() + 1;
                let len = if rng.random_bool(0.05) {
                    rng.random_range(300..2000)
                } else {
                    rng.random_range(0..120)
                };
                let mut p = vec![0u8; len];
                rng.fill(&mut p[..]);
                wal.append(term, index, &p);
                model
                    .versions
                    .entry(index)
                    .or_default()
                    .push((term, p.clone()));
                model.log.push(Entry {
                    term,
                    index,
                    payload: p,
                });
            }
            Ok(())
        } else if action < 80 {
            match block_on(wal.sync()) {
                Ok(durable) => {
                    if durable != model.last() {
                        return Err(format!(
                            "sync returned {durable}, expected {}",
                            model.last()
                        ));
                    }
                    model.acked = durable;
                    Ok(())
                }
                Err(e) => Err(("sync", e)),
            }
        } else if action < 87 {
            // Raft overwrites a suffix.
            let lo = wal.first_index() - 1;
            let k = rng.random_range(lo..=wal.last_index());
            let r = block_on(wal.truncate_after(k));
            model.log.truncate((k + 1 - model.first) as usize);
            model.acked = model.acked.min(k);
            r.map_err(|e| ("truncate_after", e))
        } else if action < 89 {
            // A snapshot from the leader replaces the whole log.
            let index =
                rng.random_range(wal.first_index().saturating_sub(20)..=wal.last_index() + 20);
            term += rng.random_range(0..=1);
            match block_on(wal.reset_after(index, term)) {
                Ok(()) => {
                    if (wal.last_index(), wal.durable_index(), wal.last_term())
                        != (index, index, term)
                    {
                        return Err(format!(
                            "reset_after({index}, {term}) left {}",
                            wal.last_index()
                        ));
                    }
                    report.resets += 1;
                    model.reset_after(index);
                    Ok(())
                }
                Err(e) => {
                    report.interrupted_resets += 1;
                    model.pending_reset = Some((index, term));
                    Err(("reset_after", e))
                }
            }
        } else if action < 92 {
            // A checkpoint releases a prefix.
            let k = rng.random_range(wal.first_index()..=wal.last_index() + 1);
            match block_on(wal.release_before(k)) {
                Ok(first) => {
                    if first > k {
                        return Err(format!("release_before({k}) released up to {first}"));
                    }
                    model.must_lo = model.must_lo.max(first);
                    Ok(())
                }
                Err(e) => {
                    model.must_lo = model.must_lo.max(k);
                    Err(("release_before", e))
                }
            }
        } else {
            // Power loss between operations (or wherever an armed cut hit).
            drop(wal);
            wal = crash_and_reopen(&disk, o, &mut rng, &mut model, &mut report)?;
            continue;
        };
        if let Err((what, e)) = result {
            expect_power_cut(&disk, what, e)?;
            drop(wal);
            wal = crash_and_reopen(&disk, o, &mut rng, &mut model, &mut report)?;
        }
        // Keep term monotonic after recovery may have restored an old suffix.
        term = term.max(wal.last_term());
    }
    drop(wal);
    crash_and_reopen(&disk, o, &mut rng, &mut model, &mut report)?;
    Ok(report)
}

#[test]
fn power_loss_keeps_every_acknowledged_entry() {
    let reports = for_seeds(0..1000, |seed| run(seed, false));
    let total = |f: fn(&Report) -> u64| reports.iter().map(f).sum::<u64>();
    let (reopens, acked, torn, cuts) = (
        total(|r| r.reopens),
        total(|r| r.acked_checked),
        total(|r| r.torn_tails),
        total(|r| r.power_cuts),
    );
    let (resets, interrupted) = (total(|r| r.resets), total(|r| r.interrupted_resets));
    println!("reopens {reopens}, acked entries checked {acked}, torn tails {torn}, cuts in recovery {cuts}");
    println!("resets {resets}, interrupted by a power cut {interrupted}");
    // The workload really exercises what it claims to.
    assert!(reopens > 3000, "{reopens}");
    assert!(acked > 100_000, "{acked}");
    assert!(torn > 300, "{torn}");
    assert!(cuts > 100, "{cuts}");
    assert!(resets > 500 && interrupted > 50, "{resets} {interrupted}");
}

#[test]
fn the_checker_catches_a_disk_that_acknowledges_before_persisting() {
    // Planted bug: fsync reports success without making anything durable,
    // exactly like a WAL that acknowledges before its fsync completes.
    let mut lost = 0;
    let mut failed = 0;
    let seeds = 0..100;
    let n = seeds.end - seeds.start;
    for seed in seeds {
        if let Err(msg) = run(seed, true) {
            if std::env::var("RAFTLOG_VERBOSE").is_ok() {
                println!("seed {seed}: {msg}");
            }
            failed += 1;
            if msg.contains("acknowledged entr") {
                lost += 1;
            }
        }
    }
    println!(
        "lying disk: {failed} of {n} seeds failed, {lost} reporting lost acknowledged entries"
    );
    assert!(
        failed > n / 2,
        "only {failed} of {n} seeds caught the lying disk"
    );
    assert!(lost > 0);
}
