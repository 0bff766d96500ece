//! The byte formats the shard keeps for Raft: how a log entry sits in a WAL
//! record, what a normal entry's data holds, the durable hard state, and the
//! membership stored with each checkpoint.
//!
//! - **WAL payload.** A WAL record has no kind, so the payload starts with
//!   the entry's kind byte ([`KIND_NORMAL`], [`KIND_CONF_CHANGE`]) followed
//!   by the Raft entry's data.
//! - **Normal entry data.** Empty is a new leader's no-op. Otherwise a tag
//!   byte, then: a client command ([`TAG_COMMAND`]: proposing member, request
//!   id, `engine::Command` bytes); a member publishing its name and client
//!   URLs ([`TAG_ATTRIBUTES`], etcd's `UpdateAttributes`); or a MemberUpdate
//!   of peer URLs ([`TAG_UPDATE_PEERS`]).
//! - **Conf change context.** Proposing member, request id, then the
//!   member's encoding (`membership::Member::encode`). Bootstrap entries
//!   carry the founding members the same way, with member and request 0,
//!   so a member that joins later learns every peer URL from the log.
//! - **Hard state.** Two slot files in the WAL directory,
//!   `raft-state-a`/`-b`, each `magic, seq, term, vote, commit, crc32c`;
//!   a write goes to the older slot and is fsynced, so a torn write leaves
//!   the other. It is written, and fsynced before any message of the same
//!   `Ready` leaves, whenever the term or the vote changes; the commit index
//!   in it may lag. On restart the commit index is rebuilt as the largest of
//!   the stored one, the checkpoint's applied index, the last bootstrap
//!   entry (term 1 is only ever bootstrap), and the last-but-one conf change
//!   in the log: a conf change is only appended by a leader that applied
//!   the previous one, so holding a conf change proves the one before it
//!   (and everything before that) committed.
//! - **Membership blob.** The checkpoint manifest's opaque field holds the
//!   Raft configuration and the member set as of the checkpoint's index.

use raftlog::raft::{ConfState, EntryKind, HardState, NodeId};
use raftlog::{Storage, StorageFile};

use crate::membership::{Member, MemberSet};

/// Leading byte of a WAL payload holding a normal entry.
pub const KIND_NORMAL: u8 = 0;
/// Leading byte of a WAL payload holding a conf change entry.
pub const KIND_CONF_CHANGE: u8 = 1;

/// A normal entry carrying a client command.
pub const TAG_COMMAND: u8 = 1;
/// A normal entry publishing a member's name and client URLs.
pub const TAG_ATTRIBUTES: u8 = 2;
/// A normal entry changing a member's peer URLs (MemberUpdate).
pub const TAG_UPDATE_PEERS: u8 = 3;

/// Proposing member and request id, ahead of a command or context.
pub const REQUEST_HEADER_BYTES: usize = 16;

/// The hard state slot files.
pub const HARD_STATE_SLOTS: [&str; 2] = ["raft-state-a", "raft-state-b"];
const HARD_STATE_MAGIC: &[u8; 8] = b"KVIKHS01";
const HARD_STATE_BYTES: usize = 8 + 8 * 4 + 4;

const MEMBERSHIP_VERSION: u8 = 1;

/// The WAL payload of an entry.
pub fn wal_payload(kind: EntryKind, data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + data.len());
    out.push(match kind {
        EntryKind::Normal => KIND_NORMAL,
        EntryKind::ConfChange => KIND_CONF_CHANGE,
    });
    out.extend_from_slice(data);
    out
}

/// Splits a WAL payload into the entry's kind and data.
pub fn from_wal_payload(payload: &[u8]) -> Result<(EntryKind, Vec<u8>), String> {
    match payload.split_first() {
        Some((&KIND_NORMAL, data)) => Ok((EntryKind::Normal, data.to_vec())),
        Some((&KIND_CONF_CHANGE, data)) => Ok((EntryKind::ConfChange, data.to_vec())),
        Some((k, _)) => Err(format!("unknown entry kind byte {k}")),
        None => Err("empty WAL payload".into()),
    }
}

