//! `Wal::reset_after`: restarting the log after a snapshot's entry, its
//! on-disk base segment, recovery of leftovers, and crash safety at every
//! storage operation of a reset.

mod common;

use common::*;
use raftlog::sim::{block_on, SimDisk};
use raftlog::wal::{base_segment_name, parse_base_segment_name, parse_segment_name, segment_name};
use raftlog::{Entry, Recovered, Wal, WalError, WalOptions, SEGMENT_HEADER_BYTES};

/// Appends entries `from..=to` of term `term` and syncs every `batch`.
fn fill_term(wal: &mut Wal<SimDisk>, from: u64, to: u64, term: u64, batch: u64) -> Vec<Entry> {
    let mut out = Vec::new();
    for index in from..=to {
        let e = Entry {
            term,
            index,
            payload: payload(index + term, (index % 40) as usize),
        };
        wal.append(e.term, index, &e.payload);
        out.push(e);
        if (index - from + 1).is_multiple_of(batch) || index == to {
            block_on(wal.sync()).expect("sync");
        }
    }
    out
}

/// Checks the WAL and the directory hold the empty log after `(index, term)`.
fn assert_reset(disk: &SimDisk, wal: &Wal<SimDisk>, index: u64, term: u64) {
    assert_eq!(wal.last_index(), index);
    assert_eq!(wal.durable_index(), index);
    assert_eq!(wal.last_term(), term);
    assert_eq!(wal.first_index(), index + 1);
    let names = wal.segment_names();
    assert_eq!(names.len(), 1, "{names:?}");
    let (_, first, base_term) = parse_base_segment_name(&names[0]).expect("a base segment");
    assert_eq!((first, base_term), (index + 1, term));
    assert_eq!(disk.file_names(), names, "leftovers on disk");
}

/// Checks a recovery found the empty log after `(index, term)`.
fn assert_recovered_reset(rec: &Recovered, wal: &Wal<SimDisk>, index: u64, term: u64) {
    assert_eq!(rec.entries, vec![]);
    assert_eq!((rec.first_index, rec.last_index), (index + 1, index));
    assert_eq!(rec.base, Some((index, term)));
    assert_eq!((wal.last_index(), wal.durable_index()), (index, index));
    assert_eq!(wal.last_term(), term);
    assert_eq!(wal.first_index(), index + 1);
}

/// A 60-entry log (term 1) over several segments.
fn sixty(o: WalOptions) -> (SimDisk, Wal<SimDisk>, Vec<Entry>) {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, o);
    let log = fill_term(&mut wal, 1, 60, 1, 5);
    assert!(wal.segment_names().len() >= 4, "{:?}", wal.segment_names());
    (disk, wal, log)
}

#[test]
fn reset_discards_entries_below_around_and_beyond_the_index() {
    let o = opts(400);
    // (what, release_before first, reset index, reset term)
    let cases: [(&str, u64, u64, u64); 7] = [
        ("inside the log", 0, 30, 4),
        ("before the first entry", 0, 0, 2),
        ("at the last entry", 0, 60, 1),
        ("beyond the end", 0, 500, 7),
        ("right after the end", 0, 61, 3),
        ("below the first index", 40, 10, 1),
        ("with a lower term than the log's", 0, 45, 0),
    ];
    for (what, release, index, term) in cases {
        let (disk, mut wal, _) = sixty(o);
        if release > 0 {
            block_on(wal.release_before(release)).unwrap();
            assert!(wal.first_index() > index + 1, "{what}");
        }
        let removed = wal.stats().segments_removed + wal.segment_names().len() as u64;
        block_on(wal.reset_after(index, term)).unwrap();
        assert_reset(&disk, &wal, index, term);
        let stats = wal.stats();
        assert_eq!(stats.resets, 1, "{what}");
        assert_eq!(stats.segments_removed, removed, "{what}");

        // Appends continue at index + 1, across segments, and survive a
        // crash.
        let more = fill_term(&mut wal, index + 1, index + 40, term + 1, 3);
        assert!(wal.segment_names().len() > 1, "{what}");
        drop(wal);
        disk.crash(index);
        let (wal, rec) = open(&disk, o);
        assert_eq!(rec.entries, more, "{what}");
        assert_eq!(rec.first_index, index + 1, "{what}");
        assert_eq!(rec.base, Some((index, term)), "{what}");
        assert_eq!(rec.leftovers_removed, Vec::<String>::new(), "{what}");
        assert_eq!(wal.last_term(), term + 1, "{what}");
    }
}

