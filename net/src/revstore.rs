//! The revision store's files: opening a store from its newest manifest,
//! and writing checkpoints. The format and the rules are the engine's
//! (`engine::segment`, `engine::CheckpointPlan`); this module only moves
//! bytes, through `raftlog::Storage`, so the simulated disk can cut power
//! in the middle of any step.
//!
//! A checkpoint, in order:
//! 1. the new segment is written in chunks (the shard serves requests
//!    between them), fsynced, and its directory entry made durable;
//! 2. the manifest goes into the older of the two slots and is fsynced:
//!    from here on restarts use it;
//! 3. the retired segments are unlinked (a crash before that leaves files
//!    that the next open removes).
//!
//! A full disk abandons the checkpoint (its records stay in memory and the
//! WAL keeps every entry); any other failure, and every failed fsync, is
//! fatal. An fsync is never retried.

use std::io;
use std::sync::Arc;

use engine::segment::{
    parse_segment_name, segment_name, Corrupt, Manifest, Segment, SegmentEncoder, MANIFEST_SLOTS,
};
use engine::{CheckpointPlan, Mvcc, Placed};
use raftlog::{Storage, StorageFile};

/// Bytes encoded before each write (and yield) while a segment is written.
pub const CHECKPOINT_CHUNK_BYTES: usize = 1 << 20;

/// A checkpoint that was written: what the shard installs.
pub struct Written {
    pub segment: Option<Arc<Segment>>,
    pub placed: Vec<Placed>,
    pub manifest: Manifest,
    /// Bytes written (segment and manifest).
    pub bytes: u64,
}

#[derive(Debug)]
pub enum CheckpointError {
    /// A write failed before anything was fsynced. The shard abandons the
    /// checkpoint and tries again later if the disk was full, and stops
    /// otherwise.
    Write(io::Error),
    /// An fsync failed (or a step after one did): fatal.
    Sync(io::Error),
    /// A record copied out of a retired segment failed its checks.
    Corrupt(Corrupt),
}

impl std::fmt::Display for CheckpointError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CheckpointError::Write(e) => write!(f, "checkpoint write failed: {e}"),
            CheckpointError::Sync(e) => write!(f, "checkpoint fsync failed: {e}"),
            CheckpointError::Corrupt(c) => write!(f, "checkpoint read: {c}"),
        }
    }
}

/// Opens the store in `storage`: the newest intact manifest and the
/// segments it lists. Segment files it does not list (left by a crash
/// mid-checkpoint) are removed. A store with no manifest is empty.
pub async fn open<S: Storage>(storage: &S) -> Result<(Mvcc, Option<Manifest>), String> {
    let names = storage
        .list()
        .await
        .map_err(|e| format!("listing the revision store: {e}"))?;
    let mut best: Option<Manifest> = None;
    for slot in MANIFEST_SLOTS {
        if !names.iter().any(|n| n == slot) {
            continue;
        }
        let bytes = read_all(storage, slot)
            .await
            .map_err(|e| format!("reading {slot}: {e}"))?;
        match Manifest::decode(&bytes) {
            Some(m) if best.as_ref().is_none_or(|b| m.seq > b.seq) => best = Some(m),
            Some(_) => {}
            None if bytes.is_empty() => {}
            None => tracing::warn!(
                "revision store: {slot} is torn or damaged ({} bytes); using the other slot",
                bytes.len()
            ),
        }
    }
    let Some(manifest) = best else {
        // No checkpoint ever completed if at most one slot was created (the
        // second is created only after the first held a durable manifest);
        // the WAL then still holds every entry, and any segment file is a
        // leftover of that first checkpoint.
        let slots = names
            .iter()
            .filter(|n| MANIFEST_SLOTS.contains(&n.as_str()))
            .count();
        if slots > 1 {
            return Err(
                "revision store: both manifest slots are damaged; refusing to start".to_string(),
            );
        }
        for name in &names {
            if parse_segment_name(name).is_some() {
                storage
                    .remove(name)
                    .await
                    .map_err(|e| format!("removing leftover {name}: {e}"))?;
                tracing::info!("revision store: removed {name}, left by an unfinished checkpoint");
            }
        }
        return Ok((Mvcc::new(), None));
    };
    let mut segments = Vec::with_capacity(manifest.segments.len());
    for id in &manifest.segments {
        let name = segment_name(*id);
        let map = storage.map(&name).await.map_err(|e| {
            format!(
                "revision store: manifest {} lists {name}, which cannot be opened: {e}",
                manifest.seq
            )
        })?;
        segments.push(Segment::new(*id, map));
    }
    let mvcc = Mvcc::restore(&manifest, segments).map_err(|e| e.to_string())?;
    for name in &names {
        if parse_segment_name(name).is_some_and(|id| !manifest.segments.contains(&id)) {
            storage
                .remove(name)
                .await
                .map_err(|e| format!("removing leftover {name}: {e}"))?;
            tracing::info!("revision store: removed {name}, left by an unfinished checkpoint");
        }
    }
    Ok((mvcc, Some(manifest)))
}

async fn read_all<S: Storage>(storage: &S, name: &str) -> io::Result<Vec<u8>> {
    raftlog::storage::read_whole(&storage.open(name).await?).await
}

