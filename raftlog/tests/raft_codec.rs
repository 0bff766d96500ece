//! The Raft message codec: round trips, and hostile bytes never panic.

use raftlog::raft::codec::{self, CodecError, MESSAGE_CODEC_VERSION, MESSAGE_FRAME_BYTES_MAX};
use raftlog::raft::{ConfState, Entry, EntryKind, Message, MessageBody, SnapshotMeta};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

fn entries(rng: &mut StdRng, prev_index: u64, term: u64) -> Vec<Entry> {
    let n = rng.random_range(0..4u64);
    (0..n)
        .map(|i| Entry {
            term,
            index: prev_index + 1 + i,
            kind: if rng.random_bool(0.2) {
                EntryKind::ConfChange
            } else {
                EntryKind::Normal
            },
            data: (0..rng.random_range(0..40)).map(|_| rng.random()).collect(),
        })
        .collect()
}

/// One message of every kind, with random field values.
fn samples(rng: &mut StdRng) -> Vec<Message> {
    let term = rng.random_range(1..1000u64);
    let prev = rng.random_range(0..10_000u64);
    let bodies = vec![
        MessageBody::PreVote {
            last_index: rng.random(),
            last_term: rng.random(),
        },
        MessageBody::PreVoteResp {
            reject: rng.random(),
        },
        MessageBody::Vote {
            last_index: rng.random(),
            last_term: rng.random(),
            transfer: rng.random(),
        },
        MessageBody::VoteResp {
            reject: rng.random(),
        },
        MessageBody::Append {
            prev_index: prev,
            prev_term: term - 1,
            entries: entries(rng, prev, term),
            commit: rng.random(),
        },
        MessageBody::AppendResp {
            index: rng.random(),
            reject: rng.random(),
            reject_hint: rng.random(),
            hint_term: rng.random(),
        },
        MessageBody::Heartbeat {
            commit: rng.random(),
            ctx: rng.random(),
        },
        MessageBody::HeartbeatResp { ctx: rng.random() },
        MessageBody::Snapshot {
            meta: SnapshotMeta {
                index: prev + 1,
                term,
                conf: ConfState {
                    voters: vec![1, 2, 3],
                    learners: vec![7],
                },
            },
        },
        MessageBody::TimeoutNow,
        MessageBody::ReadIndex { ctx: rng.random() },
        MessageBody::ReadIndexResp {
            index: rng.random(),
            ctx: rng.random(),
        },
        MessageBody::Propose {
            entries: entries(rng, 0, 0),
        },
    ];
    bodies
        .into_iter()
        .map(|body| Message {
            group: rng.random(),
            from: rng.random_range(1..100),
            to: rng.random_range(1..100),
            term: if body.is_forwarded() { 0 } else { term },
            body,
        })
        .collect()
}

#[test]
fn every_kind_round_trips() {
    let mut rng = StdRng::seed_from_u64(1);
    for _ in 0..200 {
        for m in samples(&mut rng) {
            let frame = codec::encode(&m);
            assert_eq!(frame[0], MESSAGE_CODEC_VERSION);
            assert_eq!(codec::decode(&frame).unwrap(), m);
        }
    }
}

#[test]
fn framing_errors_are_typed() {
    assert_eq!(codec::decode(&[]), Err(CodecError::Empty));
    let mut rng = StdRng::seed_from_u64(2);
    let m = samples(&mut rng).remove(0);
    let mut frame = codec::encode(&m);
    frame[0] = 9;
    assert_eq!(
        codec::decode(&frame),
        Err(CodecError::UnsupportedVersion(9))
    );
    assert!(matches!(
        codec::decode(&vec![MESSAGE_CODEC_VERSION; MESSAGE_FRAME_BYTES_MAX + 1]),
        Err(CodecError::TooLarge { .. })
    ));
    assert!(matches!(
        codec::decode(&[MESSAGE_CODEC_VERSION, 1, 2, 3]),
        Err(CodecError::Malformed(_))
    ));
}

