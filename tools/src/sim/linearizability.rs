//! A linearizability checker for the simulator's client histories.
//!
//! The search is Wing & Gong's, with Lowe's memoisation, in the shape
//! Porcupine uses: the history is a list of call and return events ordered
//! by when they happened; the search repeatedly picks an operation whose
//! call comes before every pending return, applies it to the sequential
//! model, and backtracks when it meets a return whose operation it has not
//! linearized yet. A cache of (linearized set, model state) pairs prunes
//! the revisits that make the naive search exponential.
//!
//! Histories are partitioned by key first (P-compositionality): the
//! operations the simulator issues touch one key each, so the history is
//! linearizable exactly when each key's sub-history is.
//!
//! An operation whose outcome the client never learned (a timeout, a lost
//! reply, a crashed server) has no return event: it may take effect at any
//! point after its call, or never, which is the same as taking effect after
//! every other operation. Its return is therefore placed after every other
//! event, and any output is accepted for it.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::hash::Hash;

/// A sequential specification.
pub trait Model {
    /// The model's state; must be cheap to clone and hash.
    type State: Clone + Eq + Hash + fmt::Debug;
    /// An operation's input.
    type Input: fmt::Debug;
    /// An operation's output.
    type Output: fmt::Debug;

    /// The state before any operation.
    fn init(&self) -> Self::State;

    /// Applies `input` to `state`. `output` is what the operation answered,
    /// or `None` when it is unknown (then any output is acceptable). Returns
    /// the new state, or `None` if the operation cannot have answered
    /// `output` in `state`.
    fn step(
        &self,
        state: &Self::State,
        input: &Self::Input,
        output: Option<&Self::Output>,
    ) -> Option<Self::State>;
}

/// One operation of a history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Operation<I, O> {
    /// Which client issued it (only for reports).
    pub client: u32,
    /// Position of the invocation in the global event order.
    pub call: u64,
    /// Position of the completion in the global event order; `None` when the
    /// outcome is unknown. Must be greater than `call`.
    pub ret: Option<u64>,
    /// What was asked.
    pub input: I,
    /// What was answered; `None` exactly when `ret` is `None`.
    pub output: Option<O>,
}

/// The verdict on one history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// A linearization exists.
    Linearizable,
    /// No linearization exists.
    Violation,
    /// The search gave up after its step budget.
    GaveUp,
}

#[derive(Clone, Copy)]
struct Event {
    op: usize,
    is_call: bool,
    prev: usize,
    next: usize,
}

/// Index of the list head sentinel.
const HEAD: usize = 0;
/// Marks "no node" (`next` of the last event).
const NIL: usize = usize::MAX;

