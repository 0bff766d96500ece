//! Client requests a follower forwards to the leader, and their answers.
//!
//! Some requests only the leader can serve: it alone keeps lease deadlines
//! (LeaseKeepAlive, LeaseTimeToLive) and knows how far a learner got
//! (MemberPromote). A follower sends them to the leader over the peer
//! transport on their own group, [`FORWARD_GROUP_ID`], so the Raft codec
//! never sees them; the leader serves each exactly as a local request and
//! sends the answer back under the same request id.
//!
//! # Wire format
//! Integers are little-endian. Every payload starts with the format version
//! (u8, [`FORWARD_VERSION`]), a tag (u8) and the request id (u64), then:
//!
//! | tag | what | body |
//! |-----|------|------|
//! | 1 | KeepAlive request | lease id i64 |
//! | 2 | TimeToLive request | lease id i64, keys u8 (0 or 1) |
//! | 3 | Promote request | member id u64 |
//! | 0x81 | KeepAlive answer | TTL i64 |
//! | 0x82 | TimeToLive answer | lease id i64, TTL i64, granted TTL i64, key count u32, each key as u32 length and bytes |
//! | 0x83 | Promote answer | the member, member count u32, each member; a member is a u32 length and [`Member::encode`]'s bytes |
//! | 0xff | failure | error code u8, detail u8, detail id u64 |
//!
//! Decoding never panics and allocates no more than the bytes received: a
//! bad version, an unknown tag or code, a count beyond what is left,
//! trailing bytes or a member that does not decode are errors.

use crate::membership::{Member, MembershipError, MEMBERS_MAX};
use crate::shard::{LeaseInfo, MemberChanged, ShardError};
use crate::wire::{Reader, WireError};

/// The peer transport group that carries forwarded requests and answers
/// (Raft messages use [`crate::shard::GROUP_ID`]).
pub const FORWARD_GROUP_ID: u64 = u64::MAX;
/// The format this build speaks.
pub const FORWARD_VERSION: u8 = 1;
/// Version, tag, request id.
pub const FORWARD_HEADER_BYTES: usize = 1 + 1 + 8;

const TAG_KEEP_ALIVE: u8 = 1;
const TAG_TIME_TO_LIVE: u8 = 2;
const TAG_PROMOTE: u8 = 3;
const TAG_KEEP_ALIVE_OK: u8 = 0x81;
const TAG_TIME_TO_LIVE_OK: u8 = 0x82;
const TAG_PROMOTE_OK: u8 = 0x83;
const TAG_FAILED: u8 = 0xff;

/// A request only the leader serves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardRequest {
    KeepAlive { lease: i64 },
    TimeToLive { lease: i64, keys: bool },
    Promote { member: u64 },
}

impl ForwardRequest {
    /// Whether serving it twice does no harm, so a lost request may be sent
    /// again (a promotion may not: the second would be refused).
    pub fn idempotent(&self) -> bool {
        !matches!(self, ForwardRequest::Promote { .. })
    }
}

/// The leader's answer to a [`ForwardRequest`]. The asker fills the
/// response header from its own state, as etcd's follower does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ForwardAnswer {
    KeepAlive { ttl_secs: i64 },
    TimeToLive(LeaseInfo),
    Promote(MemberChanged),
    Failed(ShardError),
}

impl ForwardAnswer {
    /// Whether this answers `req` (a failure answers anything).
    pub fn answers(&self, req: &ForwardRequest) -> bool {
        matches!(
            (self, req),
            (ForwardAnswer::Failed(_), _)
                | (
                    ForwardAnswer::KeepAlive { .. },
                    ForwardRequest::KeepAlive { .. }
                )
                | (
                    ForwardAnswer::TimeToLive(_),
                    ForwardRequest::TimeToLive { .. }
                )
                | (ForwardAnswer::Promote(_), ForwardRequest::Promote { .. })
        )
    }
}

/// One payload on [`FORWARD_GROUP_ID`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Forward {
    Request { id: u64, request: ForwardRequest },
    Answer { id: u64, answer: ForwardAnswer },
}

