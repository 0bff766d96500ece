//! WAL behaviour: round trips, group commit, recovery rules, poisoning,
//! release and truncation.

mod common;

use common::*;
use raftlog::sim::block_on;
use raftlog::sim::SimDisk;
use raftlog::wal::{parse_segment_name, segment_name};
use raftlog::{
    Entry, StorageFile, TornTail, Wal, WalError, RECORD_HEADER_BYTES, SEGMENT_HEADER_BYTES,
};

const SEG0: &str = "0000000000000000-0000000000000001.wal";

fn expect_corrupt(disk: &SimDisk) -> (String, u64, String) {
    match block_on(Wal::open_with(disk.clone(), opts(1 << 20))) {
        Err(WalError::Corrupt {
            file,
            offset,
            reason,
        }) => (file, offset, reason),
        Err(e) => panic!("expected Corrupt, got {e}"),
        Ok((_, rec)) => panic!(
            "expected Corrupt, opened with {} entries",
            rec.entries.len()
        ),
    }
}

#[test]
fn empty_wal_is_created_durably() {
    let disk = SimDisk::new();
    let (wal, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.entries, vec![]);
    assert_eq!((rec.first_index, rec.last_index), (1, 0));
    assert_eq!(rec.truncated_tail, None);
    assert_eq!(wal.segment_names(), vec![SEG0.to_string()]);
    drop(wal);
    disk.crash(7);
    assert_eq!(disk.file_names(), vec![SEG0.to_string()]);
    let (_, rec) = open(&disk, opts(1 << 20));
    assert_eq!((rec.first_index, rec.last_index), (1, 0));
}

#[test]
fn format_matches_documentation() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    let want = entries(1, 5);
    for e in &want {
        wal.append(e.term, e.index, &e.payload);
    }
    block_on(wal.sync()).unwrap();
    assert_eq!(disk.file_bytes(SEG0).unwrap(), segment(0, 1, &want).0);
    assert_eq!(
        segment_name(0x12, 0x4d3),
        "0000000000000012-00000000000004d3.wal"
    );
    assert_eq!(
        parse_segment_name("0000000000000012-00000000000004d3.wal"),
        Some((0x12, 0x4d3))
    );
    assert_eq!(
        parse_segment_name("0000000000000012-00000000000004D3.wal"),
        None
    );
    assert_eq!(
        parse_segment_name("0000000000000012-00000000000004d3.wal.tmp"),
        None
    );
}

#[test]
fn round_trip_across_segments() {
    let disk = SimDisk::new();
    let o = opts(512);
    let (mut wal, _) = open(&disk, o);
    let mut want = Vec::new();
    let mut batches = 0;
    let mut index = 1;
    while index <= 300 {
        let n = 1 + index % 9;
        for _ in 0..n {
            let p = payload(index, (index % 70) as usize);
            wal.append(index / 50 + 1, index, &p);
            want.push(Entry {
                term: index / 50 + 1,
                index,
                payload: p,
            });
            index += 1;
        }
        assert_eq!(block_on(wal.sync()).unwrap(), index - 1);
        batches += 1;
    }
    let stats = wal.stats();
    assert_eq!(stats.syncs, batches);
    assert_eq!(stats.entries_synced, index - 1);
    // One fsync per batch plus one per segment header.
    assert_eq!(stats.fsyncs, batches + stats.segments_created);
    let names = wal.segment_names();
    assert!(names.len() >= 5, "only {} segments", names.len());
    for (seq, name) in names.iter().enumerate() {
        let (s, first) = parse_segment_name(name).unwrap();
        assert_eq!(s, seq as u64);
        let bytes = disk.file_bytes(name).unwrap();
        // A segment only exceeds the limit by its last batch.
        if seq + 1 < names.len() {
            assert!(bytes.len() >= 512, "{name} closed early");
        }
        let first_entry = &want[(first - 1) as usize];
        assert_eq!(first_entry.index, first);
    }
    drop(wal);

    // Reopen without a crash, then after a crash: all synced, all present.
    let (_, rec) = open(&disk, o);
    assert_eq!(rec.entries, want);
    assert_eq!(rec.truncated_tail, None);
    for seed in 0..20 {
        disk.crash(seed);
        let (wal, rec) = open(&disk, o);
        assert_eq!(rec.entries, want, "seed {seed}");
        assert_eq!(wal.last_index(), index - 1);
        assert_eq!(wal.durable_index(), index - 1);
    }
}

