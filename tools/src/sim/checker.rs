//! The cluster invariants checked while a simulation runs.
//!
//! The nodes report what they do (become leader, append, commit, apply,
//! acknowledge) and the [`Checker`] keeps just enough global knowledge to
//! check Raft's safety properties incrementally, after every step:
//!
//! * **Election safety**: at most one leader per term, ever.
//! * **Log matching**: two logs holding an entry with the same index and
//!   term hold the same entry there and agree on every entry before it.
//!   Checked at each append: an entry `(i, t)` must carry the same payload
//!   and follow an entry of the same term as every other copy of `(i, t)`
//!   ever appended; by induction over `i` that makes the prefixes equal.
//! * **Leader completeness**: an entry committed while the highest term in
//!   the cluster was `T` is in the log of every leader of a term above `T`.
//!   Checked when a node first leads a term (a leader only appends after
//!   that, which is checked too).
//! * **State machine safety**: every node that commits or applies index `i`
//!   commits the same entry, reaches the same revision after it, and (when
//!   it reports one) the same state hash.
//! * **Acknowledged writes are committed**: when a client hears that its
//!   write took effect, an entry carrying that request is committed (and,
//!   by state machine safety, stays the entry at its index).
//! * **At most once**: a client request is committed at most once (a
//!   duplicated proposal would apply a write twice).

use std::collections::{BTreeMap, HashMap};

/// A checksum of an entry's payload.
pub fn payload_hash(data: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What the checker knows of one committed index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Committed {
    term: u64,
    hash: u64,
    /// The highest term in the cluster when the commit was first seen.
    known_term: u64,
    /// The request id the entry carries (0: none).
    request: u64,
    /// Revision and key-value digest after applying it, once some node
    /// applied it.
    applied: Option<(i64, u64)>,
}

/// One entry of a node's log as the checker sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LogMeta {
    /// Raft term.
    pub term: u64,
    /// [`payload_hash`] of its data.
    pub hash: u64,
}

/// Global knowledge for the safety checks; see the module doc.
#[derive(Debug, Default)]
pub struct Checker {
    /// term -> the node that led it.
    leaders: BTreeMap<u64, u64>,
    /// (index, term) -> (payload hash, term of the entry before).
    entries: HashMap<(u64, u64), (u64, u64)>,
    /// Committed entries, index `i` at `i - 1`.
    committed: Vec<Committed>,
    /// index -> state hash after applying it.
    state_hashes: BTreeMap<u64, u32>,
    /// Acknowledged writes.
    acked: u64,
    /// Committed requests: request id -> index.
    requests: HashMap<u64, u64>,
    /// Elections seen.
    pub elections: u64,
}

impl Checker {
    /// A checker that has seen nothing.
    pub fn new() -> Checker {
        Checker::default()
    }

    /// Highest committed index seen anywhere.
    pub fn commit_index(&self) -> u64 {
        self.committed.len() as u64
    }

    /// `node` reports that it leads `term`; `log` is its whole log. The
    /// completeness check runs the first time `term` is reported.
    pub fn leader(&mut self, node: u64, term: u64, log: &[LogMeta]) -> Result<(), String> {
        match self.leaders.get(&term) {
            Some(&other) if other != node => {
                return Err(format!(
                    "election safety: nodes {other} and {node} both lead term {term}"
                ));
            }
            Some(_) => return Ok(()),
            None => {}
        }
        self.leaders.insert(term, node);
        self.elections += 1;
        for (i, c) in self.committed.iter().enumerate() {
            if c.known_term >= term {
                continue;
            }
            let index = i as u64 + 1;
            match log.get(i) {
                Some(m) if m.term == c.term && m.hash == c.hash => {}
                Some(m) => {
                    return Err(format!(
                        "leader completeness: node {node} leads term {term} with entry {index} of term {} \
                         but entry {index} of term {} was committed by term {}",
                        m.term, c.term, c.known_term
                    ));
                }
                None => {
                    return Err(format!(
                        "leader completeness: node {node} leads term {term} with a log ending at {} \
                         but entry {index} of term {} was committed by term {}",
                        log.len(),
                        c.term,
                        c.known_term
                    ));
                }
            }
        }
        Ok(())
    }

    /// `node` appended entry `(index, term)` after an entry of `prev_term`.
    pub fn append(
        &mut self,
        node: u64,
        index: u64,
        term: u64,
        hash: u64,
        prev_term: u64,
    ) -> Result<(), String> {
        match self.entries.get(&(index, term)) {
            Some(&(h, p)) if h == hash && p == prev_term => Ok(()),
            Some(&(h, p)) => Err(format!(
                "log matching: node {node} appended entry {index} of term {term} \
                 (payload {hash:016x}, previous term {prev_term}); another copy has \
                 payload {h:016x}, previous term {p}"
            )),
            None => {
                self.entries.insert((index, term), (hash, prev_term));
                Ok(())
            }
        }
    }