#[test]
fn reset_drops_buffered_entries() {
    let o = opts(1 << 20);
    // Durable entries and buffered ones, the index among the buffered.
    let (disk, mut wal, _) = sixty(opts(400));
    for index in 61..=70 {
        wal.append(2, index, b"buffered");
    }
    let writes = disk.stats().writes;
    block_on(wal.reset_after(65, 2)).unwrap();
    // Only the base segment's header was written.
    assert_eq!(disk.stats().writes, writes + 1);
    assert_reset(&disk, &wal, 65, 2);
    wal.append(2, 66, b"after");
    block_on(wal.sync()).unwrap();
    drop(wal);
    disk.crash(1);
    let (_, rec) = open(&disk, opts(400));
    assert_eq!(rec.first_index, 66);
    assert_eq!(rec.entries.len(), 1);
    assert_eq!(rec.entries[0].payload, b"after");

    // Nothing durable at all, only buffered entries.
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, o);
    wal.append(1, 1, b"one");
    wal.append(1, 2, b"two");
    block_on(wal.reset_after(1, 1)).unwrap();
    assert_reset(&disk, &wal, 1, 1);
    drop(wal);
    disk.crash(2);
    let (wal, rec) = open(&disk, o);
    assert_recovered_reset(&rec, &wal, 1, 1);
}

#[test]
fn reopen_after_reset_reports_the_base() {
    let o = opts(400);
    let (disk, mut wal, _) = sixty(o);
    block_on(wal.reset_after(1000, 9)).unwrap();
    drop(wal);
    let (wal, rec) = open(&disk, o);
    assert_recovered_reset(&rec, &wal, 1000, 9);
    assert_eq!(rec.truncated_tail, None);
    drop(wal);
    for seed in 0..10 {
        disk.crash(seed);
        let (wal, rec) = open(&disk, o);
        assert_recovered_reset(&rec, &wal, 1000, 9);
        assert_eq!(disk.file_names(), wal.segment_names());
    }
    // A log that was never reset has no base.
    let (disk, wal, log) = sixty(o);
    drop(wal);
    let (_, rec) = open(&disk, o);
    assert_eq!((rec.base, rec.entries), (None, log));
}

#[test]
#[should_panic(expected = "out of order")]
fn append_after_reset_must_continue_at_index_plus_one() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    block_on(wal.reset_after(10, 2)).unwrap();
    wal.append(2, 12, b"gap");
}

#[test]
#[should_panic(expected = "below the last term")]
fn append_after_reset_must_not_go_below_the_base_term() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    block_on(wal.reset_after(10, 2)).unwrap();
    wal.append(1, 11, b"old term");
}

#[test]
#[should_panic(expected = "below the first index")]
fn truncate_after_below_the_base_panics() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    block_on(wal.reset_after(10, 2)).unwrap();
    let _ = block_on(wal.truncate_after(9));
}