/// Writes a planned checkpoint (see the module docs). The future owns
/// everything it needs, so the shard keeps serving while it runs.
pub async fn write<S: Storage>(
    storage: S,
    plan: CheckpointPlan,
) -> Result<Written, CheckpointError> {
    let CheckpointPlan {
        segment_id,
        items,
        manifest,
        retired,
    } = plan;
    let mut bytes = 0u64;
    let mut placed = Vec::with_capacity(items.len());
    let segment = if items.is_empty() {
        None
    } else {
        let name = segment_name(segment_id);
        let mut file = storage
            .create(&name)
            .await
            .map_err(CheckpointError::Write)?;
        let mut enc = SegmentEncoder::new(segment_id);
        let mut failed = None;
        for item in items {
            match item.encode(&mut enc) {
                Ok((off, len)) => placed.push((item, off, len)),
                Err(c) => {
                    failed = Some(CheckpointError::Corrupt(c));
                    break;
                }
            }
            if enc.buffered() >= CHECKPOINT_CHUNK_BYTES {
                let pos = enc.written();
                let (res, _) = file.write_all_at(enc.take(), pos).await;
                if let Err(e) = res {
                    failed = Some(CheckpointError::Write(e));
                    break;
                }
                crate::rt::yield_now().await;
            }
        }
        if failed.is_none() {
            let pos = enc.written();
            let (tail, total) = enc.finish();
            let (res, _) = file.write_all_at(tail, pos).await;
            bytes += total;
            if let Err(e) = res {
                failed = Some(CheckpointError::Write(e));
            }
        }
        if let Some(e) = failed {
            drop(file);
            // Nothing of it was synced; a leftover file is removed at open.
            let _ = storage.remove(&name).await;
            return Err(e);
        }
        file.sync_data().await.map_err(CheckpointError::Sync)?;
        storage.sync_dir().await.map_err(CheckpointError::Sync)?;
        let map = storage.map(&name).await.map_err(CheckpointError::Sync)?;
        Some(Segment::new(segment_id, map))
    };
    bytes += write_manifest(&storage, &manifest)
        .await
        .map_err(CheckpointError::Sync)?;
    for id in retired {
        // The checkpoint is durable already; a disk that cannot unlink is
        // failing, so stop. The next open removes what is left.
        storage
            .remove(&segment_name(id))
            .await
            .map_err(CheckpointError::Sync)?;
    }
    Ok(Written {
        segment,
        placed,
        manifest,
        bytes,
    })
}

/// Writes `manifest` into its slot (the older of the two) and fsyncs it:
/// from then on it is the store's state. Returns the bytes written.
async fn write_manifest<S: Storage>(storage: &S, manifest: &Manifest) -> io::Result<u64> {
    let slot = MANIFEST_SLOTS[(manifest.seq % 2) as usize];
    let encoded = manifest.encode();
    let mut f = match storage.open(slot).await {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let f = storage.create(slot).await?;
            storage.sync_dir().await?;
            f
        }
        Err(e) => return Err(e),
    };
    let len = encoded.len() as u64;
    let (res, _) = f.write_all_at(encoded, 0).await;
    res?;
    f.set_len(len).await?;
    f.sync_data().await?;
    Ok(len)
}

/// Replaces the store's whole state with a leader's checkpoint (a Raft
/// snapshot), with the checkpoint protocol: the received segments are
/// written under fresh ids of this store and fsynced with their directory,
/// then a manifest naming only them goes into the next slot and is fsynced,
/// and only then is every other segment unlinked. A crash before the
/// manifest is durable leaves the previous state (the new files are
/// leftovers the next open removes); after it, the snapshot's. Every
/// failure is fatal to the caller. Returns the reopened store.
pub async fn install<S: Storage>(
    storage: &S,
    current: Option<&Manifest>,
    received: &crate::snapshot::Received,
) -> Result<(Mvcc, Manifest), String> {
    let names = storage
        .list()
        .await
        .map_err(|e| format!("listing the revision store: {e}"))?;
    let mut next_id = names
        .iter()
        .filter_map(|n| parse_segment_name(n))
        .map(|id| id + 1)
        .chain(current.map(|m| m.next_segment_id))
        .max()
        .unwrap_or(1)
        .max(1);
    let mut manifest = received.manifest.clone();
    manifest.seq = current.map_or(1, |m| m.seq + 1);
    manifest.segments.clear();
    for (leader_id, range) in &received.segments {
        let id = next_id;
        next_id += 1;
        let name = segment_name(id);
        let mut bytes = received.data[range.clone()].to_vec();
        engine::segment::relabel_segment(&mut bytes, id)
            .map_err(|c| format!("snapshot segment {leader_id}: {c}"))?;
        let mut file = storage
            .create(&name)
            .await
            .map_err(|e| format!("creating {name}: {e}"))?;
        let (res, _) = file.write_all_at(bytes, 0).await;
        res.map_err(|e| format!("writing {name}: {e}"))?;
        file.sync_data()
            .await
            .map_err(|e| format!("fsync of {name}: {e}"))?;
        manifest.segments.push(id);
    }
    manifest.next_segment_id = next_id;
    storage
        .sync_dir()
        .await
        .map_err(|e| format!("fsync of the revision store directory: {e}"))?;
    write_manifest(storage, &manifest)
        .await
        .map_err(|e| format!("writing the manifest: {e}"))?;
    for name in &names {
        if parse_segment_name(name).is_some_and(|id| !manifest.segments.contains(&id)) {
            storage
                .remove(name)
                .await
                .map_err(|e| format!("removing {name}: {e}"))?;
        }
    }
    let (mvcc, opened) = open(storage).await?;
    let opened = opened.ok_or_else(|| "the installed manifest does not read back".to_string())?;
    if opened != manifest {
        return Err("the installed manifest reads back differently".into());
    }
    Ok((mvcc, opened))
}