#[test]
fn group_commit_is_one_write_and_one_fsync() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    let before = disk.stats();
    for index in 1..=100 {
        wal.append(3, index, &payload(index, 100));
    }
    assert_eq!(wal.last_index(), 100);
    assert_eq!(wal.durable_index(), 0);
    assert_eq!(disk.stats(), before, "append does no I/O");
    assert_eq!(block_on(wal.sync()).unwrap(), 100);
    let after = disk.stats();
    assert_eq!(after.writes - before.writes, 1);
    assert_eq!(after.data_syncs - before.data_syncs, 1);
    assert_eq!(after.dir_syncs, before.dir_syncs);
    assert_eq!(wal.durable_index(), 100);
    // An empty sync does nothing.
    assert_eq!(block_on(wal.sync()).unwrap(), 100);
    assert_eq!(disk.stats(), after);
}

#[test]
#[should_panic(expected = "out of order")]
fn append_with_a_gap_panics() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    wal.append(1, 1, b"a");
    wal.append(1, 3, b"c");
}

#[test]
#[should_panic(expected = "below the last term")]
fn append_with_a_lower_term_panics() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    wal.append(2, 1, b"a");
    wal.append(1, 2, b"b");
}

/// Writes segment 0 holding entries 1..=10 plus `tail` bytes, opens it and
/// checks the tail was cut at record 11's offset; then appends more.
fn check_torn_tail(tail: &[u8]) {
    let want = entries(1, 10);
    let (mut bytes, _) = segment(0, 1, &want);
    let cut = bytes.len() as u64;
    bytes.extend_from_slice(tail);
    let disk = SimDisk::new();
    disk.put_file(SEG0, &bytes);
    let (wal, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.entries, want);
    assert_eq!(
        rec.truncated_tail,
        Some(TornTail {
            file: SEG0.into(),
            offset: cut,
            bytes_dropped: tail.len() as u64,
        })
    );
    assert_eq!(disk.file_bytes(SEG0).unwrap().len() as u64, cut);
    // The truncation is durable.
    disk.crash(1);
    assert_eq!(disk.file_bytes(SEG0).unwrap().len() as u64, cut);
    drop(wal);
    let (mut wal, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.truncated_tail, None);
    let mut all = want.clone();
    for index in 11..=20 {
        let e = Entry {
            term: 9,
            index,
            payload: payload(index, 33),
        };
        wal.append(e.term, index, &e.payload);
        all.push(e);
        if index % 3 == 0 {
            block_on(wal.sync()).unwrap();
        }
    }
    block_on(wal.sync()).unwrap();
    drop(wal);
    disk.crash(2);
    let (_, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.entries, all);
    assert_eq!(rec.truncated_tail, None);
}

#[test]
fn torn_tail_is_truncated_and_appends_continue() {
    let next = record(1, 9, 11, &payload(11, 30));
    check_torn_tail(&next[..10]); // short header
    check_torn_tail(&next[..RECORD_HEADER_BYTES + 5]); // short payload
    let mut bad = next.clone();
    *bad.last_mut().unwrap() ^= 0x40; // full length, bad checksum
    check_torn_tail(&bad);
    check_torn_tail(&[0; 100]); // zeros (e.g. a lost write past a size update)
    let mut garbage = next[..40].to_vec(); // torn prefix then garbage
    garbage.extend((0..200u32).map(|i| (i * 97 + 13) as u8));
    check_torn_tail(&garbage);
}

/// Encodes a flip of bit `bit` at byte `at` of the 10-entry segment.
fn flipped_segment(at: u64, bit: u8) -> (SimDisk, Vec<u64>, Vec<Entry>) {
    let want = entries(1, 10);
    let (bytes, offsets) = segment(0, 1, &want);
    let disk = SimDisk::new();
    disk.put_file(SEG0, &bytes);
    disk.flip_bit(SEG0, at, bit);
    (disk, offsets, want)
}

