//! The durable Raft hard state (term, vote, commit) of a simulated node.
//!
//! The WAL holds log entries only, so the hard state lives next to it, in a
//! file of its own on the same [`SimDisk`] (the WAL ignores files whose
//! names are not segment names). The file has two fixed-size slots written
//! alternately; each slot carries a sequence number and a checksum. An
//! update overwrites the older slot and syncs it, so a torn write can only
//! damage the slot being written, and recovery takes the valid slot with
//! the highest sequence number: the new state if its sync completed, else
//! the previous one.
//!
//! ```text
//! slot (SLOT_BYTES = 48), at offset 0 or SLOT_BYTES
//!   0..8    magic "KVIKHS01"
//!   8..16   seq     u64 LE (increases by one per update)
//!   16..24  term    u64 LE
//!   24..32  vote    u64 LE
//!   32..40  commit  u64 LE
//!   40..48  FNV-1a 64 of bytes 0..40
//! ```

use raftlog::raft::HardState;
use raftlog::sim::SimDisk;
use raftlog::{Storage, StorageFile};

use super::checker::payload_hash as fnv1a;

/// Name of the hard state file.
pub const FILE_NAME: &str = "hardstate";

const MAGIC: &[u8; 8] = b"KVIKHS01";
const SLOT_BYTES: usize = 48;

fn encode(seq: u64, hs: HardState) -> Vec<u8> {
    let mut b = Vec::with_capacity(SLOT_BYTES);
    b.extend_from_slice(MAGIC);
    for v in [seq, hs.term, hs.vote, hs.commit] {
        b.extend_from_slice(&v.to_le_bytes());
    }
    let sum = fnv1a(&b);
    b.extend_from_slice(&sum.to_le_bytes());
    b
}

fn decode(b: &[u8]) -> Option<(u64, HardState)> {
    if b.len() < SLOT_BYTES || &b[..8] != MAGIC {
        return None;
    }
    let u = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
    if fnv1a(&b[..40]) != u(40) {
        return None;
    }
    Some((
        u(8),
        HardState {
            term: u(16),
            vote: u(24),
            commit: u(32),
        },
    ))
}

/// The open hard state file of one node.
pub struct HardStateFile {
    file: <SimDisk as Storage>::File,
    seq: u64,
    last: HardState,
}

impl HardStateFile {
    /// Opens the file, creating it durably when absent, and returns the
    /// stored state (all zero for a new file). Any I/O error is returned as
    /// text: the node treats it like a crash.
    pub async fn open(disk: &SimDisk) -> Result<(HardStateFile, HardState), String> {
        let names = disk.list().await.map_err(|e| format!("list: {e}"))?;
        if !names.iter().any(|n| n == FILE_NAME) {
            let mut file = disk
                .create(FILE_NAME)
                .await
                .map_err(|e| format!("create: {e}"))?;
            file.sync_data()
                .await
                .map_err(|e| format!("sync_data: {e}"))?;
            disk.sync_dir()
                .await
                .map_err(|e| format!("sync_dir: {e}"))?;
            let hs = HardState::default();
            return Ok((
                HardStateFile {
                    file,
                    seq: 0,
                    last: hs,
                },
                hs,
            ));
        }
        let file = disk
            .open(FILE_NAME)
            .await
            .map_err(|e| format!("open: {e}"))?;
        let len = file.len().await.map_err(|e| format!("len: {e}"))? as usize;
        let (r, bytes) = file.read_at(Vec::with_capacity(len), 0).await;
        r.map_err(|e| format!("read: {e}"))?;
        let best = [0, SLOT_BYTES]
            .iter()
            .filter_map(|&off| bytes.get(off..).and_then(decode))
            .max_by_key(|(seq, _)| *seq);
        let (seq, hs) = best.unwrap_or((0, HardState::default()));
        Ok((
            HardStateFile {
                file,
                seq,
                last: hs,
            },
            hs,
        ))
    }

    /// Durably replaces the stored state (one write and one sync). Does
    /// nothing when `hs` is what is stored already.
    pub async fn save(&mut self, hs: HardState) -> Result<(), String> {
        if hs == self.last {
            return Ok(());
        }
        let seq = self.seq + 1;
        let off = if seq.is_multiple_of(2) {
            0
        } else {
            SLOT_BYTES as u64
        };
        let (r, _) = self.file.write_all_at(encode(seq, hs), off).await;
        r.map_err(|e| format!("write: {e}"))?;
        self.file
            .sync_data()
            .await
            .map_err(|e| format!("sync_data: {e}"))?;
        self.seq = seq;
        self.last = hs;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use raftlog::sim::block_on;

    fn hs(term: u64) -> HardState {
        HardState {
            term,
            vote: term % 3,
            commit: term * 2,
        }
    }

    #[test]
    fn survives_restart_and_crashes() {
        let disk = SimDisk::new();
        let (mut f, got) = block_on(HardStateFile::open(&disk)).unwrap();
        assert_eq!(got, HardState::default());
        for t in 1..=5 {
            block_on(f.save(hs(t))).unwrap();
        }
        disk.crash(1);
        let (mut f, got) = block_on(HardStateFile::open(&disk)).unwrap();
        assert_eq!(got, hs(5));
        // A crash in the middle of an update keeps the old or the new state.
        for seed in 0..200 {
            block_on(f.save(hs(6 + seed))).unwrap();
            disk.cut_power_after(seed % 2);
            let r = block_on(f.save(hs(1000 + seed)));
            disk.crash(seed);
            let (f2, got) = block_on(HardStateFile::open(&disk)).unwrap();
            assert!(
                got == hs(6 + seed) || (got == hs(1000 + seed) && r.is_err()),
                "seed {seed}: {got:?}"
            );
            f = f2;
        }
    }
}