#[test]
fn release_and_truncate_after_a_reset() {
    let o = opts(400);
    let (disk, mut wal, _) = sixty(o);
    block_on(wal.reset_after(100, 5)).unwrap();
    fill_term(&mut wal, 101, 200, 6, 4);
    let names = wal.segment_names();
    assert!(names.len() >= 4, "{names:?}");

    // Truncating inside the log keeps the base.
    block_on(wal.truncate_after(150)).unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (150, 6));
    // Down to the base: the term before the log is the base term.
    wal.append(6, 151, b"buffered");
    block_on(wal.truncate_after(100)).unwrap();
    assert_eq!(
        (wal.last_index(), wal.durable_index(), wal.last_term()),
        (100, 100, 5)
    );
    assert_eq!(wal.segment_names(), names[..1]);
    assert_eq!(disk.file_names(), names[..1]);
    drop(wal);
    disk.crash(3);
    let (mut wal, rec) = open(&disk, o);
    assert_recovered_reset(&rec, &wal, 100, 5);

    // Buffered-only truncation down to the base.
    wal.append(7, 101, b"a");
    wal.append(7, 102, b"b");
    block_on(wal.truncate_after(100)).unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (100, 5));

    // Release: the base segment goes once the next segment starts at or
    // below the release point, never the active one.
    let log2 = fill_term(&mut wal, 101, 200, 7, 4);
    assert_eq!(block_on(wal.release_before(101)).unwrap(), 101);
    assert_eq!(wal.segment_names()[0], names[0]);
    let first = block_on(wal.release_before(150)).unwrap();
    assert!(first > 101 && first <= 150, "{first}");
    assert!(parse_base_segment_name(&wal.segment_names()[0]).is_none());
    drop(wal);
    disk.crash(4);
    let (mut wal, rec) = open(&disk, o);
    assert_eq!(rec.base, None);
    assert_eq!(rec.first_index, first);
    assert_eq!(rec.entries, log2[(first - 101) as usize..]);

    // A reset after a release, then a second reset.
    block_on(wal.reset_after(170, 8)).unwrap();
    assert_reset(&disk, &wal, 170, 8);
    fill_term(&mut wal, 171, 230, 8, 7);
    block_on(wal.reset_after(180, 8)).unwrap();
    assert_reset(&disk, &wal, 180, 8);
    drop(wal);
    let (wal, rec) = open(&disk, o);
    assert_recovered_reset(&rec, &wal, 180, 8);
}

#[test]
fn base_segment_format_matches_documentation() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    fill_term(&mut wal, 1, 3, 1, 3);
    block_on(wal.reset_after(0x4d2, 0x2a)).unwrap();
    let want = [0x2a, 0x2b].map(|term| Entry {
        term,
        index: 0x4d3 + term - 0x2a,
        payload: vec![term as u8; 5],
    });
    for e in &want {
        wal.append(e.term, e.index, &e.payload);
    }
    block_on(wal.sync()).unwrap();
    let name = "0000000000000001-00000000000004d3-000000000000002a.wal";
    assert_eq!(base_segment_name(1, 0x4d3, 0x2a), name);
    assert_eq!(parse_base_segment_name(name), Some((1, 0x4d3, 0x2a)));
    assert_eq!(parse_segment_name(name), Some((1, 0x4d3)));
    assert_eq!(parse_base_segment_name(&segment_name(1, 0x4d3)), None);
    for bad in [
        "0000000000000001-00000000000004d3-000000000000002A.wal",
        "0000000000000001-00000000000004d3_000000000000002a.wal",
        "0000000000000001-00000000000004d3-000000000000002a.wa",
        "0000000000000001-00000000000004d3-00000000000002a.wal",
    ] {
        assert_eq!(parse_segment_name(bad), None, "{bad}");
    }
    assert_eq!(disk.file_names(), vec![name.to_string()]);
    let mut expect = base_header(1, 0x4d3, 1);
    for e in &want {
        expect.extend_from_slice(&record(1, e.term, e.index, &e.payload));
    }
    assert_eq!(disk.file_bytes(name).unwrap(), expect);
}

/// A version-2 segment header with `flags`, encoded from the documentation.
fn base_header(seq: u64, first_index: u64, flags: u32) -> Vec<u8> {
    let mut h = b"KVIKWAL".to_vec();
    h.push(2);
    h.extend_from_slice(&seq.to_le_bytes());
    h.extend_from_slice(&first_index.to_le_bytes());
    h.extend_from_slice(&flags.to_le_bytes());
    let crc = crc32c::crc32c(&h);
    h.extend_from_slice(&crc.to_le_bytes());
    assert_eq!(h.len(), SEGMENT_HEADER_BYTES);
    h
}