/// What a normal entry's data says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normal<'a> {
    /// A new leader's empty entry.
    Noop,
    /// A client command proposed by `origin` as request `request`.
    Command {
        origin: NodeId,
        request: u64,
        command: &'a [u8],
    },
    /// A member's name and client URLs.
    Attributes(Member),
    /// New peer URLs for a member, proposed by `origin` as `request`.
    UpdatePeers {
        origin: NodeId,
        request: u64,
        member: Member,
    },
}

fn header(tag: Option<u8>, origin: NodeId, request: u64, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(1 + REQUEST_HEADER_BYTES + body.len());
    out.extend(tag);
    out.extend_from_slice(&origin.to_le_bytes());
    out.extend_from_slice(&request.to_le_bytes());
    out.extend_from_slice(body);
    out
}

fn split_header(b: &[u8]) -> Result<(NodeId, u64, &[u8]), String> {
    if b.len() < REQUEST_HEADER_BYTES {
        return Err("entry shorter than its request header".into());
    }
    let origin = u64::from_le_bytes(b[..8].try_into().expect("8 bytes"));
    let request = u64::from_le_bytes(b[8..16].try_into().expect("8 bytes"));
    Ok((origin, request, &b[REQUEST_HEADER_BYTES..]))
}

/// Data of a normal entry carrying a client command.
pub fn command_entry(origin: NodeId, request: u64, command: &[u8]) -> Vec<u8> {
    header(Some(TAG_COMMAND), origin, request, command)
}

/// Data of a normal entry publishing `m`'s name and client URLs.
pub fn attributes_entry(m: &Member) -> Vec<u8> {
    let mut out = vec![TAG_ATTRIBUTES];
    out.extend_from_slice(&m.encode());
    out
}

/// Data of a normal entry giving member `m.id` the peer URLs `m.peer_urls`.
pub fn update_peers_entry(origin: NodeId, request: u64, m: &Member) -> Vec<u8> {
    header(Some(TAG_UPDATE_PEERS), origin, request, &m.encode())
}

/// Decodes a normal entry's data.
pub fn decode_normal(data: &[u8]) -> Result<Normal<'_>, String> {
    let Some((&tag, rest)) = data.split_first() else {
        return Ok(Normal::Noop);
    };
    match tag {
        TAG_COMMAND => {
            let (origin, request, command) = split_header(rest)?;
            Ok(Normal::Command {
                origin,
                request,
                command,
            })
        }
        TAG_ATTRIBUTES => Member::decode(rest)
            .map(Normal::Attributes)
            .map_err(|e| format!("attributes entry: {e}")),
        TAG_UPDATE_PEERS => {
            let (origin, request, m) = split_header(rest)?;
            let member = Member::decode(m).map_err(|e| format!("member update entry: {e}"))?;
            Ok(Normal::UpdatePeers {
                origin,
                request,
                member,
            })
        }
        t => Err(format!("unknown entry tag {t}")),
    }
}

/// A conf change's context: who proposed it, and the member it adds (or
/// names).
pub fn conf_context(origin: NodeId, request: u64, m: &Member) -> Vec<u8> {
    header(None, origin, request, &m.encode())
}

/// Decodes [`conf_context`]; `None` for an empty context.
pub fn decode_conf_context(ctx: &[u8]) -> Result<Option<(NodeId, u64, Member)>, String> {
    if ctx.is_empty() {
        return Ok(None);
    }
    let (origin, request, m) = split_header(ctx)?;
    let m = Member::decode(m).map_err(|e| format!("conf change context: {e}"))?;
    Ok(Some((origin, request, m)))
}

// ------------------------------------------------------------ hard state