    /// `node` learned that entry `(index, term)` is committed; `max_term` is
    /// the highest term any node has now.
    pub fn commit(
        &mut self,
        node: u64,
        index: u64,
        term: u64,
        hash: u64,
        request: u64,
        max_term: u64,
    ) -> Result<(), String> {
        let i = (index - 1) as usize;
        if let Some(c) = self.committed.get(i) {
            if c.term != term || c.hash != hash {
                return Err(format!(
                    "state machine safety: node {node} commits entry {index} of term {term} \
                     (payload {hash:016x}), but entry {index} of term {} (payload {:016x}) \
                     was committed before",
                    c.term, c.hash
                ));
            }
            return Ok(());
        }
        if i != self.committed.len() {
            return Err(format!(
                "node {node} commits entry {index} but the committed log ends at {}",
                self.committed.len()
            ));
        }
        if request != 0 {
            if let Some(first) = self.requests.insert(request, index) {
                return Err(format!(
                    "exactly once: request {request} is committed at entry {first} and again at \
                     entry {index}"
                ));
            }
        }
        self.committed.push(Committed {
            term,
            hash,
            known_term: max_term,
            request,
            applied: None,
        });
        Ok(())
    }

    /// `node` applied entry `index` and reached `revision`, with current
    /// key-value pairs of digest `digest`.
    pub fn applied(
        &mut self,
        node: u64,
        index: u64,
        revision: i64,
        digest: u64,
    ) -> Result<(), String> {
        let Some(c) = self.committed.get_mut((index - 1) as usize) else {
            return Err(format!(
                "node {node} applied entry {index}, which nobody committed"
            ));
        };
        match c.applied {
            Some((r, d)) if (r, d) != (revision, digest) => Err(format!(
                "state machine safety: node {node} is at revision {revision} (key-value digest \
                 {digest:016x}) after entry {index}, another node was at revision {r} (digest {d:016x})"
            )),
            Some(_) => Ok(()),
            None => {
                c.applied = Some((revision, digest));
                Ok(())
            }
        }
    }

    /// `node`'s state hash after applying up to `index`.
    pub fn state_hash(&mut self, node: u64, index: u64, hash: u32) -> Result<(), String> {
        match self.state_hashes.get(&index) {
            Some(&h) if h != hash => Err(format!(
                "state machine safety: node {node} has state hash {hash:08x} after entry {index}, \
                 another node had {h:08x}"
            )),
            Some(_) => Ok(()),
            None => {
                self.state_hashes.insert(index, hash);
                Ok(())
            }
        }
    }

    /// A client heard that its write with request id `request` took effect.
    pub fn acked(&mut self, request: u64) -> Result<(), String> {
        if !self.requests.contains_key(&request) {
            return Err(format!("acknowledged write {request} is not committed"));
        }
        self.acked += 1;
        Ok(())
    }

    /// Acknowledged writes so far.
    pub fn acked_count(&self) -> u64 {
        self.acked
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta(term: u64, hash: u64) -> LogMeta {
        LogMeta { term, hash }
    }

    #[test]
    fn two_leaders_in_one_term_are_caught() {
        let mut c = Checker::new();
        c.leader(1, 2, &[]).unwrap();
        c.leader(1, 2, &[]).unwrap();
        c.leader(2, 3, &[]).unwrap();
        assert!(c.leader(3, 3, &[]).unwrap_err().contains("election safety"));
    }

    #[test]
    fn log_matching_violations_are_caught() {
        let mut c = Checker::new();
        c.append(1, 1, 1, 10, 0).unwrap();
        c.append(2, 1, 1, 10, 0).unwrap();
        assert!(c.append(3, 1, 1, 11, 0).is_err());
        c.append(1, 2, 2, 20, 1).unwrap();
        assert!(c.append(2, 2, 2, 20, 0).is_err());
    }

    #[test]
    fn leader_missing_a_committed_entry_is_caught() {
        let mut c = Checker::new();
        c.commit(1, 1, 1, 10, 0, 1).unwrap();
        c.commit(1, 2, 1, 11, 0, 1).unwrap();
        // A leader of term 1 itself may lag (it was elected before).
        c.leader(2, 1, &[meta(1, 10)]).unwrap();
        assert!(c
            .leader(3, 2, &[meta(1, 10)])
            .unwrap_err()
            .contains("leader completeness"));
        assert!(c.leader(3, 3, &[meta(1, 10), meta(3, 99)]).is_err());
        c.leader(3, 4, &[meta(1, 10), meta(1, 11), meta(4, 1)])
            .unwrap();
    }

    #[test]
    fn divergent_commits_and_states_are_caught() {
        let mut c = Checker::new();
        c.commit(1, 1, 1, 10, 7, 1).unwrap();
        c.commit(2, 1, 1, 10, 7, 1).unwrap();
        assert!(c
            .commit(1, 2, 1, 11, 7, 1)
            .unwrap_err()
            .contains("exactly once"));
        assert!(c.commit(3, 1, 2, 10, 7, 2).is_err());
        assert!(c.commit(3, 3, 2, 10, 7, 2).is_err());
        c.applied(1, 1, 2, 9).unwrap();
        c.applied(2, 1, 2, 9).unwrap();
        assert!(c.applied(2, 1, 3, 9).is_err());
        assert!(c.applied(2, 1, 2, 8).is_err());
        assert!(c.applied(2, 2, 3, 9).is_err());
        c.state_hash(1, 1, 5).unwrap();
        assert!(c.state_hash(2, 1, 6).is_err());
        c.acked(7).unwrap();
        assert!(c.acked(8).is_err());
        assert_eq!(c.acked_count(), 1);
    }
}
