//! The wire format of [`Message`].
//!
//! A frame is one version byte ([`MESSAGE_CODEC_VERSION`]) followed by an
//! rkyv archive (unaligned, little endian) of a private mirror of
//! `Message`, so the wire format changes only on purpose. Decoding validates
//! the archive with bytecheck before reading it (`rkyv::access`), then runs
//! [`Message::validate`]: any byte string yields a well-formed message or a
//! [`CodecError`], never a panic. Frames over [`MESSAGE_FRAME_BYTES_MAX`]
//! are refused before anything is read.
//!
//! New body variants go last: an existing variant's tag must not change.

use std::fmt;

use rkyv::rancor;

use super::types::{ConfState, Entry, EntryKind, Message, MessageBody, SnapshotMeta};

/// Version byte leading every frame.
pub const MESSAGE_CODEC_VERSION: u8 = 1;

/// Largest frame accepted: room for a full append batch plus one maximal
/// entry.
pub const MESSAGE_FRAME_BYTES_MAX: usize = 64 * 1024 * 1024;

/// Why a frame could not be decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CodecError {
    /// No bytes at all.
    Empty,
    /// The version byte is not one this build reads.
    UnsupportedVersion(u8),
    /// The frame is larger than [`MESSAGE_FRAME_BYTES_MAX`].
    TooLarge {
        /// The frame's size.
        bytes: usize,
    },
    /// The archive failed validation.
    Malformed(String),
    /// The archive is well formed but the message is not (see
    /// [`Message::validate`]), or an entry kind is unknown.
    Invalid(&'static str),
}

impl fmt::Display for CodecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CodecError::Empty => f.write_str("empty raft message frame"),
            CodecError::UnsupportedVersion(v) => {
                write!(f, "unsupported raft message codec version {v}")
            }
            CodecError::TooLarge { bytes } => write!(
                f,
                "raft message frame of {bytes} bytes exceeds {MESSAGE_FRAME_BYTES_MAX}"
            ),
            CodecError::Malformed(e) => write!(f, "malformed raft message: {e}"),
            CodecError::Invalid(why) => write!(f, "invalid raft message: {why}"),
        }
    }
}

impl std::error::Error for CodecError {}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WireMessage {
    group: u64,
    from: u64,
    to: u64,
    term: u64,
    body: WireBody,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
struct WireEntry {
    term: u64,
    index: u64,
    /// 0 = Normal, 1 = ConfChange.
    kind: u8,
    data: Vec<u8>,
}

#[derive(rkyv::Archive, rkyv::Serialize, rkyv::Deserialize)]
enum WireBody {
    PreVote {
        last_index: u64,
        last_term: u64,
    },
    PreVoteResp {
        reject: bool,
    },
    Vote {
        last_index: u64,
        last_term: u64,
        transfer: bool,
    },
    VoteResp {
        reject: bool,
    },
    Append {
        prev_index: u64,
        prev_term: u64,
        entries: Vec<WireEntry>,
        commit: u64,
    },
    AppendResp {
        index: u64,
        reject: bool,
        reject_hint: u64,
        hint_term: u64,
    },
    Heartbeat {
        commit: u64,
        ctx: u64,
    },
    HeartbeatResp {
        ctx: u64,
    },
    Snapshot {
        index: u64,
        term: u64,
        voters: Vec<u64>,
        learners: Vec<u64>,
    },
    TimeoutNow,
    ReadIndex {
        ctx: u64,
    },
    ReadIndexResp {
        index: u64,
        ctx: u64,
    },
    Propose {
        entries: Vec<WireEntry>,
    },
}

fn wire_entries(ents: &[Entry]) -> Vec<WireEntry> {
    ents.iter()
        .map(|e| WireEntry {
            term: e.term,
            index: e.index,
            kind: match e.kind {
                EntryKind::Normal => 0,
                EntryKind::ConfChange => 1,
            },
            data: e.data.clone(),
        })
        .collect()
}

fn entries_from_wire(ents: Vec<WireEntry>) -> Result<Vec<Entry>, CodecError> {
    ents.into_iter()
        .map(|e| {
            let kind = match e.kind {
                0 => EntryKind::Normal,
                1 => EntryKind::ConfChange,
                _ => return Err(CodecError::Invalid("unknown entry kind")),
            };
            Ok(Entry {
                term: e.term,
                index: e.index,
                kind,
                data: e.data,
            })
        })
        .collect()
}

fn to_wire(m: &Message) -> WireMessage {
    let body = match &m.body {
        MessageBody::PreVote {
            last_index,
            last_term,
        } => WireBody::PreVote {
            last_index: *last_index,
            last_term: *last_term,
        },
        MessageBody::PreVoteResp { reject } => WireBody::PreVoteResp { reject: *reject },
        MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        } => WireBody::Vote {
            last_index: *last_index,
            last_term: *last_term,
            transfer: *transfer,
        },
        MessageBody::VoteResp { reject } => WireBody::VoteResp { reject: *reject },
        MessageBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => WireBody::Append {
            prev_index: *prev_index,
            prev_term: *prev_term,
            entries: wire_entries(entries),
            commit: *commit,
        },
        MessageBody::AppendResp {
            index,
            reject,
            reject_hint,
            hint_term,
        } => WireBody::AppendResp {
            index: *index,
            reject: *reject,
            reject_hint: *reject_hint,
            hint_term: *hint_term,
        },
        MessageBody::Heartbeat { commit, ctx } => WireBody::Heartbeat {
            commit: *commit,
            ctx: *ctx,
        },
        MessageBody::HeartbeatResp { ctx } => WireBody::HeartbeatResp { ctx: *ctx },
        MessageBody::Snapshot { meta } => WireBody::Snapshot {
            index: meta.index,
            term: meta.term,
            voters: meta.conf.voters.clone(),
            learners: meta.conf.learners.clone(),
        },
        MessageBody::TimeoutNow => WireBody::TimeoutNow,
        MessageBody::ReadIndex { ctx } => WireBody::ReadIndex { ctx: *ctx },
        MessageBody::ReadIndexResp { index, ctx } => WireBody::ReadIndexResp {
            index: *index,
            ctx: *ctx,
        },
        MessageBody::Propose { entries } => WireBody::Propose {
            entries: wire_entries(entries),
        },
    };
    WireMessage {
        group: m.group,
        from: m.from,
        to: m.to,
        term: m.term,
        body,
    }
}