#[test]
fn flipped_bit_in_a_middle_record_is_corruption_at_its_offset() {
    let want = entries(1, 10);
    let (bytes, offsets) = segment(0, 1, &want);
    // Every byte of every record but the last, one bit each.
    for k in 0..9 {
        let start = offsets[k];
        let end = offsets[k + 1];
        for at in start..end {
            let bit = (at % 8) as u8;
            let (disk, _, _) = flipped_segment(at, bit);
            let (file, offset, reason) = expect_corrupt(&disk);
            assert_eq!(file, SEG0, "byte {at}");
            assert_eq!(offset, start, "byte {at} of record {}: {reason}", k + 1);
            let msg = WalError::Corrupt {
                file: file.clone(),
                offset,
                reason,
            }
            .to_string();
            assert!(
                msg.contains(SEG0) && msg.contains(&format!("offset {start}")),
                "{msg}"
            );
        }
    }
    assert_eq!(
        bytes.len() as u64,
        offsets[9] + RECORD_HEADER_BYTES as u64 + want[9].payload.len() as u64
    );
}

#[test]
fn flipped_bit_in_the_last_record_is_a_torn_tail() {
    // The rule: a damaged record with no valid record after it is a torn
    // tail, whatever caused the damage.
    let want = entries(1, 10);
    let (bytes, offsets) = segment(0, 1, &want);
    for at in offsets[9]..bytes.len() as u64 {
        let (disk, _, _) = flipped_segment(at, (at % 8) as u8);
        let (_, rec) = open(&disk, opts(1 << 20));
        assert_eq!(rec.entries, want[..9], "byte {at}");
        let torn = rec.truncated_tail.expect("torn tail");
        assert_eq!(
            (torn.file.as_str(), torn.offset),
            (SEG0, offsets[9]),
            "byte {at}"
        );
    }
}

#[test]
fn damage_in_a_segment_that_is_not_the_last_is_corruption() {
    let disk = SimDisk::new();
    let o = opts(400);
    let (mut wal, _) = open(&disk, o);
    fill(&mut wal, 1, 60, 4);
    let names = wal.segment_names();
    assert!(names.len() >= 3);
    drop(wal);
    let pristine: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.clone(), disk.file_bytes(n).unwrap()))
        .collect();
    let restore = || {
        for (n, b) in &pristine {
            disk.put_file(n, b);
        }
    };

    // The last record of the first segment: nothing follows in that file,
    // but it is not the last segment.
    let first = &pristine[0];
    let (_, first_index) = parse_segment_name(&first.0).unwrap();
    let second_first = parse_segment_name(&pristine[1].0).unwrap().1;
    let seg_entries: Vec<Entry> = (first_index..second_first)
        .map(|i| Entry {
            term: 1,
            index: i,
            payload: payload(i, (i % 50) as usize),
        })
        .collect();
    let (rebuilt, offsets) = segment(0, first_index, &seg_entries);
    assert_eq!(rebuilt, first.1);
    let last_off = *offsets.last().unwrap();
    disk.flip_bit(&first.0, last_off + RECORD_HEADER_BYTES as u64, 2);
    let (file, offset, _) = expect_corrupt(&disk);
    assert_eq!((file.as_str(), offset), (first.0.as_str(), last_off));

    // Truncating a middle segment is corruption too.
    restore();
    let mid = &pristine[1];
    disk.put_file(&mid.0, &mid.1[..mid.1.len() - 3]);
    let (file, _, _) = expect_corrupt(&disk);
    assert_eq!(file, mid.0);

    // Bad magic in a middle segment and in the last segment (which has
    // records): corruption naming the file, offset 0.
    for victim in [1, names.len() - 1] {
        restore();
        disk.flip_bit(&names[victim], 3, 0);
        let (file, offset, reason) = expect_corrupt(&disk);
        assert_eq!(
            (file.as_str(), offset),
            (names[victim].as_str(), 0),
            "{reason}"
        );
        restore();
        disk.flip_bit(&names[victim], 20, 5); // first index field: checksum
        let (file, offset, _) = expect_corrupt(&disk);
        assert_eq!((file.as_str(), offset), (names[victim].as_str(), 0));
    }

    // A missing middle segment is a gap.
    restore();
    let gapped = SimDisk::new();
    for (i, (n, b)) in pristine.iter().enumerate() {
        if i != 1 {
            gapped.put_file(n, b);
        }
    }
    let (file, _, reason) = expect_corrupt(&gapped);
    assert_eq!(file, names[2], "{reason}");
    assert!(reason.contains("previous segment ends"), "{reason}");

    restore();
    let (_, rec) = open(&disk, o);
    assert_eq!(rec.last_index, 60);
}

