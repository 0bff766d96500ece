//! The state snapshot a Raft leader ships to a member that fell behind its
//! log: the leader's newest durable checkpoint, streamed as it lies on disk.
//!
//! ```text
//! magic "KVIKSNP1"
//! u32 length | the Raft message (codec bytes, body `Snapshot { meta }`)
//! u32 length | the checkpoint manifest (`engine::segment::Manifest`)
//! u32 segment count
//! per segment: u64 id | u64 length | the segment file
//! ```
//!
//! All integers are little-endian. The transport checks the length and a
//! checksum of the whole stream; every part inside carries its own crc too
//! (manifest, segment header, index block and trailer, and each record,
//! checked when read). The sender reads segments through the read-only maps
//! the store already holds, so a later checkpoint that unlinks a file does
//! not disturb a snapshot being sent.
//!
//! Receiving is [`parse`]: every length is checked against the bytes
//! received, the manifest must decode and name exactly the segments sent,
//! and it must cover the index and term the Raft message names. Nothing
//! received can make it panic. The transport assembles a snapshot in memory
//! (up to `peer::SNAPSHOT_BYTES_MAX`); receiving straight into segment files
//! is left for later.
//!
//! Installing is [`install`], in an order that a crash at any step leaves
//! either the old state or the snapshot's:
//! 1. the install marker (`raftstate::INSTALL_MARKER`, naming the index)
//!    is made durable in the WAL directory;
//! 2. `revstore::install` writes the segments under fresh ids and makes a
//!    manifest naming only them durable, then unlinks the rest;
//! 3. the WAL restarts after the snapshot's index (`Wal::reset_after`);
//! 4. the marker is removed durably.
//!
//! `Shard::open_raft` finishes steps 3 and 4 when it finds the marker and
//! the manifest is the snapshot's, and removes the marker otherwise.

use std::ops::Range;
use std::sync::Arc;

use engine::segment::{Manifest, Segment};
use engine::Mvcc;
use raftlog::raft::{self, MessageBody, SnapshotMeta};
use raftlog::{Storage, Wal};

use crate::peer::SnapshotBytes;
use crate::raftstate;
use crate::wire::{Reader, WireError};

const MAGIC: &[u8; 8] = b"KVIKSNP1";

/// Bytes handed to the transport at a time.
pub const SNAPSHOT_PIECE_BYTES: usize = 1 << 20;

/// A snapshot as received, its segments still inside `data`.
pub struct Received {
    /// The leader's message (`Snapshot { meta }`), to step into the node.
    pub message: raft::Message,
    pub meta: SnapshotMeta,
    pub manifest: Manifest,
    /// Each segment's id (as the leader named it) and its bytes in `data`.
    pub segments: Vec<(u64, Range<usize>)>,
    /// The whole stream as received (spooled to a file and mapped, or in
    /// memory).
    pub data: SnapshotBytes,
}

impl Received {
    pub fn segment_bytes(&self) -> u64 {
        self.segments.iter().map(|(_, r)| r.len() as u64).sum()
    }
}

/// The pieces of the stream for the transport: a header, then each segment
/// in [`SNAPSHOT_PIECE_BYTES`] slices of its map.
pub fn pieces(
    message: &[u8],
    manifest: &Manifest,
    segments: Vec<Arc<Segment>>,
) -> impl Iterator<Item = Vec<u8>> + Send + 'static {
    let manifest = manifest.encode();
    let mut head = Vec::with_capacity(8 + 4 + message.len() + 4 + manifest.len() + 4);
    head.extend_from_slice(MAGIC);
    head.extend_from_slice(&(message.len() as u32).to_le_bytes());
    head.extend_from_slice(message);
    head.extend_from_slice(&(manifest.len() as u32).to_le_bytes());
    head.extend_from_slice(&manifest);
    head.extend_from_slice(&(segments.len() as u32).to_le_bytes());
    let body = segments.into_iter().flat_map(|seg| {
        let len = seg.len() as usize;
        let mut prefix = Vec::with_capacity(16);
        prefix.extend_from_slice(&seg.id().to_le_bytes());
        prefix.extend_from_slice(&(len as u64).to_le_bytes());
        let slices = (0..len.div_ceil(SNAPSHOT_PIECE_BYTES)).map(move |i| {
            let from = i * SNAPSHOT_PIECE_BYTES;
            let to = (from + SNAPSHOT_PIECE_BYTES).min(len);
            seg.bytes()[from..to].to_vec()
        });
        std::iter::once(prefix).chain(slices)
    });
    std::iter::once(head).chain(body)
}

/// Total bytes [`pieces`] yields.
pub fn stream_bytes(message: &[u8], manifest: &Manifest, segments: &[Arc<Segment>]) -> u64 {
    let fixed = 8 + 4 + message.len() + 4 + manifest.encode().len() + 4;
    fixed as u64 + segments.iter().map(|s| 16 + s.len()).sum::<u64>()
}

/// `r`'s next read, or what was being read when the stream ended.
fn need<T>(r: Result<T, WireError>, what: &str) -> Result<T, String> {
    r.map_err(|e| match e {
        WireError::Truncated => format!("snapshot cut short in {what}"),
        other => format!("snapshot {what}: {other:?}"),
    })
}