/// Why a payload is not a valid forwarded request or answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    BadVersion(u8),
    BadTag(u8),
    BadErrorCode(u8, u8),
    Truncated,
    TooMany(&'static str),
    Invalid(&'static str),
    BadMember(crate::membership::DecodeError),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::BadVersion(v) => write!(f, "forwarded request: unknown version {v}"),
            DecodeError::BadTag(t) => write!(f, "forwarded request: unknown tag {t:#x}"),
            DecodeError::BadErrorCode(c, d) => {
                write!(f, "forwarded request: unknown error code {c}/{d}")
            }
            DecodeError::Truncated => f.write_str("forwarded request: truncated"),
            DecodeError::TooMany(what) => write!(f, "forwarded request: too many {what}"),
            DecodeError::Invalid(why) => write!(f, "forwarded request: {why}"),
            DecodeError::BadMember(e) => write!(f, "forwarded request: {e}"),
        }
    }
}

impl std::error::Error for DecodeError {}

// ---------------------------------------------------------------- encoding

impl Forward {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(FORWARD_HEADER_BYTES + 32);
        out.push(FORWARD_VERSION);
        match self {
            Forward::Request { id, request } => {
                let (tag, a, b): (u8, [u8; 8], Option<u8>) = match request {
                    ForwardRequest::KeepAlive { lease } => {
                        (TAG_KEEP_ALIVE, lease.to_le_bytes(), None)
                    }
                    ForwardRequest::TimeToLive { lease, keys } => {
                        (TAG_TIME_TO_LIVE, lease.to_le_bytes(), Some(u8::from(*keys)))
                    }
                    ForwardRequest::Promote { member } => (TAG_PROMOTE, member.to_le_bytes(), None),
                };
                out.push(tag);
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&a);
                out.extend(b);
            }
            Forward::Answer { id, answer } => match answer {
                ForwardAnswer::KeepAlive { ttl_secs } => {
                    out.push(TAG_KEEP_ALIVE_OK);
                    out.extend_from_slice(&id.to_le_bytes());
                    out.extend_from_slice(&ttl_secs.to_le_bytes());
                }
                ForwardAnswer::TimeToLive(info) => {
                    out.push(TAG_TIME_TO_LIVE_OK);
                    out.extend_from_slice(&id.to_le_bytes());
                    for n in [info.id, info.ttl_secs, info.granted_ttl_secs] {
                        out.extend_from_slice(&n.to_le_bytes());
                    }
                    put_len(&mut out, info.keys.len());
                    for k in &info.keys {
                        put_bytes(&mut out, k);
                    }
                }
                ForwardAnswer::Promote(changed) => {
                    out.push(TAG_PROMOTE_OK);
                    out.extend_from_slice(&id.to_le_bytes());
                    put_bytes(&mut out, &changed.member.encode());
                    put_len(&mut out, changed.members.len());
                    for m in &changed.members {
                        put_bytes(&mut out, &m.encode());
                    }
                }
                ForwardAnswer::Failed(e) => {
                    out.push(TAG_FAILED);
                    out.extend_from_slice(&id.to_le_bytes());
                    let (code, detail, detail_id) = error_code(e);
                    out.push(code);
                    out.push(detail);
                    out.extend_from_slice(&detail_id.to_le_bytes());
                }
            },
        }
        out
    }

    /// Decodes [`Forward::encode`]'s output; never panics on other bytes.
    pub fn decode(bytes: &[u8]) -> Result<Forward, DecodeError> {
        let mut r = Reader::new(bytes);
        let version = r.u8()?;
        if version != FORWARD_VERSION {
            return Err(DecodeError::BadVersion(version));
        }
        let tag = r.u8()?;
        let id = r.u64()?;
        let f = match tag {
            TAG_KEEP_ALIVE => Forward::Request {
                id,
                request: ForwardRequest::KeepAlive { lease: r.i64()? },
            },
            TAG_TIME_TO_LIVE => {
                let lease = r.i64()?;
                let keys = match r.u8()? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("keys flag not 0 or 1")),
                };
                Forward::Request {
                    id,
                    request: ForwardRequest::TimeToLive { lease, keys },
                }
            }
            TAG_PROMOTE => Forward::Request {
                id,
                request: ForwardRequest::Promote { member: r.u64()? },
            },
            TAG_KEEP_ALIVE_OK => Forward::Answer {
                id,
                answer: ForwardAnswer::KeepAlive { ttl_secs: r.i64()? },
            },
            TAG_TIME_TO_LIVE_OK => {
                let lease = r.i64()?;
                let ttl_secs = r.i64()?;
                let granted_ttl_secs = r.i64()?;
                let n = r.count(usize::MAX, 4, "keys")?;
                let mut keys = Vec::with_capacity(n);
                for _ in 0..n {
                    keys.push(r.bytes()?.to_vec());
                }
                Forward::Answer {
                    id,
                    answer: ForwardAnswer::TimeToLive(LeaseInfo {
                        id: lease,
                        ttl_secs,
                        granted_ttl_secs,
                        keys,
                    }),
                }
            }
            TAG_PROMOTE_OK => {
                let member = read_member(&mut r)?;
                let n = r.count(MEMBERS_MAX, 4, "members")?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(read_member(&mut r)?);
                }
                Forward::Answer {
                    id,
                    answer: ForwardAnswer::Promote(MemberChanged { member, members }),
                }
            }
            TAG_FAILED => {
                let code = r.u8()?;
                let detail = r.u8()?;
                let detail_id = r.u64()?;
                Forward::Answer {
                    id,
                    answer: ForwardAnswer::Failed(error_from_code(code, detail, detail_id)?),
                }
            }
            t => return Err(DecodeError::BadTag(t)),
        };
        r.finish()?;
        Ok(f)
    }
}

