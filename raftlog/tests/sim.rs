//! SimDisk's own model: what survives a crash.

use std::collections::BTreeSet;

use raftlog::sim::{block_on, SimDisk};
use raftlog::{Storage, StorageFile};

fn write(f: &mut impl StorageFile, data: &[u8], pos: u64) {
    let (r, _) = block_on(f.write_all_at(data.to_vec(), pos));
    r.unwrap();
}

fn read_all(f: &impl StorageFile) -> Vec<u8> {
    let len = block_on(f.len()).unwrap() as usize;
    let (r, buf) = block_on(f.read_at(Vec::with_capacity(len), 0));
    assert_eq!(r.unwrap(), len);
    buf
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Outcome {
    Lost,
    Full,
    TornShort,
    TornFilled,
}

#[test]
fn synced_data_survives_and_unsynced_writes_are_lost_kept_or_torn() {
    let mut seen = BTreeSet::new();
    for seed in 0..200 {
        let disk = SimDisk::new();
        let mut f = block_on(disk.create("a")).unwrap();
        block_on(disk.sync_dir()).unwrap();
        write(&mut f, b"durable!", 0);
        block_on(f.sync_data()).unwrap();
        let tail: Vec<u8> = (1..=64).collect();
        write(&mut f, &tail, 8);
        disk.crash(seed);
        // Old handles are dead after a crash.
        assert!(block_on(f.len()).is_err());
        let f = block_on(disk.open("a")).unwrap();
        let got = read_all(&f);
        assert_eq!(&got[..8], b"durable!", "seed {seed}");
        let rest = &got[8..];
        let outcome = if rest.is_empty() {
            Outcome::Lost
        } else if rest == &tail[..] {
            Outcome::Full
        } else if tail.starts_with(rest) {
            Outcome::TornShort
        } else {
            assert_eq!(rest.len(), tail.len(), "seed {seed}");
            let k = rest.iter().zip(&tail).take_while(|(a, b)| a == b).count();
            assert!(k < tail.len());
            Outcome::TornFilled
        };
        seen.insert(outcome);
    }
    assert_eq!(seen.len(), 4, "{seen:?}");
}

#[test]
fn directory_changes_need_sync_dir() {
    let (mut kept, mut lost, mut undone) = (0, 0, 0);
    for seed in 0..100 {
        let disk = SimDisk::new();
        let mut a = block_on(disk.create("a")).unwrap();
        write(&mut a, b"aaa", 0);
        block_on(a.sync_data()).unwrap();
        block_on(disk.sync_dir()).unwrap();
        let mut b = block_on(disk.create("b")).unwrap();
        write(&mut b, b"bbb", 0);
        block_on(b.sync_data()).unwrap(); // data synced, entry not
        block_on(disk.remove("a")).unwrap(); // not synced either
        assert_eq!(disk.file_names(), vec!["b".to_string()]);
        disk.crash(seed);
        let names = disk.file_names();
        match disk.file_bytes("b") {
            Some(bytes) => {
                assert_eq!(bytes, b"bbb");
                kept += 1;
            }
            None => lost += 1,
        }
        if names.contains(&"a".to_string()) {
            assert_eq!(disk.file_bytes("a").unwrap(), b"aaa");
            undone += 1;
        }
    }
    assert!(kept > 0 && lost > 0 && undone > 0, "{kept} {lost} {undone}");

    // After sync_dir both changes always hold.
    for seed in 0..20 {
        let disk = SimDisk::new();
        block_on(disk.create("a")).unwrap();
        block_on(disk.sync_dir()).unwrap();
        block_on(disk.create("b")).unwrap();
        block_on(disk.remove("a")).unwrap();
        block_on(disk.sync_dir()).unwrap();
        disk.crash(seed);
        assert_eq!(disk.file_names(), vec!["b".to_string()]);
    }
}

#[test]
fn power_cut_hits_the_exact_operation_and_stops_the_disk() {
    let disk = SimDisk::new();
    let mut f = block_on(disk.create("a")).unwrap(); // op 1
    disk.cut_power_after(2);
    write(&mut f, b"x", 0); // allowed
    block_on(f.sync_data()).unwrap(); // allowed
    let (r, _) = block_on(f.write_all_at(b"y".to_vec(), 1)); // cut here
    assert!(r.is_err());
    assert!(disk.is_powered_off());
    assert!(block_on(f.sync_data()).is_err());
    assert!(block_on(disk.list()).is_err());
    assert!(block_on(disk.open("a")).is_err());
    disk.crash(0);
    assert!(!disk.is_powered_off());
    assert!(block_on(disk.list()).is_ok());
}

#[test]
fn failed_sync_makes_nothing_durable_and_flip_bit_is_durable() {
    let mut lost = 0;
    for seed in 0..50 {
        let disk = SimDisk::new();
        let mut f = block_on(disk.create("a")).unwrap();
        block_on(disk.sync_dir()).unwrap();
        write(&mut f, b"hello", 0);
        disk.fail_next_sync();
        assert!(block_on(f.sync_data()).is_err());
        disk.crash(seed);
        if disk.file_bytes("a").unwrap().is_empty() {
            lost += 1;
        }
    }
    assert!(lost > 0);

    let disk = SimDisk::new();
    disk.put_file("a", b"hello");
    disk.flip_bit("a", 1, 0);
    disk.crash(1);
    assert_eq!(disk.file_bytes("a").unwrap(), b"hdllo");
}

#[test]
fn crashes_are_deterministic_per_seed() {
    let run = |seed: u64| {
        let disk = SimDisk::new();
        let mut f = block_on(disk.create("a")).unwrap();
        for i in 0..10u8 {
            write(&mut f, &[i; 33], u64::from(i) * 33);
        }
        disk.crash(seed);
        disk.file_bytes("a")
    };
    for seed in 0..20 {
        assert_eq!(run(seed), run(seed));
    }
    assert!((0..20).any(|s| run(s) != run(s + 1)));
}