/// Checks a received snapshot's structure (see the module docs).
pub fn parse(data: SnapshotBytes) -> Result<Received, String> {
    let mut r = Reader::new(&data);
    if need(r.take(8), "the magic")? != MAGIC {
        return Err("not a kvik snapshot (bad magic)".into());
    }
    let message = need(r.bytes(), "the message")?;
    let message = raft::codec::decode(message).map_err(|e| format!("snapshot message: {e}"))?;
    let MessageBody::Snapshot { meta } = &message.body else {
        return Err("snapshot stream does not carry a snapshot message".into());
    };
    let meta = meta.clone();
    let manifest = Manifest::decode(need(r.bytes(), "the manifest")?)
        .ok_or_else(|| "snapshot manifest is damaged".to_string())?;
    if manifest.applied_index != meta.index || manifest.applied_term != meta.term {
        return Err(format!(
            "snapshot manifest covers entry {} (term {}), the message names {} (term {})",
            manifest.applied_index, manifest.applied_term, meta.index, meta.term
        ));
    }
    let count = need(r.u32(), "the segment count")?;
    if count != manifest.segments.len() {
        return Err(format!(
            "snapshot carries {count} segments, its manifest lists {}",
            manifest.segments.len()
        ));
    }
    let mut segments = Vec::with_capacity(count);
    for want in &manifest.segments {
        let id = need(r.u64(), "a segment id")?;
        let len = need(r.u64(), "a segment length")?;
        if id != *want {
            return Err(format!(
                "snapshot segment {id} is not the manifest's next ({want})"
            ));
        }
        let len = usize::try_from(len).map_err(|_| "segment length overflows".to_string())?;
        segments.push((id, need(r.take_range(len), "a segment")?));
    }
    if r.left() != 0 {
        return Err(format!(
            "{} bytes after the last snapshot segment",
            r.left()
        ));
    }
    Ok(Received {
        message,
        meta,
        manifest,
        segments,
        data,
    })
}

/// Replaces the store and the log with a received snapshot (see the
/// module docs for the order). Every failure is fatal to the caller.
pub async fn install<S: Storage>(
    wal: &mut Wal<S>,
    wal_dir: &S,
    store: &S,
    current: Option<&Manifest>,
    received: &Received,
) -> Result<(Mvcc, Manifest), String> {
    let index = received.meta.index;
    raftstate::write_install_marker(wal_dir, index)
        .await
        .map_err(|e| format!("writing the snapshot install marker: {e}"))?;
    let opened = crate::revstore::install(store, current, received).await?;
    wal.reset_after(index, received.meta.term)
        .await
        .map_err(|e| format!("restarting the WAL after the snapshot: {e}"))?;
    raftstate::remove_install_marker(wal_dir).await?;
    Ok(opened)
}

#[cfg(test)]
mod tests {
    use super::*;
    use engine::segment::SegmentEncoder;
    use raftlog::raft::{ConfState, Message};

    fn segment(id: u64) -> Arc<Segment> {
        let enc = SegmentEncoder::new(id);
        let (bytes, _) = enc.finish();
        Segment::new(id, Arc::new(bytes))
    }

    fn fixture() -> (Vec<u8>, Manifest, Vec<Arc<Segment>>) {
        let meta = SnapshotMeta {
            index: 42,
            term: 3,
            conf: ConfState {
                voters: vec![1, 2, 3],
                learners: vec![],
            },
        };
        let msg = Message {
            group: 1,
            from: 1,
            to: 2,
            term: 3,
            body: MessageBody::Snapshot { meta },
        };
        let manifest = Manifest {
            seq: 9,
            applied_index: 42,
            applied_term: 3,
            next_segment_id: 8,
            segments: vec![5, 7],
            ..Manifest::default()
        };
        let segs = vec![segment(5), segment(7)];
        (raft::codec::encode(&msg), manifest, segs)
    }

    #[test]
    fn round_trip() {
        let (msg, manifest, segs) = fixture();
        let total = stream_bytes(&msg, &manifest, &segs);
        let data: Vec<u8> = pieces(&msg, &manifest, segs.clone()).flatten().collect();
        assert_eq!(data.len() as u64, total);
        let got = parse(data.into()).unwrap();
        assert_eq!(got.meta.index, 42);
        assert_eq!(got.manifest, manifest);
        for ((id, r), seg) in got.segments.iter().zip(&segs) {
            assert_eq!(*id, seg.id());
            assert_eq!(&got.data[r.clone()], seg.bytes());
        }
    }

    #[test]
    fn every_truncation_and_mismatch_is_refused() {
        let (msg, manifest, segs) = fixture();
        let data: Vec<u8> = pieces(&msg, &manifest, segs.clone()).flatten().collect();
        for cut in 0..data.len() {
            assert!(parse(data[..cut].to_vec().into()).is_err(), "cut at {cut}");
        }
        let mut longer = data.clone();
        longer.push(0);
        assert!(parse(longer.into()).is_err());
        let mut other = manifest.clone();
        other.applied_index = 41;
        let data: Vec<u8> = pieces(&msg, &other, segs.clone()).flatten().collect();
        let err = parse(data.into()).err().expect("refused");
        assert!(err.contains("covers entry 41"), "{err}");
        let mut other = manifest.clone();
        other.segments = vec![5, 6];
        let data: Vec<u8> = pieces(&msg, &other, segs).flatten().collect();
        assert!(parse(data.into()).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let (msg, manifest, segs) = fixture();
        let good: Vec<u8> = pieces(&msg, &manifest, segs).flatten().collect();
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..20_000 {
            let mut b = good.clone();
            for _ in 0..(next() % 4 + 1) {
                let i = (next() as usize) % b.len();
                b[i] = next() as u8;
            }
            let _ = parse(b.into());
            let n = (next() % 64) as usize;
            let _ = parse((0..n).map(|_| next() as u8).collect::<Vec<u8>>().into());
        }
    }
}