fn put_len(out: &mut Vec<u8>, n: usize) {
    // A frame is far below 4 GiB (`peer::FRAME_BYTES_MAX`); a longer
    // payload is refused by the transport anyway.
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    put_len(out, b.len());
    out.extend_from_slice(b);
}

// ------------------------------------------------------------------ errors

const ERR_STOPPED: u8 = 1;
const ERR_TOO_LARGE: u8 = 2;
const ERR_NO_LEADER: u8 = 3;
const ERR_NOT_LEADER: u8 = 4;
const ERR_TIMEOUT: u8 = 5;
const ERR_TOO_MANY_REQUESTS: u8 = 6;
const ERR_NOT_FOR_LEARNER: u8 = 7;
const ERR_MEMBERSHIP: u8 = 8;
const ERR_ENGINE: u8 = 9;
const ERR_BAD_TRANSFEREE: u8 = 10;
const ERR_TRANSFER_TIMEOUT: u8 = 11;
const ERR_NO_LEADER_DEADLINE: u8 = 12;

/// A [`ShardError`] as (code, detail, detail id).
fn error_code(e: &ShardError) -> (u8, u8, u64) {
    match e {
        ShardError::Stopped => (ERR_STOPPED, 0, 0),
        ShardError::TooLarge => (ERR_TOO_LARGE, 0, 0),
        ShardError::NoLeader => (ERR_NO_LEADER, 0, 0),
        ShardError::NotLeader => (ERR_NOT_LEADER, 0, 0),
        ShardError::Timeout => (ERR_TIMEOUT, 0, 0),
        ShardError::TooManyRequests => (ERR_TOO_MANY_REQUESTS, 0, 0),
        ShardError::NotForLearner => (ERR_NOT_FOR_LEARNER, 0, 0),
        ShardError::BadTransferee => (ERR_BAD_TRANSFEREE, 0, 0),
        ShardError::TransferTimeout => (ERR_TRANSFER_TIMEOUT, 0, 0),
        ShardError::NoLeaderDeadline => (ERR_NO_LEADER_DEADLINE, 0, 0),
        ShardError::Membership(m) => {
            use MembershipError as M;
            let (detail, id) = match m {
                M::IdRemoved => (1, 0),
                M::IdExists => (2, 0),
                M::IdNotFound => (3, 0),
                M::PeerUrlExists => (4, 0),
                M::MemberNotLearner => (5, 0),
                M::LearnerNotReady => (6, 0),
                M::TooManyLearners => (7, 0),
                M::NotEnoughStarted => (8, 0),
                // The detail text is for the leader's logs only.
                M::BadUrls(_) => (9, 0),
                M::DuplicateId(id) => (10, *id),
                M::ZeroId => (11, 0),
                M::AttributesTooLarge => (12, 0),
                M::Unhealthy => (13, 0),
            };
            (ERR_MEMBERSHIP, detail, id)
        }
        ShardError::Engine(e) => {
            use engine::Error as E;
            let detail = match e {
                E::EmptyKey => 1,
                E::ValueProvided => 2,
                E::LeaseProvided => 3,
                E::KeyNotFound => 4,
                E::TooManyOps => 5,
                E::DuplicateKey => 6,
                E::InvalidSortOption => 7,
                E::Compacted => 8,
                E::FutureRev => 9,
                E::LeaseNotFound => 10,
                E::LeaseExists => 11,
                E::LeaseTtlTooLarge => 12,
                E::Corrupt => 13,
            };
            (ERR_ENGINE, detail, 0)
        }
    }
}

