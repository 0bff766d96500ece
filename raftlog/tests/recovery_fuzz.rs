//! Recovery on arbitrarily damaged directories: never panics, and whatever
//! it accepts is a contiguous run of the entries really written.

mod common;

use common::*;
use raftlog::sim::{block_on, SimDisk};
use raftlog::wal::{base_segment_name, segment_name};
use raftlog::{Entry, Wal};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

#[test]
fn recovery_never_panics_or_invents_entries() {
    let mut opened = 0;
    let mut refused = 0;
    for_seeds(0..1000, |seed| {
        let mut rng = StdRng::seed_from_u64(seed);
        let disk = SimDisk::new();
        let o = opts(rng.random_range(100..2000));
        let (mut wal, _) = block_on(Wal::open_with(disk.clone(), o)).map_err(|e| e.to_string())?;
        let mut written: Vec<Entry> = Vec::new();
        for index in 1..=rng.random_range(1..120) {
            let mut p = vec![0u8; rng.random_range(0..90)];
            rng.fill(&mut p[..]);
            wal.append(index / 10, index, &p);
            written.push(Entry {
                term: index / 10,
                index,
                payload: p,
            });
            if rng.random_bool(0.3) {
                block_on(wal.sync()).map_err(|e| e.to_string())?;
            }
        }
        block_on(wal.sync()).map_err(|e| e.to_string())?;
        drop(wal);

        for _ in 0..rng.random_range(1..5) {
            let names = disk.file_names();
            let name = &names[rng.random_range(0..names.len())];
            let mut bytes = disk.file_bytes(name).unwrap();
            match rng.random_range(0..7) {
                0 if !bytes.is_empty() => {
                    let at = rng.random_range(0..bytes.len());
                    bytes[at] ^= 1 << rng.random_range(0..8);
                }
                1 if !bytes.is_empty() => {
                    let at = rng.random_range(0..bytes.len());
                    let end = (at + rng.random_range(1..40)).min(bytes.len());
                    rng.fill(&mut bytes[at..end]);
                }
                2 => bytes.truncate(rng.random_range(0..=bytes.len())),
                3 => {
                    let mut g = vec![0u8; rng.random_range(1..100)];
                    rng.fill(&mut g[..]);
                    bytes.extend_from_slice(&g);
                }
                4 => {
                    // A stray file with a segment name and junk content.
                    let mut g = vec![0u8; rng.random_range(0..200)];
                    rng.fill(&mut g[..]);
                    if rng.random_bool(0.5) && g.len() >= 32 {
                        g[..32].copy_from_slice(&segment_header(rng.random_range(0..9), 1));
                    }
                    let (seq, first) = (rng.random_range(0..9), rng.random_range(0..200));
                    let n = if rng.random_bool(0.3) {
                        // A base segment: everything older is a leftover.
                        if g.len() >= 32 {
                            g[7] = 2;
                            g[24..28].copy_from_slice(&1u32.to_le_bytes());
                            let crc = crc32c::crc32c(&g[..28]);
                            g[28..32].copy_from_slice(&crc.to_le_bytes());
                        }
                        base_segment_name(seq, first, rng.random_range(0..20))
                    } else {
                        segment_name(seq, first)
                    };
                    disk.put_file(&n, &g);
                    continue;
                }
                5 => {
                    // Lengths near the limits.
                    if bytes.len() >= 36 {
                        let at = rng.random_range(32..bytes.len() - 4);
                        let v: u32 =
                            [u32::MAX, 16 << 20, (16 << 20) + 1, 0][rng.random_range(0..4)];
                        bytes[at..at + 4].copy_from_slice(&v.to_le_bytes());
                    }
                }
                _ => {
                    bytes = vec![0u8; rng.random_range(0..300)];
                    rng.fill(&mut bytes[..]);
                }
            }
            disk.put_file(name, &bytes);
        }

        match block_on(Wal::open_with(disk.clone(), o)) {
            Ok((_, rec)) => {
                opened += 1;
                for (i, e) in rec.entries.iter().enumerate() {
                    if e.index != rec.first_index + i as u64 {
                        return Err(format!("not contiguous at position {i}"));
                    }
                    match written.get((e.index as usize).wrapping_sub(1)) {
                        Some(w) if w == e => {}
                        _ => return Err(format!("entry {} was never written", e.index)),
                    }
                }
            }
            Err(e) => {
                refused += 1;
                let _ = e.to_string();
            }
        }
        Ok(())
    });
    println!("opened {opened}, refused {refused}");
    assert!(opened > 30 && refused > 300, "{opened} {refused}");
}