#[test]
fn structurally_invalid_messages_are_refused() {
    let base = Message {
        group: 1,
        from: 1,
        to: 2,
        term: 5,
        body: MessageBody::Append {
            prev_index: 3,
            prev_term: 4,
            entries: vec![Entry {
                term: 5,
                index: 4,
                kind: EntryKind::Normal,
                data: vec![],
            }],
            commit: 3,
        },
    };
    assert!(codec::decode(&codec::encode(&base)).is_ok());
    // Each variant breaks one rule and must be refused for that rule.
    let mut bad: Vec<(Message, &str)> = Vec::new();
    let mut m = base.clone();
    m.term = 0;
    m.body = MessageBody::Heartbeat { commit: 0, ctx: 0 };
    bad.push((m, "term 0 is for forwarded requests only"));
    let mut m = base.clone();
    m.from = 0;
    bad.push((m, "message from or to node 0"));
    let mut m = base.clone();
    if let MessageBody::Append { entries, .. } = &mut m.body {
        entries[0].index = 9; // gap
    }
    bad.push((m, "append entries not contiguous"));
    let mut m = base.clone();
    if let MessageBody::Append { entries, .. } = &mut m.body {
        entries[0].term = 6; // beyond the message term
    }
    bad.push((m, "append entry term out of order"));
    let mut m = base.clone();
    if let MessageBody::Append { entries, .. } = &mut m.body {
        entries[0].term = 3; // below prev_term
    }
    bad.push((m, "append entry term out of order"));
    let mut m = base.clone();
    if let MessageBody::Append {
        prev_term, entries, ..
    } = &mut m.body
    {
        *prev_term = 6;
        entries.clear();
    }
    bad.push((m, "append prev_term above message term"));
    let mut m = base.clone();
    if let MessageBody::Append {
        prev_index,
        entries,
        ..
    } = &mut m.body
    {
        *prev_index = u64::MAX;
        entries[0].index = 0;
    }
    bad.push((m, "append entry index overflows"));
    let mut m = base.clone();
    m.body = MessageBody::ReadIndex { ctx: 1 }; // forwarded but with a term
    bad.push((m, "term 0 is for forwarded requests only"));
    let snapshot = |index, term, voters: Vec<u64>| MessageBody::Snapshot {
        meta: SnapshotMeta {
            index,
            term,
            conf: ConfState {
                voters,
                learners: vec![],
            },
        },
    };
    let mut m = base.clone();
    m.body = snapshot(3, 2, vec![2, 1]); // unsorted
    bad.push((m, "snapshot meta malformed"));
    let mut m = base.clone();
    m.body = snapshot(3, 2, vec![]); // no voters
    bad.push((m, "snapshot meta malformed"));
    let mut m = base;
    m.body = snapshot(3, 6, vec![1, 2]);
    bad.push((m, "snapshot term above message term"));
    for (m, why) in bad {
        assert_eq!(
            codec::decode(&codec::encode(&m)),
            Err(CodecError::Invalid(why)),
            "{m:?}"
        );
    }
}

/// Feeds random and mutated frames: decode returns a message or an error,
/// never panics, and whatever it accepts is well formed and re-encodes to
/// an equal message.
#[test]
fn fuzz_random_and_mutated_frames() {
    let mut rng = StdRng::seed_from_u64(3);
    let check = |bytes: &[u8]| {
        if let Ok(m) = codec::decode(bytes) {
            assert_eq!(m.validate(), Ok(()), "{m:?}");
            assert_eq!(codec::decode(&codec::encode(&m)).unwrap(), m);
        }
    };
    for _ in 0..20_000 {
        let n = rng.random_range(0..300);
        let mut bytes: Vec<u8> = (0..n).map(|_| rng.random()).collect();
        if !bytes.is_empty() {
            bytes[0] = MESSAGE_CODEC_VERSION;
        }
        check(&bytes);
    }
    let mut accepted_mutants = 0;
    for _ in 0..3_000 {
        for m in samples(&mut rng) {
            let frame = codec::encode(&m);
            let mut f = frame.clone();
            match rng.random_range(0..4) {
                0 => {
                    for _ in 0..rng.random_range(1..4) {
                        let i = rng.random_range(1..f.len());
                        f[i] ^= 1 << rng.random_range(0..8);
                    }
                }
                1 => f.truncate(rng.random_range(0..f.len())),
                2 => {
                    let extra = rng.random_range(1..16);
                    f.extend((0..extra).map(|_| rng.random::<u8>()));
                }
                _ => {
                    let i = rng.random_range(1..f.len());
                    f[i] = rng.random();
                }
            }
            if codec::decode(&f).is_ok() {
                accepted_mutants += 1;
            }
            check(&f);
        }
    }
    // Flips in plain integers, and random bytes read as the root of a small
    // message, decode to another valid message (about half of all mutants);
    // the rest must be refused.
    assert!(accepted_mutants < 3_000 * 13 * 2 / 3, "{accepted_mutants}");
}