fn from_wire(w: WireMessage) -> Result<Message, CodecError> {
    let body = match w.body {
        WireBody::PreVote {
            last_index,
            last_term,
        } => MessageBody::PreVote {
            last_index,
            last_term,
        },
        WireBody::PreVoteResp { reject } => MessageBody::PreVoteResp { reject },
        WireBody::Vote {
            last_index,
            last_term,
            transfer,
        } => MessageBody::Vote {
            last_index,
            last_term,
            transfer,
        },
        WireBody::VoteResp { reject } => MessageBody::VoteResp { reject },
        WireBody::Append {
            prev_index,
            prev_term,
            entries,
            commit,
        } => MessageBody::Append {
            prev_index,
            prev_term,
            entries: entries_from_wire(entries)?,
            commit,
        },
        WireBody::AppendResp {
            index,
            reject,
            reject_hint,
            hint_term,
        } => MessageBody::AppendResp {
            index,
            reject,
            reject_hint,
            hint_term,
        },
        WireBody::Heartbeat { commit, ctx } => MessageBody::Heartbeat { commit, ctx },
        WireBody::HeartbeatResp { ctx } => MessageBody::HeartbeatResp { ctx },
        WireBody::Snapshot {
            index,
            term,
            voters,
            learners,
        } => MessageBody::Snapshot {
            meta: SnapshotMeta {
                index,
                term,
                conf: ConfState { voters, learners },
            },
        },
        WireBody::TimeoutNow => MessageBody::TimeoutNow,
        WireBody::ReadIndex { ctx } => MessageBody::ReadIndex { ctx },
        WireBody::ReadIndexResp { index, ctx } => MessageBody::ReadIndexResp { index, ctx },
        WireBody::Propose { entries } => MessageBody::Propose {
            entries: entries_from_wire(entries)?,
        },
    };
    let m = Message {
        group: w.group,
        from: w.from,
        to: w.to,
        term: w.term,
        body,
    };
    m.validate().map_err(CodecError::Invalid)?;
    Ok(m)
}

/// Encodes `m` as a frame: [`MESSAGE_CODEC_VERSION`] then the rkyv archive.
pub fn encode(m: &Message) -> Vec<u8> {
    // Serialized straight after the version byte: positions in the archive
    // are relative, and unaligned archives need no padding, so the bytes
    // are those of an archive of its own, without a copy.
    rkyv::api::high::to_bytes_in::<_, rancor::Error>(&to_wire(m), vec![MESSAGE_CODEC_VERSION])
        .expect("serializing to memory cannot fail")
}

/// Decodes a frame made by [`encode`]. Safe on any input.
pub fn decode(frame: &[u8]) -> Result<Message, CodecError> {
    if frame.len() > MESSAGE_FRAME_BYTES_MAX {
        return Err(CodecError::TooLarge { bytes: frame.len() });
    }
    let (&version, archive) = frame.split_first().ok_or(CodecError::Empty)?;
    if version != MESSAGE_CODEC_VERSION {
        return Err(CodecError::UnsupportedVersion(version));
    }
    let archived = rkyv::access::<ArchivedWireMessage, rancor::Error>(archive)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    let wire = rkyv::deserialize::<WireMessage, rancor::Error>(archived)
        .map_err(|e| CodecError::Malformed(e.to_string()))?;
    from_wire(wire)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `encode` writes the archive after the version byte; the bytes must be
    /// those of the same archive written on its own, or the wire format
    /// would depend on where it starts.
    #[test]
    fn frame_is_the_version_byte_then_a_standalone_archive() {
        let m = Message {
            group: 3,
            from: 1,
            to: 2,
            term: 5,
            body: MessageBody::Append {
                prev_index: 6,
                prev_term: 4,
                entries: vec![
                    Entry {
                        term: 5,
                        index: 7,
                        kind: EntryKind::Normal,
                        data: b"odd length".to_vec(),
                    },
                    Entry {
                        term: 5,
                        index: 8,
                        kind: EntryKind::ConfChange,
                        data: vec![1; 3],
                    },
                ],
                commit: 6,
            },
        };
        let archive = rkyv::to_bytes::<rancor::Error>(&to_wire(&m)).unwrap();
        let frame = encode(&m);
        assert_eq!(frame[0], MESSAGE_CODEC_VERSION);
        assert_eq!(&frame[1..], &archive[..]);
    }
}