#[test]
fn checksum_valid_but_inconsistent_records_are_corruption() {
    // (case, records as (type, term, index), position of the bad record)
    type Case = (&'static str, Vec<(u8, u64, u64)>, usize);
    let cases: Vec<Case> = vec![
        ("gap", vec![(1, 1, 1), (1, 1, 2), (1, 1, 4), (1, 1, 5)], 2),
        ("backwards", vec![(1, 1, 1), (1, 1, 2), (1, 1, 2)], 2),
        ("wrong first", vec![(1, 1, 2)], 0),
        ("term decreases", vec![(1, 2, 1), (1, 3, 2), (1, 2, 3)], 2),
        ("unknown type", vec![(1, 1, 1), (7, 1, 2)], 1),
        ("reserved type", vec![(1, 1, 1), (2, 1, 2), (1, 1, 3)], 1),
    ];
    for (what, recs, bad) in cases {
        let mut bytes = segment_header(0, 1);
        let mut offsets = Vec::new();
        for (t, term, index) in &recs {
            offsets.push(bytes.len() as u64);
            bytes.extend_from_slice(&record(*t, *term, *index, b"xyz"));
        }
        let disk = SimDisk::new();
        disk.put_file(SEG0, &bytes);
        let (file, offset, reason) = expect_corrupt(&disk);
        assert_eq!(
            (file.as_str(), offset),
            (SEG0, offsets[bad]),
            "{what}: {reason}"
        );
    }

    // Header consistent in itself but not with its name.
    let disk = SimDisk::new();
    let mut bytes = segment_header(0, 5);
    bytes.extend_from_slice(&record(1, 1, 5, b""));
    disk.put_file(SEG0, &bytes);
    let (_, offset, reason) = expect_corrupt(&disk);
    assert_eq!(offset, 0);
    assert!(reason.contains("file name"), "{reason}");
    // Future format version.
    let mut h = segment_header(0, 1);
    h[7] = 3;
    let crc = crc32c::crc32c(&h[..28]);
    h[28..].copy_from_slice(&crc.to_le_bytes());
    disk.put_file(SEG0, &h);
    let (_, _, reason) = expect_corrupt(&disk);
    assert!(reason.contains("version"), "{reason}");
}

#[test]
fn torn_header_of_a_new_last_segment_is_rewritten() {
    let want = entries(1, 10);
    let (seg0, _) = segment(0, 1, &want);
    let seg1 = segment_name(1, 11);
    let header = segment_header(1, 11);
    for cut in 0..SEGMENT_HEADER_BYTES {
        let disk = SimDisk::new();
        disk.put_file(SEG0, &seg0);
        let mut torn = header[..cut].to_vec();
        torn.resize(cut, 0);
        disk.put_file(&seg1, &torn);
        let (mut wal, rec) = open(&disk, opts(1 << 20));
        assert_eq!(rec.entries, want);
        assert_eq!(
            rec.truncated_tail,
            Some(TornTail {
                file: seg1.clone(),
                offset: 0,
                bytes_dropped: cut as u64,
            })
        );
        assert_eq!(disk.file_bytes(&seg1).unwrap(), header);
        wal.append(5, 11, b"eleven");
        block_on(wal.sync()).unwrap();
        drop(wal);
        disk.crash(cut as u64);
        let (_, rec) = open(&disk, opts(1 << 20));
        assert_eq!(rec.last_index, 11);
    }
    // A damaged header with records after it is corruption even in the last
    // segment (headers are synced before any record is written).
    let disk = SimDisk::new();
    disk.put_file(SEG0, &seg0);
    let mut bad = header.clone();
    bad[0] = b'X';
    bad.extend_from_slice(&record(1, 5, 11, b"eleven"));
    disk.put_file(&seg1, &bad);
    let (file, offset, _) = expect_corrupt(&disk);
    assert_eq!((file, offset), (seg1.clone(), 0));
    // As is a torn header with a gap before it.
    let disk = SimDisk::new();
    disk.put_file(SEG0, &seg0);
    disk.put_file(&segment_name(1, 12), &[]);
    let (_, _, reason) = expect_corrupt(&disk);
    assert!(reason.contains("previous segment ends"), "{reason}");
}

#[test]
fn fsync_failure_poisons_the_wal() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    fill(&mut wal, 1, 5, 5);
    wal.append(1, 6, b"six");
    disk.fail_next_sync();
    let err = block_on(wal.sync()).unwrap_err();
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
    assert_eq!(wal.durable_index(), 5);
    let mutations = disk.stats().mutations;
    // Never retried: every later call fails without touching the disk.
    for _ in 0..3 {
        let err = block_on(wal.sync()).unwrap_err();
        assert!(matches!(err, WalError::Poisoned { .. }), "{err}");
        assert!(err.to_string().contains("fsync"), "{err}");
    }
    wal.append(1, 7, b"seven");
    assert!(matches!(
        block_on(wal.sync()),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(
        block_on(wal.release_before(3)),
        Err(WalError::Poisoned { .. })
    ));
    assert!(matches!(
        block_on(wal.truncate_after(2)),
        Err(WalError::Poisoned { .. })
    ));
    assert_eq!(disk.stats().mutations, mutations);
    assert_eq!(wal.durable_index(), 5);

    // Reopening recovers at least everything acknowledged.
    drop(wal);
    disk.crash(3);
    let (_, rec) = open(&disk, opts(1 << 20));
    assert!(rec.last_index >= 5);
    assert_eq!(rec.entries[..5], fill_model(1, 5)[..]);
}

fn fill_model(from: u64, to: u64) -> Vec<Entry> {
    (from..=to)
        .map(|index| Entry {
            term: 1,
            index,
            payload: payload(index, (index % 50) as usize),
        })
        .collect()
}

#[test]
fn write_failure_poisons_the_wal() {
    let disk = SimDisk::new();
    let (mut wal, _) = open(&disk, opts(1 << 20));
    fill(&mut wal, 1, 5, 2);
    wal.append(1, 6, b"six");
    disk.fail_next_write();
    let err = block_on(wal.sync()).unwrap_err();
    assert!(matches!(err, WalError::Io { op: "write", .. }), "{err}");
    assert!(matches!(
        block_on(wal.sync()),
        Err(WalError::Poisoned { .. })
    ));
    drop(wal);
    let (_, rec) = open(&disk, opts(1 << 20));
    assert_eq!(rec.entries, fill_model(1, 5));
}

#[test]
fn failure_while_rolling_a_segment_poisons_and_recovers() {
    let disk = SimDisk::new();
    let o = opts(300);
    let (mut wal, _) = open(&disk, o);
    fill(&mut wal, 1, 20, 20); // one big batch: the segment is now full
    assert_eq!(wal.segment_names().len(), 1);
    wal.append(1, 21, b"x");
    disk.fail_next_sync(); // the new segment's header sync
    assert!(block_on(wal.sync()).is_err());
    assert!(wal.is_poisoned());
    drop(wal);
    for seed in 0..10 {
        disk.crash(seed);
        let (_, rec) = open(&disk, o);
        assert_eq!(rec.entries, fill_model(1, 20), "seed {seed}");
    }
}

#[test]
fn release_before_removes_whole_old_segments() {
    let disk = SimDisk::new();
    let o = opts(500);
    let (mut wal, _) = open(&disk, o);
    let all = fill(&mut wal, 1, 200, 7);
    let names = wal.segment_names();
    assert!(names.len() > 4);
    assert_eq!(block_on(wal.release_before(1)).unwrap(), 1);
    let first = block_on(wal.release_before(100)).unwrap();
    assert!(first <= 100 && first > 1, "first {first}");
    let kept = wal.segment_names();
    assert_eq!(
        kept[0],
        names
            .iter()
            .find(|n| parse_segment_name(n).unwrap().1 == first)
            .unwrap()
            .clone()
    );
    assert_eq!(disk.file_names(), kept);
    assert_eq!(wal.first_index(), first);
    assert!(wal.stats().segments_removed > 0);
    // Appends continue after a release.
    let more = fill(&mut wal, 201, 230, 4);
    drop(wal);
    disk.crash(9);
    let (mut wal, rec) = open(&disk, o);
    assert_eq!(rec.first_index, first);
    let mut want = all[(first - 1) as usize..].to_vec();
    want.extend(more);
    assert_eq!(rec.entries, want);
    // The active segment is never removed.
    let last = block_on(wal.release_before(231)).unwrap();
    assert_eq!(wal.segment_names().len(), 1);
    drop(wal);
    let (_, rec) = open(&disk, o);
    assert_eq!(rec.first_index, last);
    assert_eq!(rec.last_index, 230);
}

#[test]
fn truncate_after_buffered_and_durable() {
    let o = opts(400);
    // Start each case from the same 100-entry log.
    let fresh = || {
        let disk = SimDisk::new();
        let (mut wal, _) = open(&disk, o);
        let log = fill(&mut wal, 1, 100, 6);
        (disk, wal, log)
    };
    let check = |disk: &SimDisk, want: &[Entry]| {
        for seed in 0..3 {
            disk.crash(seed);
            let (_, rec) = open(disk, o);
            assert_eq!(rec.entries, want, "seed {seed}");
        }
    };
    let new_entry = |index: u64| Entry {
        term: 7,
        index,
        payload: format!("new {index}").into_bytes(),
    };

    // Buffered only.
    let (disk, mut wal, mut log) = fresh();
    for e in entries(101, 110) {
        wal.append(30, e.index, &e.payload);
    }
    block_on(wal.truncate_after(104)).unwrap();
    assert_eq!(
        (wal.last_index(), wal.durable_index(), wal.last_term()),
        (104, 100, 30)
    );
    block_on(wal.truncate_after(100)).unwrap();
    assert_eq!((wal.last_index(), wal.last_term()), (100, 1));
    for index in 101..=103 {
        let e = new_entry(index);
        wal.append(e.term, index, &e.payload);
        log.push(e);
    }
    block_on(wal.sync()).unwrap();
    drop(wal);
    check(&disk, &log);

    // Durable, inside a segment, across segments, at a segment boundary and
    // down to an empty log.
    let names = fresh().1.segment_names();
    let boundary = parse_segment_name(&names[2]).unwrap().1;
    for keep in [99, 95, 40, boundary - 1, boundary, 1, 0] {
        let (disk, mut wal, mut log) = fresh();
        wal.append(1, 101, b"buffered");
        block_on(wal.truncate_after(keep)).unwrap();
        assert_eq!(
            (wal.last_index(), wal.durable_index()),
            (keep, keep),
            "keep {keep}"
        );
        log.truncate(keep as usize);
        assert_eq!(wal.last_term(), if keep == 0 { 0 } else { 1 });
        for index in keep + 1..=keep + 5 {
            let e = new_entry(index);
            wal.append(e.term, index, &e.payload);
            log.push(e);
        }
        block_on(wal.sync()).unwrap();
        drop(wal);
        check(&disk, &log);
    }
}

#[test]
fn reopen_sees_unsynced_data_and_makes_it_durable() {
    // A process that exits without syncing leaves data in the page cache;
    // the next open must make it durable before returning it.
    for seed in 0..20 {
        let disk = SimDisk::new();
        let (mut wal, _) = open(&disk, opts(1 << 20));
        fill(&mut wal, 1, 3, 3);
        drop(wal);
        // Write entry 4 without a sync, as a crashed process would.
        let mut f = block_on(raftlog::Storage::open(&disk, SEG0)).unwrap();
        let len = block_on(f.len()).unwrap();
        let (r, _) = block_on(f.write_all_at(record(1, 1, 4, b"four"), len));
        r.unwrap();
        let (_, rec) = open(&disk, opts(1 << 20));
        assert_eq!(rec.last_index, 4);
        disk.crash(seed);
        let (_, rec) = open(&disk, opts(1 << 20));
        assert_eq!(rec.last_index, 4, "seed {seed}");
    }
}

#[test]
fn a_sync_dropped_mid_way_poisons_the_wal() {
    use std::future::Future;
    use std::task::{Context, Waker};

    let disk = SimDisk::new();
    disk.set_yield_each_op(true);
    let (mut wal, _) = open(&disk, opts(1 << 20));
    fill(&mut wal, 1, 3, 3);
    wal.append(1, 4, b"four");
    let writes = disk.stats().writes;
    {
        let mut fut = std::pin::pin!(wal.sync());
        let mut cx = Context::from_waker(Waker::noop());
        // First poll: the write yields. Second: the write is done and the
        // sync_data yields. Then the caller gives up on the future.
        assert!(fut.as_mut().poll(&mut cx).is_pending());
        assert!(fut.as_mut().poll(&mut cx).is_pending());
    }
    assert_eq!(disk.stats().writes, writes + 1);
    assert!(wal.is_poisoned());
    assert_eq!(wal.durable_index(), 3);
    match block_on(wal.sync()) {
        Err(WalError::Poisoned { cause }) => assert!(cause.contains("cancelled"), "{cause}"),
        other => panic!("expected Poisoned, got {other:?}"),
    }
}