/// Checks one history against `model`, visiting at most `budget` search
/// steps.
pub fn check<M: Model>(model: &M, ops: &[Operation<M::Input, M::Output>], budget: u64) -> Verdict {
    let n = ops.len();
    if n == 0 {
        return Verdict::Linearizable;
    }
    // Build the event list: sort by position; unknown returns go last.
    let mut order: Vec<(u64, bool, usize)> = Vec::with_capacity(2 * n);
    for (i, op) in ops.iter().enumerate() {
        order.push((op.call, true, i));
        let ret = op.ret.unwrap_or(u64::MAX);
        debug_assert!(ret > op.call, "operation returns before its call");
        order.push((ret, false, i));
    }
    // Ties (only between unknown returns) keep operation order.
    order.sort_by_key(|&(pos, is_call, i)| (pos, !is_call, i));
    // events[0] is the head sentinel; event k of `order` is events[k + 1].
    let mut events = Vec::with_capacity(order.len() + 1);
    events.push(Event {
        op: NIL,
        is_call: false,
        prev: NIL,
        next: 1,
    });
    let mut ret_of = vec![0; n];
    let mut call_of = vec![0; n];
    for (k, &(_, is_call, op)) in order.iter().enumerate() {
        let idx = k + 1;
        events.push(Event {
            op,
            is_call,
            prev: k,
            next: if idx == order.len() { NIL } else { idx + 1 },
        });
        if is_call {
            call_of[op] = idx;
        } else {
            ret_of[op] = idx;
        }
    }

    let words = n.div_ceil(64);
    let mut linearized = vec![0u64; words];
    let mut cache: HashSet<(Vec<u64>, M::State)> = HashSet::new();
    let mut stack: Vec<(usize, M::State)> = Vec::new();
    let mut state = model.init();
    let mut entry = events[HEAD].next;
    let mut steps = 0u64;

    // Unlinks event `e` from the list.
    fn unlink(events: &mut [Event], e: usize) {
        let (p, nx) = (events[e].prev, events[e].next);
        events[p].next = nx;
        if nx != NIL {
            events[nx].prev = p;
        }
    }
    // Relinks event `e` where it was.
    fn relink(events: &mut [Event], e: usize) {
        let (p, nx) = (events[e].prev, events[e].next);
        events[p].next = e;
        if nx != NIL {
            events[nx].prev = e;
        }
    }

    while events[HEAD].next != NIL {
        steps += 1;
        if steps > budget {
            return Verdict::GaveUp;
        }
        let ev = events[entry];
        if ev.is_call {
            let op = &ops[ev.op];
            if let Some(next_state) = model.step(&state, &op.input, op.output.as_ref()) {
                let mut set = linearized.clone();
                set[ev.op / 64] |= 1 << (ev.op % 64);
                if cache.insert((set.clone(), next_state.clone())) {
                    stack.push((entry, state));
                    state = next_state;
                    linearized = set;
                    // Lift the operation: unlink its call, then its return
                    // (in this order, so relinking in reverse restores both).
                    unlink(&mut events, call_of[ev.op]);
                    unlink(&mut events, ret_of[ev.op]);
                    entry = events[HEAD].next;
                    continue;
                }
            }
            entry = ev.next;
        } else {
            // A return whose operation is not linearized yet: backtrack.
            let Some((call_entry, prev_state)) = stack.pop() else {
                return Verdict::Violation;
            };
            let op = events[call_entry].op;
            state = prev_state;
            linearized[op / 64] &= !(1 << (op % 64));
            relink(&mut events, ret_of[op]);
            relink(&mut events, call_of[op]);
            entry = events[call_entry].next;
        }
        if entry == NIL {
            // Only reachable if the list holds calls only, which cannot
            // happen: every call has its return after it.
            return Verdict::Violation;
        }
    }
    Verdict::Linearizable
}

// ---------------------------------------------------------------------------
// The key-value model the simulator's clients use.

/// A single-key operation of the simulator's clients. Values are unique per
/// write, so a read names the write it saw.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvInput {
    /// Put the value.
    Put(u64),
    /// Read the key.
    Get,
    /// Delete the key.
    Delete,
    /// Compare-and-put: if the key's value is `expect`, put `new`.
    Cas {
        /// The value the compare wants.
        expect: u64,
        /// The value put on success.
        new: u64,
    },
}

/// What a [`KvInput`] answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvOutput {
    /// A put succeeded.
    Put,
    /// A read saw this value (`None`: no key).
    Get(Option<u64>),
    /// A delete deleted the key (`true`) or found none.
    Delete(bool),
    /// A compare-and-put's compare held (and it put) or did not.
    Cas(bool),
}

/// The sequential model of one key: its value or absence.
#[derive(Clone, Copy, Debug, Default)]
pub struct KvModel;

impl Model for KvModel {
    type State = Option<u64>;
    type Input = KvInput;
    type Output = KvOutput;

    fn init(&self) -> Option<u64> {
        None
    }

    fn step(
        &self,
        state: &Option<u64>,
        input: &KvInput,
        out: Option<&KvOutput>,
    ) -> Option<Option<u64>> {
        match (input, out) {
            (KvInput::Put(v), None | Some(KvOutput::Put)) => Some(Some(*v)),
            (KvInput::Get, None) => Some(*state),
            (KvInput::Get, Some(KvOutput::Get(seen))) => (seen == state).then_some(*state),
            (KvInput::Delete, None) => Some(None),
            (KvInput::Delete, Some(KvOutput::Delete(deleted))) => {
                (*deleted == state.is_some()).then_some(None)
            }
            (KvInput::Cas { expect, new }, out) => {
                let holds = *state == Some(*expect);
                match out {
                    None => Some(if holds { Some(*new) } else { *state }),
                    Some(KvOutput::Cas(ok)) if *ok == holds => {
                        Some(if holds { Some(*new) } else { *state })
                    }
                    Some(_) => None,
                }
            }
            _ => None,
        }
    }
}

/// One operation of a multi-key history.
pub type KvOperation = Operation<KvInput, KvOutput>;

/// The outcome of [`check_kv`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvReport {
    /// Keys whose sub-history is not linearizable.
    pub violations: Vec<u32>,
    /// Keys whose search ran out of budget.
    pub gave_up: Vec<u32>,
}