fn expect_corrupt(disk: &SimDisk) -> (String, String) {
    match block_on(Wal::open_with(disk.clone(), opts(1 << 20))) {
        Err(WalError::Corrupt { file, reason, .. }) => (file, reason),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok((_, rec)) => panic!("expected Corrupt, opened {rec:?}"),
    }
}

#[test]
fn a_gap_is_accepted_only_in_front_of_a_base_segment() {
    let old = entries(1, 10);
    let seg0 = segment(0, 1, &old).0;
    let old2 = entries(11, 20);
    let seg1 = segment(1, 11, &old2).0;

    // Ordinary gaps stay corruption: between ordinary segments, in front
    // of an ordinary segment after a base, and in front of a torn ordinary
    // segment.
    let disk = SimDisk::new();
    disk.put_file(&segment_name(0, 1), &seg0);
    disk.put_file(&segment_name(1, 12), &segment(1, 12, &entries(12, 13)).0);
    let (_, reason) = expect_corrupt(&disk);
    assert!(reason.contains("previous segment ends"), "{reason}");

    let disk = SimDisk::new();
    let base = base_segment_name(2, 101, 4);
    let mut b = base_header(2, 101, 1);
    b.extend_from_slice(&record(1, 4, 101, b"x"));
    disk.put_file(&base, &b);
    disk.put_file(&segment_name(3, 103), &segment(3, 103, &[]).0);
    let (file, reason) = expect_corrupt(&disk);
    assert_eq!(file, segment_name(3, 103));
    assert!(reason.contains("previous segment ends"), "{reason}");

    let disk = SimDisk::new();
    disk.put_file(&segment_name(0, 1), &seg0);
    disk.put_file(&segment_name(1, 40), &segment_header(1, 40)[..9]);
    let (_, reason) = expect_corrupt(&disk);
    assert!(reason.contains("previous segment ends"), "{reason}");

    // A gap in front of a base segment: the leftovers in front of it are
    // not even read (here one has a gap of its own and one is garbage),
    // and are removed durably.
    let disk = SimDisk::new();
    disk.put_file(&segment_name(0, 1), &seg0);
    disk.put_file(&segment_name(2, 30), b"garbage");
    let mut b = base_header(3, 101, 1);
    b.extend_from_slice(&record(1, 4, 101, b"x"));
    disk.put_file(&base_segment_name(3, 101, 4), &b);
    let (wal, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.base, Some((100, 4)));
    assert_eq!(rec.first_index, 101);
    assert_eq!(rec.entries.len(), 1);
    assert_eq!(
        rec.leftovers_removed,
        vec![segment_name(0, 1), segment_name(2, 30)]
    );
    assert_eq!(wal.stats().segments_removed, 2);
    disk.crash(5);
    assert_eq!(disk.file_names(), vec![base_segment_name(3, 101, 4)]);

    // Two base segments: the newest wins, the older one and its
    // successors are leftovers.
    let disk = SimDisk::new();
    disk.put_file(&base_segment_name(0, 1, 0), &base_header(0, 1, 1));
    disk.put_file(&segment_name(1, 11), &seg1);
    disk.put_file(&base_segment_name(2, 6, 3), &base_header(2, 6, 1));
    let (wal, rec) = open(&disk, opts(1 << 20));
    assert_recovered_reset(&rec, &wal, 5, 3);
    assert_eq!(rec.leftovers_removed.len(), 2);

    // The first entry after a base must not have a lower term.
    let disk = SimDisk::new();
    let mut b = base_header(0, 8, 1);
    b.extend_from_slice(&record(1, 2, 8, b"x"));
    disk.put_file(&base_segment_name(0, 8, 3), &b);
    let (_, reason) = expect_corrupt(&disk);
    assert!(reason.contains("below the previous term"), "{reason}");
}