fn encode_hard_state(seq: u64, hs: &HardState) -> Vec<u8> {
    let mut out = Vec::with_capacity(HARD_STATE_BYTES);
    out.extend_from_slice(HARD_STATE_MAGIC);
    for v in [seq, hs.term, hs.vote, hs.commit] {
        out.extend_from_slice(&v.to_le_bytes());
    }
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

fn decode_hard_state(b: &[u8]) -> Option<(u64, HardState)> {
    if b.len() != HARD_STATE_BYTES || &b[..8] != HARD_STATE_MAGIC {
        return None;
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes(crc.try_into().ok()?) {
        return None;
    }
    let word = |i: usize| u64::from_le_bytes(body[8 + 8 * i..16 + 8 * i].try_into().expect("8"));
    Some((
        word(0),
        HardState {
            term: word(1),
            vote: word(2),
            commit: word(3),
        },
    ))
}

/// The durable hard state: the newest intact slot, and its sequence number.
pub async fn read_hard_state<S: Storage>(storage: &S) -> Result<Option<(u64, HardState)>, String> {
    let names = storage
        .list()
        .await
        .map_err(|e| format!("listing the WAL directory: {e}"))?;
    let mut best: Option<(u64, HardState)> = None;
    for slot in HARD_STATE_SLOTS {
        if !names.iter().any(|n| n == slot) {
            continue;
        }
        let f = storage
            .open(slot)
            .await
            .map_err(|e| format!("opening {slot}: {e}"))?;
        let len = f.len().await.map_err(|e| format!("{slot}: {e}"))? as usize;
        let (r, buf) = f.read_at(Vec::with_capacity(len), 0).await;
        r.map_err(|e| format!("reading {slot}: {e}"))?;
        match decode_hard_state(&buf) {
            Some((seq, hs)) if best.is_none_or(|(s, _)| seq > s) => best = Some((seq, hs)),
            Some(_) => {}
            None => tracing::warn!("{slot} is torn or damaged; using the other slot"),
        }
    }
    Ok(best)
}

/// Writes `hs` as sequence number `seq` into the slot it belongs to and
/// fsyncs it. Any failure is fatal to the caller (no retried fsync).
pub async fn write_hard_state<S: Storage>(
    storage: &S,
    seq: u64,
    hs: &HardState,
) -> std::io::Result<()> {
    let slot = HARD_STATE_SLOTS[(seq % 2) as usize];
    let mut f = match storage.open(slot).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let f = storage.create(slot).await?;
            storage.sync_dir().await?;
            f
        }
        Err(e) => return Err(e),
    };
    let bytes = encode_hard_state(seq, hs);
    let len = bytes.len() as u64;
    let (r, _) = f.write_all_at(bytes, 0).await;
    r?;
    f.set_len(len).await?;
    f.sync_data().await
}

// ------------------------------------------------------- snapshot install

/// Present in the WAL directory while a leader's snapshot is installed:
/// `magic, index, crc32c`. Written and made durable before the store is
/// touched, removed (durably) after the WAL restarts past the snapshot and
/// before anything after it is appended, so at start-up it means "finish or
/// forget the install at this index" (see `Shard::open_raft`).
pub const INSTALL_MARKER: &str = "snapshot-install";
const INSTALL_MAGIC: &[u8; 8] = b"KVIKINS1";