impl KvReport {
    /// True when no key is a violation (keys given up on are not).
    pub fn ok(&self) -> bool {
        self.violations.is_empty()
    }
}

/// Checks a history of `(key, operation)` pairs key by key, with `budget`
/// search steps per key.
pub fn check_kv(history: &[(u32, KvOperation)], budget: u64) -> KvReport {
    let mut by_key: BTreeMap<u32, Vec<KvOperation>> = BTreeMap::new();
    for (key, op) in history {
        by_key.entry(*key).or_default().push(op.clone());
    }
    let mut report = KvReport {
        violations: Vec::new(),
        gave_up: Vec::new(),
    };
    for (key, ops) in &by_key {
        match check(&KvModel, ops, budget) {
            Verdict::Linearizable => {}
            Verdict::Violation => report.violations.push(*key),
            Verdict::GaveUp => report.gave_up.push(*key),
        }
    }
    report
}

/// A readable listing of one key's sub-history, for failure reports.
pub fn describe_key(history: &[(u32, KvOperation)], key: u32) -> String {
    let mut out = String::new();
    for (k, op) in history {
        if *k != key {
            continue;
        }
        let ret = op.ret.map_or("?".to_string(), |r| r.to_string());
        out.push_str(&format!(
            "  client {:>2} [{:>6} .. {:>6}] {:?} -> {:?}\n",
            op.client, op.call, ret, op.input, op.output
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const BUDGET: u64 = 1_000_000;

    fn op(client: u32, call: u64, ret: u64, input: KvInput, output: KvOutput) -> KvOperation {
        Operation {
            client,
            call,
            ret: Some(ret),
            input,
            output: Some(output),
        }
    }

    fn unknown(client: u32, call: u64, input: KvInput) -> KvOperation {
        Operation {
            client,
            call,
            ret: None,
            input,
            output: None,
        }
    }

    fn verdict(ops: Vec<KvOperation>) -> Verdict {
        check(&KvModel, &ops, BUDGET)
    }

    use KvInput::{Cas, Delete, Get, Put};

    #[test]
    fn empty_and_sequential_histories_are_linearizable() {
        assert_eq!(verdict(vec![]), Verdict::Linearizable);
        assert_eq!(
            verdict(vec![
                op(0, 1, 2, Get, KvOutput::Get(None)),
                op(0, 3, 4, Put(1), KvOutput::Put),
                op(1, 5, 6, Get, KvOutput::Get(Some(1))),
                op(1, 7, 8, Cas { expect: 1, new: 2 }, KvOutput::Cas(true)),
                op(0, 9, 10, Cas { expect: 1, new: 3 }, KvOutput::Cas(false)),
                op(0, 11, 12, Delete, KvOutput::Delete(true)),
                op(1, 13, 14, Delete, KvOutput::Delete(false)),
                op(1, 15, 16, Get, KvOutput::Get(None)),
            ]),
            Verdict::Linearizable
        );
    }

    #[test]
    fn concurrent_reads_may_see_either_side() {
        // A put overlapping two reads: one sees the old value, one the new.
        let h = vec![
            op(0, 1, 10, Put(1), KvOutput::Put),
            op(1, 2, 3, Get, KvOutput::Get(Some(1))),
            op(2, 4, 5, Get, KvOutput::Get(Some(1))),
            op(3, 1, 6, Get, KvOutput::Get(None)),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable);
    }

    #[test]
    fn stale_read_is_caught() {
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            op(1, 3, 4, Get, KvOutput::Get(None)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn read_going_back_in_time_is_caught() {
        // Two sequential puts, then a read of the first.
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            op(0, 3, 4, Put(2), KvOutput::Put),
            op(1, 5, 6, Get, KvOutput::Get(Some(1))),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
        // Reads by two clients that disagree on the order of two puts.
        let h = vec![
            op(0, 1, 20, Put(1), KvOutput::Put),
            op(1, 1, 20, Put(2), KvOutput::Put),
            op(2, 2, 3, Get, KvOutput::Get(Some(1))),
            op(2, 4, 5, Get, KvOutput::Get(Some(2))),
            op(3, 6, 7, Get, KvOutput::Get(Some(1))),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn read_of_a_value_never_written_is_caught() {
        let h = vec![
            op(0, 1, 4, Put(1), KvOutput::Put),
            op(1, 2, 3, Get, KvOutput::Get(Some(7))),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn two_winning_compare_and_puts_are_caught() {
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            op(1, 3, 10, Cas { expect: 1, new: 2 }, KvOutput::Cas(true)),
            op(2, 4, 11, Cas { expect: 1, new: 3 }, KvOutput::Cas(true)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
        // One winner is fine.
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            op(1, 3, 10, Cas { expect: 1, new: 2 }, KvOutput::Cas(true)),
            op(2, 4, 11, Cas { expect: 1, new: 3 }, KvOutput::Cas(false)),
            op(0, 12, 13, Get, KvOutput::Get(Some(2))),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable);
    }

    #[test]
    fn double_delete_is_caught() {
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            op(0, 3, 4, Delete, KvOutput::Delete(true)),
            op(1, 5, 6, Delete, KvOutput::Delete(true)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn unknown_outcomes() {
        // An unknown put may never take effect...
        let h = vec![
            unknown(0, 1, Put(1)),
            op(1, 2, 3, Get, KvOutput::Get(None)),
            op(1, 4, 5, Get, KvOutput::Get(None)),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable);
        // ...or take effect long after its client gave up...
        let h = vec![
            unknown(0, 1, Put(1)),
            op(1, 2, 3, Get, KvOutput::Get(None)),
            op(1, 40, 41, Get, KvOutput::Get(Some(1))),
        ];
        assert_eq!(verdict(h), Verdict::Linearizable);
        // ...but once seen it cannot be unseen.
        let h = vec![
            unknown(0, 1, Put(1)),
            op(1, 2, 3, Get, KvOutput::Get(Some(1))),
            op(1, 4, 5, Get, KvOutput::Get(None)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
        // And it cannot take effect before it was invoked.
        let h = vec![
            op(1, 1, 2, Get, KvOutput::Get(Some(1))),
            unknown(0, 3, Put(1)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn lost_acknowledged_write_is_caught() {
        // Acknowledged put, then reads that never see it after a later
        // unknown put that did not take effect either.
        let h = vec![
            op(0, 1, 2, Put(1), KvOutput::Put),
            unknown(1, 3, Put(2)),
            op(2, 4, 5, Get, KvOutput::Get(Some(2))),
            op(2, 6, 7, Get, KvOutput::Get(None)),
        ];
        assert_eq!(verdict(h), Verdict::Violation);
    }

    #[test]
    fn partitioned_by_key() {
        // Each key alone is fine; a stale read on key 1 is reported as key 1.
        let h = vec![
            (0, op(0, 1, 2, Put(1), KvOutput::Put)),
            (1, op(0, 3, 4, Put(2), KvOutput::Put)),
            (0, op(1, 5, 6, Get, KvOutput::Get(Some(1)))),
            (1, op(1, 7, 8, Get, KvOutput::Get(None))),
        ];
        let report = check_kv(&h, BUDGET);
        assert_eq!(report.violations, vec![1]);
        assert!(!report.ok());
        assert!(describe_key(&h, 1).contains("Put(2)"));
    }

    #[test]
    fn many_concurrent_operations_stay_tractable() {
        // 8 clients, 400 operations, heavy overlap, some unknown: a valid
        // history built from a sequential execution with widened intervals.
        let mut ops = Vec::new();
        let mut state = None;
        let mut pos = 0u64;
        for i in 0..400u64 {
            let input = match i % 5 {
                0 | 3 => Put(i),
                1 => Get,
                2 => Cas {
                    expect: i.saturating_sub(2),
                    new: i,
                },
                _ => Delete,
            };
            let out = KvModel.step(&state, &input, None).expect("total");
            let output = match input {
                Put(_) => KvOutput::Put,
                Get => KvOutput::Get(state),
                Delete => KvOutput::Delete(state.is_some()),
                Cas { expect, .. } => KvOutput::Cas(state == Some(expect)),
            };
            state = out;
            pos += 10;
            // The interval surrounds the linearization point `pos`.
            let call = pos - 1 - (i * 7 % 9);
            if i % 23 == 0 {
                ops.push(unknown((i % 8) as u32, call, input));
            } else {
                ops.push(op(
                    (i % 8) as u32,
                    call,
                    pos + 1 + (i * 3 % 9),
                    input,
                    output,
                ));
            }
        }
        assert_eq!(verdict(ops.clone()), Verdict::Linearizable);
        // Corrupt one read: now it must fail.
        let idx = ops
            .iter()
            .position(|o| o.input == Get && o.ret.is_some())
            .expect("a completed read");
        ops[idx].output = Some(KvOutput::Get(Some(999_999)));
        assert_eq!(verdict(ops), Verdict::Violation);
    }
}