#[test]
fn base_header_must_agree_with_the_name() {
    let base = base_segment_name(1, 50, 2);
    // Segment 0 holds entries 1..=3; segment 1 is `name` with `header`
    // and one entry, `first`.
    let with = |name: &str, first: u64, header: Vec<u8>| {
        let disk = SimDisk::new();
        disk.put_file(&segment_name(0, 1), &segment(0, 1, &entries(1, 3)).0);
        let mut b = header;
        b.extend_from_slice(&record(1, 2, first, b"x"));
        disk.put_file(name, &b);
        disk
    };
    // Base name, ordinary header; ordinary name, base header; a base
    // header without the flag; an unknown flag.
    let ordinary = "says an ordinary segment";
    let cases = [
        (base.clone(), 50, segment_header(1, 50), ordinary),
        (segment_name(1, 4), 4, base_header(1, 4, 1), "says a base"),
        (base.clone(), 50, base_header(1, 50, 0), ordinary),
        (base.clone(), 50, base_header(1, 50, 3), "flags"),
    ];
    for (name, first, header, want) in cases {
        let disk = with(&name, first, header);
        let before = disk.file_names();
        let (file, reason) = expect_corrupt(&disk);
        assert_eq!(file, name);
        assert!(reason.contains(want), "{reason}");
        // Nothing was removed on the way to the refusal.
        assert_eq!(disk.file_names(), before);
    }
    // A base segment with a damaged header and records is corruption, and
    // the leftovers in front of it stay.
    let mut h = base_header(1, 50, 1);
    h[30] ^= 1;
    let disk = with(&base, 50, h);
    let before = disk.file_names();
    let (file, _) = expect_corrupt(&disk);
    assert_eq!(file, base);
    assert_eq!(disk.file_names(), before);
}

#[test]
fn torn_base_header_completes_the_reset() {
    let seg0 = segment(0, 1, &entries(1, 10)).0;
    let base = base_segment_name(1, 21, 6);
    let header = base_header(1, 21, 1);
    for cut in 0..SEGMENT_HEADER_BYTES {
        let disk = SimDisk::new();
        disk.put_file(&segment_name(0, 1), &seg0);
        disk.put_file(&base, &header[..cut]);
        let (mut wal, rec) = open(&disk, opts(1 << 20));
        assert_recovered_reset(&rec, &wal, 20, 6);
        assert_eq!(rec.truncated_tail.as_ref().unwrap().file, base);
        assert_eq!(rec.leftovers_removed, vec![segment_name(0, 1)]);
        assert_eq!(disk.file_bytes(&base).unwrap(), header);
        wal.append(6, 21, b"x");
        block_on(wal.sync()).unwrap();
        drop(wal);
        disk.crash(cut as u64);
        let (_, rec) = open(&disk, opts(1 << 20));
        assert_eq!((rec.first_index, rec.last_index), (21, 21));
    }
}