/// Writes and fsyncs the marker, and makes its directory entry durable.
pub async fn write_install_marker<S: Storage>(storage: &S, index: u64) -> std::io::Result<()> {
    let mut b = INSTALL_MAGIC.to_vec();
    b.extend_from_slice(&index.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    let mut f = storage.create(INSTALL_MARKER).await?;
    let (r, _) = f.write_all_at(b, 0).await;
    r?;
    f.sync_data().await?;
    storage.sync_dir().await
}

/// The index of an install that did not finish. A torn marker was never
/// durable, so nothing was installed after it: `None`.
pub async fn read_install_marker<S: Storage>(storage: &S) -> Result<Option<u64>, String> {
    let names = storage
        .list()
        .await
        .map_err(|e| format!("listing the WAL directory: {e}"))?;
    if !names.iter().any(|n| n == INSTALL_MARKER) {
        return Ok(None);
    }
    let f = storage
        .open(INSTALL_MARKER)
        .await
        .map_err(|e| format!("opening {INSTALL_MARKER}: {e}"))?;
    let b = raftlog::storage::read_whole(&f)
        .await
        .map_err(|e| format!("reading {INSTALL_MARKER}: {e}"))?;
    if b.len() != 20 || &b[..8] != INSTALL_MAGIC {
        return Ok(None);
    }
    let crc = u32::from_le_bytes(b[16..20].try_into().expect("4 bytes"));
    if crc != crc32c::crc32c(&b[..16]) {
        return Ok(None);
    }
    Ok(Some(u64::from_le_bytes(
        b[8..16].try_into().expect("8 bytes"),
    )))
}

/// Removes the marker durably (if present).
pub async fn remove_install_marker<S: Storage>(storage: &S) -> Result<(), String> {
    match storage.remove(INSTALL_MARKER).await {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(format!("removing {INSTALL_MARKER}: {e}")),
    }
    storage
        .sync_dir()
        .await
        .map_err(|e| format!("fsync of the WAL directory: {e}"))
}

// ------------------------------------------------------------ membership

/// The Raft configuration and the member set, for a checkpoint manifest.
pub fn encode_membership(conf: &ConfState, members: &MemberSet) -> Vec<u8> {
    let mut out = vec![MEMBERSHIP_VERSION];
    for list in [&conf.voters, &conf.learners] {
        out.extend_from_slice(&(list.len() as u32).to_le_bytes());
        for id in list {
            out.extend_from_slice(&id.to_le_bytes());
        }
    }
    out.extend_from_slice(&members.encode());
    out
}

/// Decodes [`encode_membership`].
pub fn decode_membership(b: &[u8]) -> Result<(ConfState, MemberSet), String> {
    let bad = |why: &str| format!("checkpoint membership: {why}");
    let (&v, mut rest) = b.split_first().ok_or_else(|| bad("empty"))?;
    if v != MEMBERSHIP_VERSION {
        return Err(bad("unknown version"));
    }
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        if rest.len() < 4 {
            return Err(bad("truncated"));
        }
        let n = u32::from_le_bytes(rest[..4].try_into().expect("4")) as usize;
        rest = &rest[4..];
        if rest.len() / 8 < n {
            return Err(bad("truncated"));
        }
        for i in 0..n {
            list.push(u64::from_le_bytes(
                rest[8 * i..8 * i + 8].try_into().expect("8"),
            ));
        }
        rest = &rest[8 * n..];
    }
    let [voters, learners] = lists;
    let conf = ConfState { voters, learners };
    if !conf.is_well_formed() {
        return Err(bad("configuration not well formed"));
    }
    let members = MemberSet::decode(rest).map_err(|e| bad(&e.to_string()))?;
    Ok((conf, members))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_round_trip() {
        let m = Member::new("n1", &["http://127.0.0.1:2380".into()], "t", None).unwrap();
        assert_eq!(
            from_wal_payload(&wal_payload(EntryKind::ConfChange, b"x")).unwrap(),
            (EntryKind::ConfChange, b"x".to_vec())
        );
        assert!(from_wal_payload(&[9]).is_err());
        assert_eq!(decode_normal(&[]).unwrap(), Normal::Noop);
        assert_eq!(
            decode_normal(&command_entry(3, 4, b"cmd")).unwrap(),
            Normal::Command {
                origin: 3,
                request: 4,
                command: b"cmd"
            }
        );
        assert_eq!(
            decode_normal(&attributes_entry(&m)).unwrap(),
            Normal::Attributes(m.clone())
        );
        assert_eq!(
            decode_conf_context(&conf_context(1, 2, &m)).unwrap(),
            Some((1, 2, m.clone()))
        );
        let hs = HardState {
            term: 5,
            vote: 7,
            commit: 9,
        };
        assert_eq!(decode_hard_state(&encode_hard_state(3, &hs)), Some((3, hs)));
        let mut b = encode_hard_state(3, &hs);
        b[12] ^= 1;
        assert_eq!(decode_hard_state(&b), None);
        let set = MemberSet::bootstrap("t", &[("n1".into(), vec!["http://a:1".into()])]).unwrap();
        let conf = ConfState {
            voters: vec![set.voting_ids()[0]],
            learners: vec![],
        };
        assert_eq!(
            decode_membership(&encode_membership(&conf, &set)).unwrap(),
            (conf, set)
        );
    }
}