fn error_from_code(code: u8, detail: u8, detail_id: u64) -> Result<ShardError, DecodeError> {
    let bad = || DecodeError::BadErrorCode(code, detail);
    let plain = |e: ShardError| {
        if detail == 0 && detail_id == 0 {
            Ok(e)
        } else {
            Err(bad())
        }
    };
    match code {
        ERR_STOPPED => plain(ShardError::Stopped),
        ERR_TOO_LARGE => plain(ShardError::TooLarge),
        ERR_NO_LEADER => plain(ShardError::NoLeader),
        ERR_NOT_LEADER => plain(ShardError::NotLeader),
        ERR_TIMEOUT => plain(ShardError::Timeout),
        ERR_TOO_MANY_REQUESTS => plain(ShardError::TooManyRequests),
        ERR_NOT_FOR_LEARNER => plain(ShardError::NotForLearner),
        ERR_BAD_TRANSFEREE => plain(ShardError::BadTransferee),
        ERR_TRANSFER_TIMEOUT => plain(ShardError::TransferTimeout),
        ERR_NO_LEADER_DEADLINE => plain(ShardError::NoLeaderDeadline),
        ERR_MEMBERSHIP => {
            use MembershipError as M;
            if detail != 10 && detail_id != 0 {
                return Err(bad());
            }
            let m = match detail {
                1 => M::IdRemoved,
                2 => M::IdExists,
                3 => M::IdNotFound,
                4 => M::PeerUrlExists,
                5 => M::MemberNotLearner,
                6 => M::LearnerNotReady,
                7 => M::TooManyLearners,
                8 => M::NotEnoughStarted,
                9 => M::BadUrls(String::new()),
                10 => M::DuplicateId(detail_id),
                11 => M::ZeroId,
                12 => M::AttributesTooLarge,
                13 => M::Unhealthy,
                _ => return Err(bad()),
            };
            Ok(ShardError::Membership(m))
        }
        ERR_ENGINE => {
            use engine::Error as E;
            if detail_id != 0 {
                return Err(bad());
            }
            let e = match detail {
                1 => E::EmptyKey,
                2 => E::ValueProvided,
                3 => E::LeaseProvided,
                4 => E::KeyNotFound,
                5 => E::TooManyOps,
                6 => E::DuplicateKey,
                7 => E::InvalidSortOption,
                8 => E::Compacted,
                9 => E::FutureRev,
                10 => E::LeaseNotFound,
                11 => E::LeaseExists,
                12 => E::LeaseTtlTooLarge,
                13 => E::Corrupt,
                _ => return Err(bad()),
            };
            Ok(ShardError::Engine(e))
        }
        _ => Err(bad()),
    }
}

