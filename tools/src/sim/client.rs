//! Simulated clients and the history they record.
//!
//! A client has at most one operation outstanding. It sends it to the node
//! it believes leads, waits for a reply until a deadline, and then either
//! records the outcome or gives up:
//!
//! * a reply with a result completes the operation;
//! * "not leader" and "proposal dropped" are definite failures: the node
//!   never proposed the command, so the operation is left out of the
//!   history and the client retries elsewhere;
//! * a deadline passing leaves the operation with an unknown outcome (the
//!   command may still commit later), which the linearizability checker
//!   treats as possibly taking effect at any time after its call, or never.
//!
//! A client never retries: after a failure or a timeout it moves on to a
//! new random operation with a new id (and, for a write, a new value), so
//! the state machine needs no request deduplication.

use super::linearizability::{KvInput, KvOperation, KvOutput, Operation};
use super::network::CLIENT_BASE;
use super::rng::Rng;

/// What a client asks a node.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// A single-key operation on key number `key`.
    Kv {
        /// Key number (the key is `key_name(key)`).
        key: u32,
        /// The operation.
        input: KvInput,
        /// Read through the log rather than with ReadIndex (reads only).
        via_log: bool,
    },
    /// Compact the store at this revision (not part of the history).
    Compact(i64),
}

/// What a node answers.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// The operation took effect (or the read was served) at `revision`.
    Done {
        /// The result.
        output: Option<KvOutput>,
        /// The store's revision the answer is from.
        revision: i64,
    },
    /// The node does not lead; `hint` may name the leader.
    NotLeader {
        /// A node that may lead.
        hint: u64,
    },
    /// The node refused the operation: it did not propose it, or applying
    /// it failed (as a compaction at or below the last one does).
    Refused(String),
}

/// The storage key of key number `k`.
pub fn key_name(k: u32) -> Vec<u8> {
    format!("k{k}").into_bytes()
}

/// An encoded value. Values are unique `u64`s written as text.
pub fn value_bytes(v: u64) -> Vec<u8> {
    format!("v{v}").into_bytes()
}

/// Parses a value written by [`value_bytes`].
pub fn parse_value(b: &[u8]) -> Option<u64> {
    std::str::from_utf8(b.strip_prefix(b"v")?)
        .ok()?
        .parse()
        .ok()
}

/// One outstanding operation.
#[derive(Clone, Debug)]
pub struct Outstanding {
    /// Request id (unique in the run).
    pub id: u64,
    /// The node it was sent to.
    pub node: u64,
    /// The request.
    pub request: Request,
    /// Position of the call in the run's event order.
    pub call: u64,
    /// Step after which the client gives up.
    pub deadline: u64,
    /// The highest revision any operation completed with before this one
    /// was called: linearizability demands at least this much.
    pub revision_floor: i64,
}

/// A simulated client.
#[derive(Debug)]
pub struct Client {
    /// Client number.
    pub index: u32,
    /// The node it sends to next.
    pub target: u64,
    /// The operation in flight.
    pub outstanding: Option<Outstanding>,
    /// The step at which it may issue its next operation.
    pub next_at: u64,
    /// Values this client saw per key, for compare-and-put guesses.
    pub seen: Vec<Option<u64>>,
}

/// One history record: the key and the operation.
pub type Record = (u32, KvOperation);

impl Client {
    /// A new client aiming at `target`.
    pub fn new(index: u32, target: u64, keys: u32) -> Client {
        Client {
            index,
            target,
            outstanding: None,
            next_at: 0,
            seen: vec![None; keys as usize],
        }
    }

    /// The client's network endpoint.
    pub fn endpoint(&self) -> u64 {
        CLIENT_BASE + u64::from(self.index)
    }

    /// Picks a random request. `next_value` hands out unique values.
    pub fn pick_request(&self, rng: &mut Rng, keys: u32, next_value: &mut u64) -> Request {
        let key = rng.below(u64::from(keys)) as u32;
        let roll = rng.below(100);
        let guess = rng.range(1, (*next_value).max(1));
        let mut fresh = || {
            *next_value += 1;
            *next_value
        };
        let input = if roll < 35 {
            KvInput::Put(fresh())
        } else if roll < 65 {
            KvInput::Get
        } else if roll < 85 {
            // Usually the value this client last saw, sometimes a guess.
            let expect = match self.seen[key as usize] {
                Some(v) if rng.chance(4, 5) => v,
                _ => guess,
            };
            KvInput::Cas {
                expect,
                new: fresh(),
            }
        } else if roll < 97 {
            KvInput::Delete
        } else {
            return Request::Compact(rng.range(1, 40) as i64);
        };
        Request::Kv {
            key,
            input,
            via_log: matches!(input, KvInput::Get) && rng.chance(1, 4),
        }
    }

    /// Records what this client learned about a key from a result.
    pub fn learn(&mut self, key: u32, input: &KvInput, output: &KvOutput) {
        let seen = &mut self.seen[key as usize];
        match (input, output) {
            (KvInput::Put(v), _) => *seen = Some(*v),
            (_, KvOutput::Get(v)) => *seen = *v,
            (KvInput::Cas { new, .. }, KvOutput::Cas(true)) => *seen = Some(*new),
            (KvInput::Delete, _) => *seen = None,
            _ => {}
        }
    }
}

/// The run's history of client operations.
#[derive(Debug, Default)]
pub struct History {
    /// Completed and unknown operations, in completion order.
    pub records: Vec<Record>,
    /// Operations that failed definitely (left out of `records`).
    pub failed: u64,
    /// Operations with unknown outcome.
    pub unknown: u64,
    /// Operations completed.
    pub ok: u64,
}

impl History {
    /// Records a completed operation.
    pub fn complete(&mut self, client: u32, o: &Outstanding, ret: u64, output: KvOutput) {
        if let Request::Kv { key, input, .. } = &o.request {
            self.ok += 1;
            self.records.push((
                *key,
                Operation {
                    client,
                    call: o.call,
                    ret: Some(ret),
                    input: *input,
                    output: Some(output),
                },
            ));
        }
    }

    /// Records an operation whose outcome is unknown. Reads are dropped:
    /// a read without an answer constrains nothing.
    pub fn unknown(&mut self, client: u32, o: &Outstanding) {
        if let Request::Kv { key, input, .. } = &o.request {
            self.unknown += 1;
            if *input == KvInput::Get {
                return;
            }
            self.records.push((
                *key,
                Operation {
                    client,
                    call: o.call,
                    ret: None,
                    input: *input,
                    output: None,
                },
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_round_trip() {
        assert_eq!(parse_value(&value_bytes(42)), Some(42));
        assert_eq!(parse_value(b"x"), None);
        assert_eq!(key_name(3), b"k3".to_vec());
    }
}