#[test]
fn reset_failure_poisons_the_wal() {
    let o = opts(400);
    let (disk, mut wal, log) = sixty(o);
    disk.fail_next_sync(); // the base header's sync
    let err = block_on(wal.reset_after(30, 2)).unwrap_err();
    assert!(
        matches!(
            err,
            WalError::Io {
                op: "sync_data",
                ..
            }
        ),
        "{err}"
    );
    assert!(wal.is_poisoned());
    let mutations = disk.stats().mutations;
    assert!(matches!(
        block_on(wal.reset_after(30, 2)),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(
        block_on(wal.sync()),
        Err(WalError::Poisoned { .. })
    ));
    assert_eq!(disk.stats().mutations, mutations, "never retried");
    drop(wal);
    let mut seen = [false; 2];
    for seed in 0..20 {
        let (disk, mut wal, _) = sixty(o);
        disk.fail_next_sync();
        block_on(wal.reset_after(30, 2)).unwrap_err();
        drop(wal);
        disk.crash(seed);
        let (mut wal, rec) = open(&disk, o);
        if rec.base.is_some() {
            assert_recovered_reset(&rec, &wal, 30, 2);
            seen[1] = true;
        } else {
            assert_eq!(rec.entries, log, "seed {seed}");
            seen[0] = true;
        }
        block_on(wal.reset_after(30, 2)).unwrap();
        assert_reset(&disk, &wal, 30, 2);
    }
    assert_eq!(seen, [true, true]);
}

#[test]
fn a_reset_dropped_mid_way_poisons_the_wal() {
    use std::future::Future;
    use std::task::{Context, Waker};

    let (disk, mut wal, _) = sixty(opts(400));
    disk.set_yield_each_op(true);
    {
        let mut fut = std::pin::pin!(wal.reset_after(30, 2));
        let mut cx = Context::from_waker(Waker::noop());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert!(wal.is_poisoned());
    match block_on(wal.reset_after(30, 2)) {
        Err(WalError::Poisoned { cause }) => assert!(cause.contains("cancelled"), "{cause}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}

/// One starting log for the crash test.
struct Shape {
    what: &'static str,
    build: fn(&SimDisk, WalOptions) -> Wal<SimDisk>,
    index: u64,
    term: u64,
}

fn shapes() -> Vec<Shape> {
    fn multi(disk: &SimDisk, o: WalOptions) -> Wal<SimDisk> {
        let (mut wal, _) = open(disk, o);
        fill_term(&mut wal, 1, 60, 1, 5);
        wal
    }
    fn released(disk: &SimDisk, o: WalOptions) -> Wal<SimDisk> {
        let mut wal = multi(disk, o);
        block_on(wal.release_before(40)).unwrap();
        wal
    }
    fn buffered(disk: &SimDisk, o: WalOptions) -> Wal<SimDisk> {
        let mut wal = multi(disk, o);
        for index in 61..=70 {
            wal.append(2, index, b"buffered");
        }
        wal
    }
    fn reset_before(disk: &SimDisk, o: WalOptions) -> Wal<SimDisk> {
        let mut wal = multi(disk, o);
        block_on(wal.reset_after(200, 3)).unwrap();
        fill_term(&mut wal, 201, 240, 3, 4);
        wal
    }
    fn fresh(disk: &SimDisk, o: WalOptions) -> Wal<SimDisk> {
        open(disk, o).0
    }
    vec![
        Shape {
            what: "index inside a multi-segment log",
            build: multi,
            index: 30,
            term: 2,
        },
        Shape {
            what: "index beyond the end",
            build: multi,
            index: 500,
            term: 4,
        },
        Shape {
            what: "index below a released prefix",
            build: released,
            index: 10,
            term: 1,
        },
        Shape {
            what: "index among buffered entries",
            build: buffered,
            index: 65,
            term: 2,
        },
        Shape {
            what: "a log that was reset before",
            build: reset_before,
            index: 220,
            term: 3,
        },
        Shape {
            what: "a new empty log",
            build: fresh,
            index: 0,
            term: 0,
        },
        Shape {
            what: "a new empty log, index ahead",
            build: fresh,
            index: 9,
            term: 5,
        },
    ]
}

/// Mutating storage operations before a reset is durable: create, write
/// and sync the base segment's header, sync the directory.
const COMMIT_OPS: u64 = 4;

/// The log as durable before the reset: `(first_index, entries, base)`.
type OldLog = (u64, Vec<Entry>, Option<(u64, u64)>);

/// Opens after a crash, cutting the power during recovery at `cut` (then
/// crashing and opening again).
fn recover(
    disk: &SimDisk,
    o: WalOptions,
    cut: Option<u64>,
    seed: u64,
) -> (Wal<SimDisk>, Recovered) {
    disk.crash(seed);
    if let Some(cut) = cut {
        disk.cut_power_after(cut);
        match block_on(Wal::open_with(disk.clone(), o)) {
            Ok(r) => {
                assert!(!disk.is_powered_off(), "open succeeded on a cut disk");
                disk.cut_power_after(u64::MAX);
                return r;
            }
            Err(e) => assert!(disk.is_powered_off(), "open failed: {e}"),
        }
        disk.crash(seed ^ 0x5555);
    }
    block_on(Wal::open_with(disk.clone(), o)).unwrap_or_else(|e| panic!("open failed: {e}"))
}

/// Runs one reset with the power cut after `cut` operations (or not at all
/// if the reset needs fewer), crashes, recovers and checks the result.
/// Returns whether the new log was recovered.
fn crash_during_reset(
    shape: &Shape,
    o: WalOptions,
    cut: u64,
    recovery_cut: Option<u64>,
    seed: u64,
) -> Result<bool, String> {
    let (index, term) = (shape.index, shape.term);
    // The durable log, from an identical copy (reopening drops buffered
    // entries, which must never reach the disk).
    let old: OldLog = {
        let disk = SimDisk::new();
        drop((shape.build)(&disk, o));
        let (_, rec) = open(&disk, o);
        (rec.first_index, rec.entries, rec.base)
    };
    let disk = SimDisk::new();
    let mut wal = (shape.build)(&disk, o);
    disk.cut_power_after(cut);
    let done = match block_on(wal.reset_after(index, term)) {
        Ok(()) => {
            if disk.is_powered_off() {
                return Err("reset succeeded on a cut disk".into());
            }
            disk.cut_power_after(u64::MAX);
            true
        }
        Err(e) => {
            if !disk.is_powered_off() {
                return Err(format!("reset failed without a power cut: {e}"));
            }
            if !wal.is_poisoned() {
                return Err("a failed reset left the WAL usable".into());
            }
            false
        }
    };
    drop(wal);
    let (mut wal, rec) = recover(&disk, o, recovery_cut, seed);
    let is_new = rec.base == Some((index, term))
        && rec.entries.is_empty()
        && (rec.first_index, rec.last_index) == (index + 1, index)
        && wal.last_term() == term
        && disk.file_names() == wal.segment_names()
        && wal.segment_names().len() == 1;
    let is_old = (rec.first_index, &rec.entries, rec.base) == (old.0, &old.1, old.2);
    if !is_new && !is_old {
        return Err(format!(
            "recovered neither log: first {} last {} base {:?}, {} entries, files {:?}",
            rec.first_index,
            rec.last_index,
            rec.base,
            rec.entries.len(),
            disk.file_names()
        ));
    }
    if (done || cut >= COMMIT_OPS) && !is_new {
        return Err("the old log came back after the reset was durable".into());
    }
    // The reset can always be done (again).
    block_on(wal.reset_after(index, term)).map_err(|e| format!("second reset: {e}"))?;
    wal.append(term + 1, index + 1, b"next");
    block_on(wal.sync()).map_err(|e| format!("sync after reset: {e}"))?;
    drop(wal);
    disk.crash(seed + 1);
    let (_, rec) = block_on(Wal::open_with(disk.clone(), o)).map_err(|e| e.to_string())?;
    if (rec.first_index, rec.last_index, rec.base) != (index + 1, index + 1, Some((index, term))) {
        return Err(format!("after the second reset: {rec:?}"));
    }
    Ok(is_new && !is_old)
}

#[test]
fn crash_at_every_step_of_a_reset_recovers_the_old_or_the_new_log() {
    let o = opts(400);
    let mut runs = 0;
    for shape in shapes() {
        // Operations of a full reset of this shape.
        let ops = {
            let disk = SimDisk::new();
            let mut wal = (shape.build)(&disk, o);
            let before = disk.stats().mutations;
            block_on(wal.reset_after(shape.index, shape.term)).unwrap();
            disk.stats().mutations - before
        };
        assert!(ops >= COMMIT_OPS, "{}", shape.what);
        let (mut old, mut new) = (0, 0);
        for cut in 0..=ops {
            for recovery_cut in [None, Some(0), Some(1), Some(2), Some(3), Some(5)] {
                for seed in 0..6 {
                    runs += 1;
                    match crash_during_reset(&shape, o, cut, recovery_cut, seed) {
                        Ok(true) => new += 1,
                        Ok(false) => old += 1,
                        Err(msg) => panic!(
                            "{}: power cut after {cut} of {ops} operations, recovery cut \
                             {recovery_cut:?}, seed {seed}: {msg}",
                            shape.what
                        ),
                    }
                }
            }
        }
        println!(
            "{}: {ops} operations, old log {old}, new log {new}",
            shape.what
        );
        // Both outcomes really happen.
        assert!(old > 0 && new > 0, "{}: old {old}, new {new}", shape.what);
    }
    println!("{runs} crashes during resets");
}