fn read_member(r: &mut Reader) -> Result<Member, DecodeError> {
    Member::decode(r.bytes()?).map_err(DecodeError::BadMember)
}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DecodeError::Truncated,
            WireError::TooMany(what) => DecodeError::TooMany(what),
            WireError::Invalid(why) => DecodeError::Invalid(why),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, RngCore, SeedableRng};

    fn member(id: u64, learner: bool) -> Member {
        Member {
            id,
            name: format!("m{id}"),
            peer_urls: vec![format!("http://127.0.0.1:{}", 2380 + id)],
            client_urls: vec![format!("http://127.0.0.1:{}", 2379 + id)],
            is_learner: learner,
        }
    }

    fn every_error() -> Vec<ShardError> {
        use engine::Error as E;
        use MembershipError as M;
        let mut v = vec![
            ShardError::Stopped,
            ShardError::TooLarge,
            ShardError::NoLeader,
            ShardError::NotLeader,
            ShardError::Timeout,
            ShardError::TooManyRequests,
            ShardError::NotForLearner,
            ShardError::BadTransferee,
            ShardError::TransferTimeout,
        ];
        for m in [
            M::IdRemoved,
            M::IdExists,
            M::IdNotFound,
            M::PeerUrlExists,
            M::MemberNotLearner,
            M::LearnerNotReady,
            M::TooManyLearners,
            M::NotEnoughStarted,
            M::BadUrls(String::new()),
            M::DuplicateId(0x1234_5678_9abc),
            M::ZeroId,
            M::AttributesTooLarge,
            M::Unhealthy,
        ] {
            v.push(ShardError::Membership(m));
        }
        for e in [
            E::EmptyKey,
            E::ValueProvided,
            E::LeaseProvided,
            E::KeyNotFound,
            E::TooManyOps,
            E::DuplicateKey,
            E::InvalidSortOption,
            E::Compacted,
            E::FutureRev,
            E::LeaseNotFound,
            E::LeaseExists,
            E::LeaseTtlTooLarge,
            E::Corrupt,
        ] {
            v.push(ShardError::Engine(e));
        }
        v
    }

    fn samples() -> Vec<Forward> {
        let mut v = vec![
            Forward::Request {
                id: 1,
                request: ForwardRequest::KeepAlive { lease: 0x694d_1a2b },
            },
            Forward::Request {
                id: u64::MAX,
                request: ForwardRequest::KeepAlive { lease: -1 },
            },
            Forward::Request {
                id: 2,
                request: ForwardRequest::TimeToLive {
                    lease: 7,
                    keys: true,
                },
            },
            Forward::Request {
                id: 3,
                request: ForwardRequest::TimeToLive {
                    lease: i64::MIN,
                    keys: false,
                },
            },
            Forward::Request {
                id: 4,
                request: ForwardRequest::Promote {
                    member: 0xdead_beef,
                },
            },
            Forward::Answer {
                id: 5,
                answer: ForwardAnswer::KeepAlive { ttl_secs: 5 },
            },
            Forward::Answer {
                id: 6,
                answer: ForwardAnswer::TimeToLive(LeaseInfo {
                    id: 9,
                    ttl_secs: -1,
                    granted_ttl_secs: 0,
                    keys: Vec::new(),
                }),
            },
            Forward::Answer {
                id: 7,
                answer: ForwardAnswer::TimeToLive(LeaseInfo {
                    id: 9,
                    ttl_secs: 3,
                    granted_ttl_secs: 5,
                    keys: vec![b"a".to_vec(), Vec::new(), vec![0xff; 300]],
                }),
            },
            Forward::Answer {
                id: 8,
                answer: ForwardAnswer::Promote(MemberChanged {
                    member: member(4, false),
                    members: (1..=4).map(|i| member(i, false)).collect(),
                }),
            },
        ];
        for (i, e) in every_error().into_iter().enumerate() {
            v.push(Forward::Answer {
                id: 100 + i as u64,
                answer: ForwardAnswer::Failed(e),
            });
        }
        v
    }

    #[test]
    fn every_message_round_trips() {
        for f in samples() {
            let b = f.encode();
            assert_eq!(b[0], FORWARD_VERSION);
            assert_eq!(Forward::decode(&b), Ok(f.clone()), "{f:?}");
        }
    }

    #[test]
    fn the_layout_is_pinned() {
        let f = Forward::Request {
            id: 0x0102,
            request: ForwardRequest::TimeToLive {
                lease: 0x0304,
                keys: true,
            },
        };
        assert_eq!(
            f.encode(),
            [1, 2, 2, 1, 0, 0, 0, 0, 0, 0, 4, 3, 0, 0, 0, 0, 0, 0, 1]
        );
        let f = Forward::Answer {
            id: 1,
            answer: ForwardAnswer::Failed(ShardError::Membership(MembershipError::LearnerNotReady)),
        };
        let b = f.encode();
        assert_eq!(&b[..2], [1, 0xff]);
        assert_eq!(&b[10..12], [ERR_MEMBERSHIP, 6]);
    }

    #[test]
    fn every_truncation_and_extension_is_refused() {
        for f in samples() {
            let b = f.encode();
            for n in 0..b.len() {
                assert!(Forward::decode(&b[..n]).is_err(), "{f:?} cut at {n}");
            }
            let mut longer = b.clone();
            longer.push(0);
            assert_eq!(
                Forward::decode(&longer),
                Err(DecodeError::Invalid("trailing bytes"))
            );
        }
    }

    #[test]
    fn bad_versions_tags_and_codes_are_refused() {
        let mut b = Forward::Request {
            id: 1,
            request: ForwardRequest::Promote { member: 2 },
        }
        .encode();
        b[0] = 2;
        assert_eq!(Forward::decode(&b), Err(DecodeError::BadVersion(2)));
        b[0] = FORWARD_VERSION;
        b[1] = 0x44;
        assert_eq!(Forward::decode(&b), Err(DecodeError::BadTag(0x44)));
        let mut b = Forward::Answer {
            id: 1,
            answer: ForwardAnswer::Failed(ShardError::Timeout),
        }
        .encode();
        b[10] = 200;
        assert!(matches!(
            Forward::decode(&b),
            Err(DecodeError::BadErrorCode(200, 0))
        ));
        // A plain error with a detail is not canonical.
        b[10] = ERR_TIMEOUT;
        b[11] = 1;
        assert!(Forward::decode(&b).is_err());
        // A keys flag other than 0 or 1.
        let mut b = Forward::Request {
            id: 1,
            request: ForwardRequest::TimeToLive {
                lease: 1,
                keys: false,
            },
        }
        .encode();
        *b.last_mut().unwrap() = 2;
        assert!(Forward::decode(&b).is_err());
    }

    #[test]
    fn hostile_counts_allocate_nothing() {
        // A TimeToLive answer claiming 4 billion keys in a few bytes.
        let mut b = vec![FORWARD_VERSION, TAG_TIME_TO_LIVE_OK];
        b.extend_from_slice(&1u64.to_le_bytes());
        b.extend_from_slice(&[0; 24]);
        b.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(Forward::decode(&b), Err(DecodeError::Truncated));
        // A promote answer with more members than any cluster holds.
        let mut b = vec![FORWARD_VERSION, TAG_PROMOTE_OK];
        b.extend_from_slice(&1u64.to_le_bytes());
        let m = member(1, false).encode();
        b.extend_from_slice(&(m.len() as u32).to_le_bytes());
        b.extend_from_slice(&m);
        b.extend_from_slice(&(MEMBERS_MAX as u32 + 1).to_le_bytes());
        assert_eq!(Forward::decode(&b), Err(DecodeError::TooMany("members")));
        // A member whose checksum does not match.
        let mut b = Forward::Answer {
            id: 1,
            answer: ForwardAnswer::Promote(MemberChanged {
                member: member(1, true),
                members: vec![member(1, true)],
            }),
        }
        .encode();
        b[16] ^= 1;
        assert!(matches!(
            Forward::decode(&b),
            Err(DecodeError::BadMember(_))
        ));
    }

    #[test]
    fn answers_match_their_requests() {
        let ka = ForwardRequest::KeepAlive { lease: 1 };
        let ttl = ForwardRequest::TimeToLive {
            lease: 1,
            keys: false,
        };
        let pr = ForwardRequest::Promote { member: 1 };
        assert!(ForwardAnswer::KeepAlive { ttl_secs: 1 }.answers(&ka));
        assert!(!ForwardAnswer::KeepAlive { ttl_secs: 1 }.answers(&ttl));
        assert!(ForwardAnswer::TimeToLive(LeaseInfo::default()).answers(&ttl));
        assert!(!ForwardAnswer::TimeToLive(LeaseInfo::default()).answers(&pr));
        assert!(ForwardAnswer::Failed(ShardError::NotLeader).answers(&pr));
        assert!(ka.idempotent() && ttl.idempotent() && !pr.idempotent());
    }

    /// Random bytes, and valid messages with random bytes flipped, cut or
    /// appended: the decoder answers without panicking, and whatever it
    /// accepts encodes back to the same bytes (one encoding per message).
    #[test]
    fn random_bytes_never_panic_the_decoder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b76_696b);
        let samples: Vec<Vec<u8>> = samples().iter().map(Forward::encode).collect();
        let mut accepted = 0;
        for round in 0..200_000 {
            let b: Vec<u8> = if round % 2 == 0 {
                let n = rng.random_range(0..64);
                let mut b = vec![0u8; n];
                rng.fill_bytes(&mut b);
                // Most rounds get a valid version and tag, to go deeper.
                if n >= 2 && rng.random_bool(0.8) {
                    b[0] = FORWARD_VERSION;
                    b[1] = [1, 2, 3, 0x81, 0x82, 0x83, 0xff][rng.random_range(0..7)];
                }
                b
            } else {
                let mut b = samples[rng.random_range(0..samples.len())].clone();
                for _ in 0..rng.random_range(1..4) {
                    match rng.random_range(0..3) {
                        0 if !b.is_empty() => {
                            let i = rng.random_range(0..b.len());
                            b[i] ^= 1 << rng.random_range(0..8);
                        }
                        1 if !b.is_empty() => {
                            let n = rng.random_range(0..b.len());
                            b.truncate(n);
                        }
                        _ => b.push(rng.random()),
                    }
                }
                b
            };
            if let Ok(f) = Forward::decode(&b) {
                accepted += 1;
                assert_eq!(f.encode(), b, "not canonical: {f:?}");
            }
        }
        assert!(accepted > 0, "the mutations never produced a valid message");
    }
}
