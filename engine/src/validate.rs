//! Stateless request checks that etcd's API layer (`v3rpc/key.go`) runs before
//! a request is proposed to the log. They need no store state, so the caller
//! runs them before encoding a [`crate::Command`].

use std::collections::BTreeSet;

use crate::error::Error;
use crate::types::{DeleteRangeRequest, Limits, PutRequest, RangeRequest, RequestOp, TxnRequest};

/// The most nested transaction levels (the outermost included) the engine
/// accepts, in levels. etcd has no such limit, but its op budget caps nesting
/// at `txn_ops_max + 1` levels, so with the default budget (128) this never
/// rejects a transaction etcd accepts. It keeps recursion over a transaction
/// (apply, decode, drop) within a small, fixed stack.
pub const TXN_DEPTH_MAX: usize = 256;

/// etcd `checkRangeRequest`. Sort options are typed enums here, so an
/// invalid one cannot reach this check (see `TryFrom<i32>` on them).
pub fn validate_range(req: &RangeRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd `checkPutRequest`.
pub fn validate_put(req: &PutRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    if req.ignore_value && !req.value.is_empty() {
        return Err(Error::ValueProvided);
    }
    if req.ignore_lease && req.lease != 0 {
        return Err(Error::LeaseProvided);
    }
    Ok(())
}

/// etcd `checkDeleteRequest`.
pub fn validate_delete(req: &DeleteRangeRequest) -> Result<(), Error> {
    if req.key.is_empty() {
        return Err(Error::EmptyKey);
    }
    Ok(())
}

/// etcd `checkTxnRequest` followed by `checkIntervals` on each branch, in
/// etcd's order, plus the [`TXN_DEPTH_MAX`] nesting cap (as `TooManyOps`).
pub fn validate_txn(req: &TxnRequest, limits: &Limits) -> Result<(), Error> {
    let budget = i64::try_from(limits.txn_ops_max).unwrap_or(i64::MAX);
    check_txn_request(req, budget, 1)?;
    check_intervals(&req.success)?;
    check_intervals(&req.failure)?;
    Ok(())
}

/// etcd `checkTxnRequest`: every level may hold `budget` ops (its largest of
/// compares, success ops, failure ops); nested levels get what is left.
fn check_txn_request(req: &TxnRequest, budget: i64, depth: usize) -> Result<(), Error> {
    if depth > TXN_DEPTH_MAX {
        return Err(Error::TooManyOps);
    }
    let opc = req
        .compare
        .len()
        .max(req.success.len())
        .max(req.failure.len());
    let opc = i64::try_from(opc).unwrap_or(i64::MAX);
    if opc > budget {
        return Err(Error::TooManyOps);
    }
    if req.compare.iter().any(|c| c.key.is_empty()) {
        return Err(Error::EmptyKey);
    }
    for op in req.success.iter().chain(req.failure.iter()) {
        match op {
            RequestOp::Range(r) => validate_range(r)?,
            RequestOp::Put(p) => validate_put(p)?,
            RequestOp::DeleteRange(d) => validate_delete(d)?,
            RequestOp::Txn(t) => check_txn_request(t, budget - opc, depth + 1)?,
        }
    }
    Ok(())
}

/// A delete's key interval as etcd's `adt.StringAffineInterval`: a single key
/// `[k, k\0)` or `[key, range_end)`.
#[derive(Debug, Clone)]
struct DelInterval {
    begin: Vec<u8>,
    /// `None`: the single key `begin`.
    end: Option<Vec<u8>>,
}

impl DelInterval {
    /// The interval of a delete, or `None` when etcd's interval tree can never
    /// report an overlap with it: `begin >= end`, which includes every
    /// "from key" delete (`range_end == [0]`), since etcd builds this interval
    /// from the raw `range_end`.
    fn of(d: &DeleteRangeRequest) -> Option<DelInterval> {
        if d.range_end.is_empty() {
            Some(DelInterval {
                begin: d.key.clone(),
                end: None,
            })
        } else if d.key < d.range_end {
            Some(DelInterval {
                begin: d.key.clone(),
                end: Some(d.range_end.clone()),
            })
        } else {
            None
        }
    }

    fn contains(&self, k: &[u8]) -> bool {
        match &self.end {
            None => self.begin == k,
            Some(end) => self.begin.as_slice() <= k && k < end.as_slice(),
        }
    }
}

fn intersects(dels: &[DelInterval], k: &[u8]) -> bool {
    dels.iter().any(|d| d.contains(k))
}

/// etcd `checkIntervals`: a key may not be put twice, nor put and deleted, in
/// one branch list, nested transactions included. Returns the branch's puts
/// and deletes for the enclosing level, as etcd does.
///
/// The order of the checks is etcd's, including its asymmetry: a nested
/// transaction's puts are checked against this level's deletes and against
/// the deletes of the nested transactions *before* it, not after it.
fn check_intervals(reqs: &[RequestOp]) -> Result<(BTreeSet<Vec<u8>>, Vec<DelInterval>), Error> {
    let mut dels: Vec<DelInterval> = reqs
        .iter()
        .filter_map(|op| match op {
            RequestOp::DeleteRange(d) => DelInterval::of(d),
            _ => None,
        })
        .collect();

    let mut puts: BTreeSet<Vec<u8>> = BTreeSet::new();
    for op in reqs {
        let RequestOp::Txn(t) = op else { continue };
        let (puts_then, dels_then) = check_intervals(&t.success)?;
        let (puts_else, dels_else) = check_intervals(&t.failure)?;
        for k in &puts_then {
            if puts.contains(k) || intersects(&dels, k) {
                return Err(Error::DuplicateKey);
            }
        }
        puts.extend(puts_then.iter().cloned());
        for k in &puts_else {
            // Then and else are exclusive: the same key in both is fine.
            if puts.contains(k) && !puts_then.contains(k) {
                return Err(Error::DuplicateKey);
            }
            if intersects(&dels, k) {
                return Err(Error::DuplicateKey);
            }
            puts.insert(k.clone());
        }
        dels.extend(dels_then);
        dels.extend(dels_else);
    }

    for op in reqs {
        let RequestOp::Put(p) = op else { continue };
        if puts.contains(&p.key) || intersects(&dels, &p.key) {
            return Err(Error::DuplicateKey);
        }
        puts.insert(p.key.clone());
    }
    Ok((puts, dels))
}

/// Nesting depth of a transaction in levels (1 for a flat one), computed
/// without recursion so it is safe on any input.
pub(crate) fn txn_depth(req: &TxnRequest) -> usize {
    let mut max = 0;
    let mut stack: Vec<(&TxnRequest, usize)> = vec![(req, 1)];
    while let Some((t, d)) = stack.pop() {
        max = max.max(d);
        for op in t.success.iter().chain(t.failure.iter()) {
            if let RequestOp::Txn(inner) = op {
                stack.push((inner, d + 1));
            }
        }
    }
    max
}
