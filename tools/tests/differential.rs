//! Differential test: seeded random sequences of KV requests (Range, Put,
//! DeleteRange, Txn with nested transactions, Compact) and
//! Maintenance.HashKV, replayed request by request against a real etcd 3.7.2
//! and against kvik, both started fresh for every seed.
//!
//! Every answer must be identical once `cluster_id`, `member_id` and
//! `raft_term` are cleared in every header (top-level and nested); revisions
//! are compared as they are. Errors must match in gRPC code and message. The
//! first divergence ends a seed and is printed with the seed, the request's
//! index, the request and both answers; the other seeds still run.
//!
//! The run records every request field, value class, answer shape and error
//! it exercised and fails if an item of [`REQUIRED`] never came up.
//! `comparator_reports_planted_divergence` checks the comparison itself on
//! two etcds: they agree, and a planted rewrite of an answer is reported.
//!
//! Environment:
//! - `KVIK_DIFF_SEED=s`: replay only seed `s` (coverage is then not enforced);
//! - `KVIK_DIFF_SEEDS=n` or `=a..b`: run seeds `1..=n` or `a..b` instead of
//!   the default `1..=30`;
//! - `KVIK_DIFF_OPS=n`: requests per seed (default [`DEFAULT_OPS`]);
//! - `KVIK_DIFF_TRACE=1`: print every request and etcd's answer.
//!
//! Nothing waits on time. etcd runs compactions in the background unless
//! `physical` is set, and whether it caches a compaction's hash for HashKV
//! depends on whether the previous compaction had finished; so before any
//! Compact or HashKV that follows a non-physical compaction, the generator
//! sends a physical Compact at the current compaction revision: it fails
//! with "compacted" on both servers, and etcd answers it only once every
//! earlier compaction finished.
//!
//! Two etcd 3.7 crashes are steered around, since a crash cannot be
//! compared: a put with `ignore_value`/`ignore_lease` after a "from key"
//! delete of the same transaction, and a compaction at exactly the revision
//! of a transaction that deleted and re-created a key (see [`Gen`]).

mod common;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::time::Instant;

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;
use net::pb::mvccpb;
use pb::compare::{CompareResult, CompareTarget, TargetUnion};
use pb::range_request::{SortOrder, SortTarget};
use pb::request_op::Request as Q;
use pb::response_op::Response as A;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Seeds run when no environment variable says otherwise.
const DEFAULT_SEEDS: u64 = 30;
/// Requests per seed when `KVIK_DIFF_OPS` is unset.
const DEFAULT_OPS: usize = 300;
/// etcd's `--max-request-bytes` default, in bytes.
const MAX_REQUEST_BYTES: usize = 1_572_864;
/// etcd's gRPC receive limit: `--max-request-bytes` plus 512 KiB.
const GRPC_MAX_RECV_BYTES: usize = MAX_REQUEST_BYTES + 512 * 1024;
/// etcd's `--max-txn-ops` default.
const MAX_TXN_OPS: usize = 128;

// ------------------------------------------------------------------ requests

/// One request, sent unchanged to both servers.
#[derive(Clone, Debug)]
enum Op {
    Range(pb::RangeRequest),
    Put(pb::PutRequest),
    Delete(pb::DeleteRangeRequest),
    Txn(pb::TxnRequest),
    Compact(pb::CompactionRequest),
    HashKv(pb::HashKvRequest),
}

/// A successful answer.
#[derive(Clone, Debug, PartialEq)]
enum Resp {
    Range(pb::RangeResponse),
    Put(pb::PutResponse),
    Delete(pb::DeleteRangeResponse),
    Txn(pb::TxnResponse),
    Compact(pb::CompactionResponse),
    HashKv(pb::HashKvResponse),
}

/// A failed request: gRPC code and message.
#[derive(Clone, Debug, PartialEq)]
struct Failure {
    code: tonic::Code,
    message: String,
}

type Outcome = Result<Resp, Failure>;

async fn exec(c: &mut Raw, op: &Op) -> Outcome {
    fn fail(s: tonic::Status) -> Failure {
        Failure {
            code: s.code(),
            message: s.message().to_string(),
        }
    }
    match op {
        Op::Range(r) => {
            c.kv.range(r.clone())
                .await
                .map(|r| Resp::Range(r.into_inner()))
        }
        Op::Put(r) => c.kv.put(r.clone()).await.map(|r| Resp::Put(r.into_inner())),
        Op::Delete(r) => {
            c.kv.delete_range(r.clone())
                .await
                .map(|r| Resp::Delete(r.into_inner()))
        }
        Op::Txn(r) => c.kv.txn(r.clone()).await.map(|r| Resp::Txn(r.into_inner())),
        Op::Compact(r) => {
            c.kv.compact(*r)
                .await
                .map(|r| Resp::Compact(r.into_inner()))
        }
        Op::HashKv(r) => c
            .maintenance
            .hash_kv(*r)
            .await
            .map(|r| Resp::HashKv(r.into_inner())),
    }
    .map_err(fail)
}

// ------------------------------------------------------------------ comparator

/// Clears the fields that legitimately differ between two clusters.
fn normalize_header(h: &mut Option<pb::ResponseHeader>) {
    if let Some(h) = h {
        h.cluster_id = 0;
        h.member_id = 0;
        h.raft_term = 0;
    }
}

fn normalize_txn(t: &mut pb::TxnResponse) {
    normalize_header(&mut t.header);
    for r in &mut t.responses {
        match &mut r.response {
            Some(A::ResponseRange(x)) => normalize_header(&mut x.header),
            Some(A::ResponsePut(x)) => normalize_header(&mut x.header),
            Some(A::ResponseDeleteRange(x)) => normalize_header(&mut x.header),
            Some(A::ResponseTxn(x)) => normalize_txn(x),
            None => {}
        }
    }
}

fn normalized(o: &Outcome) -> Outcome {
    let mut o = o.clone();
    if let Ok(r) = &mut o {
        match r {
            Resp::Range(x) => normalize_header(&mut x.header),
            Resp::Put(x) => normalize_header(&mut x.header),
            Resp::Delete(x) => normalize_header(&mut x.header),
            Resp::Txn(x) => normalize_txn(x),
            Resp::Compact(x) => normalize_header(&mut x.header),
            Resp::HashKv(x) => normalize_header(&mut x.header),
        }
    }
    o
}

/// `None` when kvik answered like etcd; otherwise the first line of each
/// printed answer where they differ (etcd's, then kvik's).
fn compare_outcomes(etcd: &Outcome, kvik: &Outcome) -> Option<(String, String)> {
    let (e, k) = (normalized(etcd), normalized(kvik));
    if e == k {
        return None;
    }
    let (es, ks) = (show_outcome(&e), show_outcome(&k));
    let first = es
        .lines()
        .zip(ks.lines())
        .find(|(a, b)| a != b)
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .unwrap_or_else(|| {
            (
                "(one answer is a prefix of the other)".to_string(),
                String::new(),
            )
        });
    Some(first)
}

/// A request whose answers differ.
struct Mismatch {
    seed: u64,
    index: usize,
    op: Op,
    etcd: Outcome,
    kvik: Outcome,
    /// What answered `kvik`: kvik, or a second etcd in the comparator's tests.
    other_name: &'static str,
    /// The first differing line of each answer (etcd's, then the other's).
    first: (String, String),
    /// Lines of the servers' logs that say one of them crashed.
    crash: Vec<String>,
    /// A planted rewrite changed this answer.
    planted: bool,
}

impl std::fmt::Display for Mismatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{} diverged from etcd: seed {} request #{} (replay: KVIK_DIFF_SEED={})",
            self.other_name, self.seed, self.index, self.seed
        )?;
        writeln!(
            f,
            "first difference:\n  etcd: {}\n  {}: {}",
            self.first.0, self.other_name, self.first.1
        )?;
        writeln!(f, "request:\n{}", indent(&show_op(&self.op)))?;
        writeln!(
            f,
            "etcd answered (normalized):\n{}",
            indent(&show_outcome(&normalized(&self.etcd)))
        )?;
        write!(
            f,
            "{} answered (normalized):\n{}",
            self.other_name,
            indent(&show_outcome(&normalized(&self.kvik)))
        )?;
        for line in &self.crash {
            write!(f, "\n{line}")?;
        }
        Ok(())
    }
}

impl Mismatch {
    fn summary(&self) -> String {
        let line = show_op(&self.op);
        let line = line.lines().next().unwrap_or_default();
        format!(
            "seed {} #{} {}: etcd: {}  {}: {}",
            self.seed, self.index, line, self.first.0, self.other_name, self.first.1
        )
    }
}

fn indent(s: &str) -> String {
    s.lines()
        .map(|l| format!("    {l}\n"))
        .collect::<String>()
        .trim_end()
        .to_string()
}

// ------------------------------------------------------------------ printing

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| {
        (h ^ x as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Bytes as an escaped string; long ones abbreviated with length and hash.
fn bytes(b: &[u8]) -> String {
    if b.len() <= 40 {
        format!("\"{}\"", b.escape_ascii())
    } else {
        format!(
            "\"{}\"...({} bytes, fnv {:016x})",
            b[..16].escape_ascii(),
            b.len(),
            fnv(b)
        )
    }
}

fn enum_name(v: i32, name: Option<&'static str>) -> String {
    name.map(str::to_string).unwrap_or_else(|| format!("{v}?"))
}

fn show_range_req(r: &pb::RangeRequest) -> String {
    let mut s = format!("Range {}", bytes(&r.key));
    if !r.range_end.is_empty() {
        write!(s, " end {}", bytes(&r.range_end)).unwrap();
    }
    for (name, v) in [
        ("limit", r.limit),
        ("revision", r.revision),
        ("min_mod", r.min_mod_revision),
        ("max_mod", r.max_mod_revision),
        ("min_create", r.min_create_revision),
        ("max_create", r.max_create_revision),
    ] {
        if v != 0 {
            write!(s, " {name} {v}").unwrap();
        }
    }
    if r.sort_order != 0 {
        let n = SortOrder::try_from(r.sort_order)
            .ok()
            .map(|x| x.as_str_name());
        write!(s, " order {}", enum_name(r.sort_order, n)).unwrap();
    }
    if r.sort_target != 0 {
        let n = SortTarget::try_from(r.sort_target)
            .ok()
            .map(|x| x.as_str_name());
        write!(s, " target {}", enum_name(r.sort_target, n)).unwrap();
    }
    for (name, v) in [
        ("serializable", r.serializable),
        ("keys_only", r.keys_only),
        ("count_only", r.count_only),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    s
}

fn show_put_req(p: &pb::PutRequest) -> String {
    let mut s = format!("Put {} = {}", bytes(&p.key), bytes(&p.value));
    if p.lease != 0 {
        write!(s, " lease {}", p.lease).unwrap();
    }
    for (name, v) in [
        ("prev_kv", p.prev_kv),
        ("ignore_value", p.ignore_value),
        ("ignore_lease", p.ignore_lease),
    ] {
        if v {
            write!(s, " {name}").unwrap();
        }
    }
    s
}

fn show_delete_req(d: &pb::DeleteRangeRequest) -> String {
    let mut s = format!("Delete {}", bytes(&d.key));
    if !d.range_end.is_empty() {
        write!(s, " end {}", bytes(&d.range_end)).unwrap();
    }
    if d.prev_kv {
        s.push_str(" prev_kv");
    }
    s
}

fn show_compare(c: &pb::Compare) -> String {
    let t = CompareTarget::try_from(c.target)
        .ok()
        .map(|x| x.as_str_name());
    let r = CompareResult::try_from(c.result)
        .ok()
        .map(|x| x.as_str_name());
    let mut s = format!("{}({}", enum_name(c.target, t), bytes(&c.key));
    if !c.range_end.is_empty() {
        write!(s, " end {}", bytes(&c.range_end)).unwrap();
    }
    let u = match &c.target_union {
        None => "none".to_string(),
        Some(TargetUnion::Version(v)) => format!("version {v}"),
        Some(TargetUnion::CreateRevision(v)) => format!("create_revision {v}"),
        Some(TargetUnion::ModRevision(v)) => format!("mod_revision {v}"),
        Some(TargetUnion::Value(v)) => format!("value {}", bytes(v)),
        Some(TargetUnion::Lease(v)) => format!("lease {v}"),
    };
    write!(s, ") {} {u}", enum_name(c.result, r)).unwrap();
    s
}

fn show_txn_req(t: &pb::TxnRequest, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    out.push_str("Txn\n");
    if t.compare.len() > 8 {
        writeln!(
            out,
            "{pad}  compare: {} compares, first {}",
            t.compare.len(),
            show_compare(&t.compare[0])
        )
        .unwrap();
    } else {
        for c in &t.compare {
            writeln!(out, "{pad}  if {}", show_compare(c)).unwrap();
        }
    }
    for (name, ops) in [("then", &t.success), ("else", &t.failure)] {
        if ops.len() > 8 {
            writeln!(out, "{pad}  {name}: {} ops", ops.len()).unwrap();
            continue;
        }
        for op in ops {
            write!(out, "{pad}  {name} ").unwrap();
            match &op.request {
                Some(Q::RequestRange(r)) => writeln!(out, "{}", show_range_req(r)).unwrap(),
                Some(Q::RequestPut(p)) => writeln!(out, "{}", show_put_req(p)).unwrap(),
                Some(Q::RequestDeleteRange(d)) => writeln!(out, "{}", show_delete_req(d)).unwrap(),
                Some(Q::RequestTxn(t)) => show_txn_req(t, out, depth + 1),
                None => writeln!(out, "(empty op)").unwrap(),
            }
        }
    }
}

fn show_op(op: &Op) -> String {
    match op {
        Op::Range(r) => show_range_req(r),
        Op::Put(p) => show_put_req(p),
        Op::Delete(d) => show_delete_req(d),
        Op::Txn(t) => {
            let mut s = String::new();
            show_txn_req(t, &mut s, 0);
            s.trim_end().to_string()
        }
        Op::Compact(c) => format!(
            "Compact revision {}{}",
            c.revision,
            if c.physical { " physical" } else { "" }
        ),
        Op::HashKv(h) => format!("HashKV revision {}", h.revision),
    }
}

fn show_header(h: &Option<pb::ResponseHeader>) -> String {
    match h {
        None => "header None".to_string(),
        Some(h) if h.cluster_id == 0 && h.member_id == 0 && h.raft_term == 0 => {
            format!("rev {}", h.revision)
        }
        Some(h) => format!(
            "rev {} (cluster {} member {} term {})",
            h.revision, h.cluster_id, h.member_id, h.raft_term
        ),
    }
}

fn show_kv(kv: &mvccpb::KeyValue) -> String {
    format!(
        "{} create {} mod {} version {} value {} lease {}",
        bytes(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        bytes(&kv.value),
        kv.lease
    )
}

fn show_txn_resp(t: &pb::TxnResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "TxnResponse {} succeeded {}",
        show_header(&t.header),
        t.succeeded
    )
    .unwrap();
    for r in &t.responses {
        write!(out, "{pad}  ").unwrap();
        match &r.response {
            Some(A::ResponseRange(x)) => show_range_resp(x, out, depth + 1),
            Some(A::ResponsePut(x)) => show_put_resp(x, out),
            Some(A::ResponseDeleteRange(x)) => show_delete_resp(x, out, depth + 1),
            Some(A::ResponseTxn(x)) => show_txn_resp(x, out, depth + 1),
            None => writeln!(out, "(empty response)").unwrap(),
        }
    }
}

fn show_range_resp(r: &pb::RangeResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "RangeResponse {} count {} more {}",
        show_header(&r.header),
        r.count,
        r.more
    )
    .unwrap();
    for kv in &r.kvs {
        writeln!(out, "{pad}  {}", show_kv(kv)).unwrap();
    }
}

fn show_put_resp(p: &pb::PutResponse, out: &mut String) {
    let prev = p
        .prev_kv
        .as_ref()
        .map(show_kv)
        .unwrap_or_else(|| "None".to_string());
    writeln!(out, "PutResponse {} prev_kv {prev}", show_header(&p.header)).unwrap();
}

fn show_delete_resp(d: &pb::DeleteRangeResponse, out: &mut String, depth: usize) {
    let pad = "  ".repeat(depth);
    writeln!(
        out,
        "DeleteRangeResponse {} deleted {}",
        show_header(&d.header),
        d.deleted
    )
    .unwrap();
    for kv in &d.prev_kvs {
        writeln!(out, "{pad}  prev {}", show_kv(kv)).unwrap();
    }
}

fn show_outcome(o: &Outcome) -> String {
    let mut s = String::new();
    match o {
        Err(f) => write!(s, "error {:?} {:?}", f.code, f.message).unwrap(),
        Ok(Resp::Range(r)) => show_range_resp(r, &mut s, 0),
        Ok(Resp::Put(p)) => show_put_resp(p, &mut s),
        Ok(Resp::Delete(d)) => show_delete_resp(d, &mut s, 0),
        Ok(Resp::Txn(t)) => show_txn_resp(t, &mut s, 0),
        Ok(Resp::Compact(c)) => write!(s, "CompactionResponse {}", show_header(&c.header)).unwrap(),
        Ok(Resp::HashKv(h)) => write!(
            s,
            "HashKVResponse {} hash {} compact_revision {} hash_revision {}",
            show_header(&h.header),
            h.hash,
            h.compact_revision,
            h.hash_revision
        )
        .unwrap(),
    }
    s.trim_end().to_string()
}

// ------------------------------------------------------------------ sizes

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn len_bytes_field(tag_len: usize, b: &[u8]) -> usize {
    if b.is_empty() {
        0
    } else {
        tag_len + varint_len(b.len() as u64) + b.len()
    }
}

fn len_int_field(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v as u64)
    }
}

fn len_message_field(len: usize) -> usize {
    1 + varint_len(len as u64) + len
}

fn len_put(p: &pb::PutRequest) -> usize {
    len_bytes_field(1, &p.key)
        + len_bytes_field(1, &p.value)
        + len_int_field(p.lease)
        + 2 * (p.prev_kv as usize + p.ignore_value as usize + p.ignore_lease as usize)
}

fn len_range(r: &pb::RangeRequest) -> usize {
    len_bytes_field(1, &r.key)
        + len_bytes_field(1, &r.range_end)
        + [
            r.limit,
            r.revision,
            r.sort_order as i64,
            r.sort_target as i64,
            r.min_mod_revision,
            r.max_mod_revision,
            r.min_create_revision,
            r.max_create_revision,
        ]
        .iter()
        .map(|&v| len_int_field(v))
        .sum::<usize>()
        + 2 * (r.serializable as usize + r.keys_only as usize + r.count_only as usize)
}

fn len_delete(d: &pb::DeleteRangeRequest) -> usize {
    len_bytes_field(1, &d.key) + len_bytes_field(1, &d.range_end) + 2 * d.prev_kv as usize
}

fn len_compare(c: &pb::Compare) -> usize {
    let union = match &c.target_union {
        None => 0,
        Some(TargetUnion::Value(v)) => 1 + varint_len(v.len() as u64) + v.len(),
        Some(
            TargetUnion::Version(v)
            | TargetUnion::CreateRevision(v)
            | TargetUnion::ModRevision(v)
            | TargetUnion::Lease(v),
        ) => 1 + varint_len(*v as u64),
    };
    len_int_field(c.result as i64)
        + len_int_field(c.target as i64)
        + len_bytes_field(1, &c.key)
        + len_bytes_field(2, &c.range_end)
        + union
}

fn len_op(op: &pb::RequestOp) -> usize {
    match &op.request {
        None => 0,
        Some(Q::RequestRange(r)) => len_message_field(len_range(r)),
        Some(Q::RequestPut(p)) => len_message_field(len_put(p)),
        Some(Q::RequestDeleteRange(d)) => len_message_field(len_delete(d)),
        Some(Q::RequestTxn(t)) => len_message_field(len_txn(t)),
    }
}

/// The protobuf encoding length of a TxnRequest.
fn len_txn(t: &pb::TxnRequest) -> usize {
    t.compare
        .iter()
        .map(|c| len_message_field(len_compare(c)))
        .sum::<usize>()
        + t.success
            .iter()
            .chain(&t.failure)
            .map(|o| len_message_field(len_op(o)))
            .sum::<usize>()
}

/// Finds the filler length `n` with `len(n) == target` (or the closest one
/// below when varint sizes make `target` unreachable).
fn fit(target: usize, len: impl Fn(usize) -> usize) -> usize {
    let mut n = target.saturating_sub(len(0));
    for _ in 0..8 {
        let l = len(n);
        if l == target {
            return n;
        }
        n = (n as i64 + target as i64 - l as i64).max(0) as usize;
    }
    while n > 0 && len(n) > target {
        n -= 1;
    }
    n
}

// ------------------------------------------------------------------ keys

/// etcd's `GetPrefixRangeEnd`: the end of the range of every key with
/// prefix `k` (`[0]`, every key from `k`, when no such end exists).
fn prefix_end(k: &[u8]) -> Vec<u8> {
    let mut end = k.to_vec();
    while let Some(&last) = end.last() {
        if last < 0xff {
            *end.last_mut().unwrap() += 1;
            return end;
        }
        end.pop();
    }
    vec![0]
}

fn is_read_only(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .all(|op| match &op.request {
            Some(Q::RequestRange(_)) => true,
            Some(Q::RequestTxn(t)) => is_read_only(t),
            _ => false,
        })
}

fn has_from_key_delete(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestDeleteRange(d)) => d.range_end == [0],
            Some(Q::RequestTxn(t)) => has_from_key_delete(t),
            _ => false,
        })
}

fn has_put(t: &pb::TxnRequest) -> bool {
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestPut(_)) => true,
            Some(Q::RequestTxn(t)) => has_put(t),
            _ => false,
        })
}

fn clear_ignore_flags(t: &mut pb::TxnRequest) {
    for op in t.success.iter_mut().chain(t.failure.iter_mut()) {
        match &mut op.request {
            Some(Q::RequestPut(p)) => {
                p.ignore_value = false;
                p.ignore_lease = false;
            }
            Some(Q::RequestTxn(t)) => clear_ignore_flags(t),
            _ => {}
        }
    }
}

// ------------------------------------------------------------------ generator

/// Seeded request generator. It follows the store through etcd's answers
/// (current and compacted revisions) to aim revisions at interesting
/// places: historical, compacted, the compaction point, the future.
struct Gen {
    rng: StdRng,
    /// The current revision, as the last answer reported it.
    rev: i64,
    /// etcd's compaction revision; -1 before the first compaction.
    compact: i64,
    /// Revisions of every successful compaction, oldest first.
    compactions: Vec<i64>,
    /// A non-physical compaction may still run in etcd's background.
    pending: bool,
    /// Revisions at which a transaction may have deleted a key and created
    /// it again (only a "from key" delete escapes etcd's duplicate check).
    /// etcd 3.7 loses such a key's new value when it compacts at exactly
    /// that revision, and then exits on the next read of the key
    /// ("range failed to find revision pair", etcd-io/etcd#22376), so the
    /// generator never compacts there.
    recreated: BTreeSet<i64>,
}

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen {
            rng: StdRng::seed_from_u64(seed),
            rev: 1,
            compact: -1,
            compactions: Vec::new(),
            pending: false,
            recreated: BTreeSet::new(),
        }
    }

    fn one_in(&mut self, n: u32) -> bool {
        self.rng.random_ratio(1, n)
    }

    fn below(&mut self, n: u32) -> u32 {
        self.rng.random_range(0..n)
    }

    /// Keys from a small alphabet, so that requests collide, plus edge keys.
    fn key(&mut self) -> Vec<u8> {
        match self.below(40) {
            0 => vec![0],
            1 => vec![0xff],
            2 => b"a\0".to_vec(),
            3 => vec![0xff, 0xff],
            _ => {
                let len = match self.below(10) {
                    0..=3 => 1,
                    4..=7 => 2,
                    _ => 3,
                };
                (0..len).map(|_| b"abc"[self.below(3) as usize]).collect()
            }
        }
    }

    /// A key, rarely empty (an error everywhere).
    fn key_or_empty(&mut self) -> Vec<u8> {
        if self.one_in(60) {
            Vec::new()
        } else {
            self.key()
        }
    }

    /// A non-empty range end for `key`.
    fn range_end(&mut self, key: &[u8]) -> Vec<u8> {
        match self.below(10) {
            0..=3 => prefix_end(key),
            4..=5 => vec![0],
            6..=8 => self.key(),
            _ => {
                let mut k = key.to_vec();
                k.push(0);
                k
            }
        }
    }

    fn value(&mut self) -> Vec<u8> {
        match self.below(12) {
            0 => Vec::new(),
            1..=8 => format!("v{}", self.below(4)).into_bytes(),
            9 => b"v".to_vec(),
            _ => {
                let n = self.rng.random_range(1..24);
                (0..n).map(|_| self.rng.random()).collect()
            }
        }
    }

    /// Mostly no lease; sometimes one that does not exist.
    fn lease(&mut self) -> i64 {
        if self.one_in(25) {
            [1, 7, -3, i64::MAX][self.below(4) as usize]
        } else {
            0
        }
    }

    /// A revision aimed at an interesting place of the history.
    fn revision(&mut self) -> i64 {
        let (rev, c) = (self.rev, self.compact);
        match self.below(12) {
            0 => 0,
            1 | 2 => rev,
            3..=5 => self.rng.random_range(1..=rev),
            6 if c > 0 => c,
            7 if c > 1 => self.rng.random_range(1..c),
            8 => rev + self.rng.random_range(1..=3),
            9 => -self.rng.random_range(1..=3),
            _ => self.rng.random_range(c.max(1)..=rev),
        }
    }

    /// A revision-filter bound.
    fn filter(&mut self) -> i64 {
        if self.one_in(3) {
            0
        } else {
            self.rng.random_range(0..=self.rev + 1)
        }
    }

    fn range_req(&mut self, in_txn: bool) -> pb::RangeRequest {
        let key = self.key_or_empty();
        let range_end = if self.below(10) < 7 {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        let limit = match self.below(20) {
            0..=9 => 0,
            10..=16 => self.rng.random_range(1..=3),
            17 => 1000,
            18 => -1,
            _ => self.rng.random_range(4..=8),
        };
        let revision = if self.below(if in_txn { 6 } else { 3 }) == 0 {
            self.revision()
        } else {
            0
        };
        let sort_order = match self.below(100) {
            0..=49 => 0,
            50..=74 => 1,
            75..=98 => 2,
            _ => [3, -1][self.below(2) as usize],
        };
        let sort_target = match self.below(100) {
            0..=39 => 0,
            40..=98 => self.rng.random_range(1..=4),
            _ => [5, 99][self.below(2) as usize],
        };
        let mut filters = [0i64; 4];
        for f in &mut filters {
            if self.one_in(8) {
                *f = self.filter();
            }
        }
        pb::RangeRequest {
            key,
            range_end,
            limit,
            revision,
            sort_order,
            sort_target,
            serializable: self.one_in(4),
            keys_only: self.one_in(6),
            count_only: self.one_in(8),
            min_mod_revision: filters[0],
            max_mod_revision: filters[1],
            min_create_revision: filters[2],
            max_create_revision: filters[3],
        }
    }

    fn put_req(&mut self) -> pb::PutRequest {
        let key = self.key_or_empty();
        let ignore_value = self.one_in(8);
        let ignore_lease = self.one_in(8);
        let value = if ignore_value && !self.one_in(6) {
            Vec::new()
        } else {
            self.value()
        };
        let lease = if ignore_lease && !self.one_in(6) {
            0
        } else {
            self.lease()
        };
        pb::PutRequest {
            key,
            value,
            lease,
            prev_kv: self.one_in(3),
            ignore_value,
            ignore_lease,
        }
    }

    fn delete_req(&mut self) -> pb::DeleteRangeRequest {
        let key = self.key_or_empty();
        let range_end = if self.below(10) < 6 {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        pb::DeleteRangeRequest {
            key,
            range_end,
            prev_kv: self.one_in(2),
        }
    }

    fn compare(&mut self) -> pb::Compare {
        // Rarely a result or target outside the enum: etcd takes an unknown
        // result as true and compares an unknown target as equal.
        let target = if self.one_in(150) {
            [5, 9][self.below(2) as usize]
        } else {
            self.below(5) as i32
        };
        let result = if self.one_in(150) {
            [4, 7][self.below(2) as usize]
        } else {
            self.below(4) as i32
        };
        let key = if self.one_in(80) {
            Vec::new()
        } else {
            self.key()
        };
        let range_end = if self.one_in(3) {
            self.range_end(&key)
        } else {
            Vec::new()
        };
        let matching = |g: &mut Gen, t: i32| match t {
            0 => TargetUnion::Version(g.rng.random_range(0..=3)),
            1 => TargetUnion::CreateRevision(g.rng.random_range(0..=g.rev + 1)),
            2 => TargetUnion::ModRevision(g.rng.random_range(0..=g.rev + 1)),
            3 => TargetUnion::Value(g.value()),
            _ => TargetUnion::Lease(if g.one_in(5) {
                g.rng.random_range(1..=3)
            } else {
                0
            }),
        };
        let target_union = match self.below(100) {
            0..=84 => Some(matching(self, target)),
            85..=92 => None,
            _ => {
                let other = (target + 1 + self.below(4) as i32) % 5;
                Some(matching(self, other))
            }
        };
        pb::Compare {
            result,
            target,
            key,
            range_end,
            target_union,
        }
    }

    fn op_count(&mut self) -> usize {
        match self.below(10) {
            0..=1 => 0,
            2..=4 => 1,
            5..=7 => 2,
            8 => 3,
            _ => self.rng.random_range(4..=6),
        }
    }

    fn txn_op(&mut self, depth: usize, read_only: bool) -> pb::RequestOp {
        if self.one_in(150) {
            return pb::RequestOp { request: None };
        }
        let request = match self.below(10) {
            4..=6 if !read_only => Q::RequestPut(self.put_req()),
            7..=8 if !read_only => Q::RequestDeleteRange(self.delete_req()),
            9 if depth < 4 && self.one_in(2) => Q::RequestTxn(self.txn_req(depth + 1, read_only)),
            _ => Q::RequestRange(self.range_req(true)),
        };
        pb::RequestOp {
            request: Some(request),
        }
    }

    fn txn_req(&mut self, depth: usize, read_only: bool) -> pb::TxnRequest {
        let ncmp = match self.below(10) {
            0..=2 => 0,
            3..=6 => 1,
            7..=8 => 2,
            _ => 3,
        };
        let compare = (0..ncmp).map(|_| self.compare()).collect();
        let n = self.op_count();
        let success = (0..n).map(|_| self.txn_op(depth, read_only)).collect();
        let n = self.op_count();
        let failure = (0..n).map(|_| self.txn_op(depth, read_only)).collect();
        pb::TxnRequest {
            compare,
            success,
            failure,
        }
    }

    fn txn(&mut self) -> pb::TxnRequest {
        if self.one_in(40) {
            return self.txn_at_op_limit();
        }
        let read_only = self.one_in(4);
        let mut t = self.txn_req(1, read_only);
        if !read_only && self.one_in(25) {
            // The same key written twice in one branch.
            let p = self.put_req();
            let mut q = p.clone();
            q.value = self.value();
            let branch = if self.one_in(2) {
                &mut t.success
            } else {
                &mut t.failure
            };
            branch.push(pb::RequestOp {
                request: Some(Q::RequestPut(p)),
            });
            branch.push(pb::RequestOp {
                request: Some(Q::RequestPut(q)),
            });
        }
        // etcd's duplicate-key check misses "from key" deletes, and its apply
        // panics when a later put then ignores the value or lease of a key
        // the delete removed; keep such transactions out.
        if has_from_key_delete(&t) {
            clear_ignore_flags(&mut t);
        }
        t
    }

    /// Transactions at and just over `--max-txn-ops`, on each level.
    fn txn_at_op_limit(&mut self) -> pb::TxnRequest {
        let over = self.one_in(2) as usize;
        let range = |g: &mut Gen| pb::RequestOp {
            request: Some(Q::RequestRange(pb::RangeRequest {
                key: g.key(),
                ..Default::default()
            })),
        };
        match self.below(3) {
            0 => pb::TxnRequest {
                compare: (0..MAX_TXN_OPS + over)
                    .map(|_| {
                        // Valid compares, so that only the op count is wrong.
                        let mut c = self.compare();
                        if c.key.is_empty() {
                            c.key = b"a".to_vec();
                        }
                        c.result %= 4;
                        c.target %= 5;
                        c
                    })
                    .collect(),
                success: vec![range(self)],
                failure: vec![],
            },
            1 => pb::TxnRequest {
                compare: vec![],
                success: (0..MAX_TXN_OPS + over).map(|_| range(self)).collect(),
                failure: vec![range(self)],
            },
            _ => {
                // A nested level may hold what its parents left of the budget.
                let outer = self.rng.random_range(1..=4);
                let mut success: Vec<_> = (0..outer - 1).map(|_| range(self)).collect();
                let inner = pb::TxnRequest {
                    compare: vec![],
                    success: vec![],
                    failure: (0..MAX_TXN_OPS - outer + over)
                        .map(|_| range(self))
                        .collect(),
                };
                success.push(pb::RequestOp {
                    request: Some(Q::RequestTxn(inner)),
                });
                pb::TxnRequest {
                    compare: vec![],
                    success,
                    failure: vec![],
                }
            }
        }
    }

    /// An encoded request length at an interesting distance from the limits.
    ///
    /// etcd wraps a proposal in an InternalRaftRequest whose request ID takes
    /// 9 or 10 bytes depending on the member ID, so its envelope is 17 or 18
    /// bytes for requests of this size: at most `max - 18` is accepted and
    /// from `max - 15` refused whatever the ID.
    fn large_len(&mut self) -> usize {
        match self.below(6) {
            0 => MAX_REQUEST_BYTES - 1000,
            1 | 2 => MAX_REQUEST_BYTES - 18,
            3 => MAX_REQUEST_BYTES - 15,
            4 => MAX_REQUEST_BYTES + 1000,
            _ => GRPC_MAX_RECV_BYTES + 100,
        }
    }

    fn large_put(&mut self) -> pb::PutRequest {
        let target = self.large_len();
        let mut p = pb::PutRequest {
            key: self.key(),
            prev_kv: self.one_in(3),
            ..Default::default()
        };
        match self.below(8) {
            0 => p.ignore_value = true,
            1 => p.key = Vec::new(),
            _ => {}
        }
        let n = fit(target, |n| {
            len_put(&pb::PutRequest {
                value: vec![0; n],
                ..p.clone()
            })
        });
        p.value = vec![b'x'; n];
        p
    }

    /// A transaction carrying a large value: a write, or a read-only one
    /// whose compare value is large.
    fn large_txn(&mut self) -> pb::TxnRequest {
        let target = self.large_len();
        if self.one_in(2) {
            let mut t = pb::TxnRequest {
                compare: vec![self.compare()],
                success: vec![pb::RequestOp {
                    request: Some(Q::RequestPut(pb::PutRequest {
                        key: self.key(),
                        ..Default::default()
                    })),
                }],
                failure: vec![pb::RequestOp {
                    request: Some(Q::RequestRange(self.range_req(true))),
                }],
            };
            let with = |t: &pb::TxnRequest, n: usize| {
                let mut t = t.clone();
                if let Some(Q::RequestPut(p)) = &mut t.success[0].request {
                    p.value = vec![b'y'; n];
                }
                t
            };
            let n = fit(target, |n| len_txn(&with(&t, n)));
            t = with(&t, n);
            t
        } else {
            let key = self.key();
            let cmp = |n: usize| pb::Compare {
                result: CompareResult::Equal as i32,
                target: CompareTarget::Value as i32,
                key: key.clone(),
                range_end: Vec::new(),
                target_union: Some(TargetUnion::Value(vec![b'z'; n])),
            };
            let success = vec![pb::RequestOp {
                request: Some(Q::RequestRange(self.range_req(true))),
            }];
            let n = fit(target, |n| {
                len_txn(&pb::TxnRequest {
                    compare: vec![cmp(n)],
                    success: success.clone(),
                    failure: vec![],
                })
            });
            pb::TxnRequest {
                compare: vec![cmp(n)],
                success,
                failure: vec![],
            }
        }
    }

    fn compact_req(&mut self) -> pb::CompactionRequest {
        let (rev, c) = (self.rev, self.compact);
        let revision = match self.below(20) {
            0..=5 => rev,
            6..=11 if c + 1 < rev => self.rng.random_range(c + 1..=rev),
            12..=13 => c,
            14 if c >= 1 => self.rng.random_range(1..=c),
            15 => 0,
            16 => -self.rng.random_range(1..=3),
            17..=19 => rev + self.rng.random_range(1..=3),
            _ => rev,
        };
        let mut revision = revision;
        while revision > self.compact && self.recreated.contains(&revision) {
            revision -= 1;
        }
        pb::CompactionRequest {
            revision,
            physical: self.one_in(2),
        }
    }

    fn hash_kv_req(&mut self) -> pb::HashKvRequest {
        let (rev, c) = (self.rev, self.compact);
        let revision = match self.below(12) {
            0..=2 => 0,
            3 => rev,
            4..=5 => self.rng.random_range(c.max(1)..=rev),
            6 if c >= 0 => c,
            7 if !self.compactions.is_empty() => {
                let i = self.rng.random_range(0..self.compactions.len());
                self.compactions[i]
            }
            8 if c > 1 => self.rng.random_range(1..c),
            9 => rev + self.rng.random_range(1..=3),
            10 => -1,
            _ => self.rng.random_range(1..=rev),
        };
        pb::HashKvRequest { revision }
    }

    fn next_op(&mut self) -> Op {
        let pick = self.below(200);
        // Compactions and HashKV wait until etcd finished every background
        // compaction (see the module comment).
        if self.pending && pick >= 180 {
            return Op::Compact(pb::CompactionRequest {
                revision: self.compact,
                physical: true,
            });
        }
        match pick {
            0..=47 => Op::Range(self.range_req(false)),
            48..=99 => Op::Put(self.put_req()),
            100..=119 => Op::Delete(self.delete_req()),
            120..=177 => Op::Txn(self.txn()),
            178 => Op::Put(self.large_put()),
            179 => Op::Txn(self.large_txn()),
            180..=185 => Op::Compact(self.compact_req()),
            _ => Op::HashKv(self.hash_kv_req()),
        }
    }

    /// Follows the store through etcd's answer to `op`.
    fn observe(&mut self, op: &Op, etcd: &Outcome) {
        let header = match etcd {
            Ok(Resp::Range(r)) => r.header,
            Ok(Resp::Put(r)) => r.header,
            Ok(Resp::Delete(r)) => r.header,
            Ok(Resp::Txn(r)) => r.header,
            Ok(Resp::Compact(r)) => r.header,
            Ok(Resp::HashKv(r)) => r.header,
            Err(_) => None,
        };
        if let Some(h) = header {
            if let Op::Txn(t) = op {
                if h.revision > self.rev && has_from_key_delete(t) && has_put(t) {
                    self.recreated.insert(h.revision);
                }
            }
            self.rev = h.revision;
        }
        if let Op::Compact(c) = op {
            match etcd {
                Ok(_) => {
                    self.compact = c.revision;
                    self.compactions.push(c.revision);
                    self.pending = !c.physical;
                }
                // A physical compaction that fails as compacted still waits
                // for every compaction scheduled before it.
                Err(f)
                    if c.physical
                        && f.message.ends_with("required revision has been compacted") =>
                {
                    self.pending = false;
                }
                Err(_) => {}
            }
        }
    }
}

// ------------------------------------------------------------------ coverage

/// Everything the run must have exercised at least once: request fields and
/// value classes (`<request>.<field>[=<class>]`), answer shapes
/// (`result:...`) and error messages (`err:...`).
const REQUIRED: &[&str] = &[
    // Range
    "range.key=empty",
    "range.key=\\0",
    "range.range_end",
    "range.range_end=prefix",
    "range.range_end=from_key",
    "range.range_end<=key",
    "range.limit",
    "range.limit<0",
    "range.limit+sort",
    "range.revision=current",
    "range.revision=historical",
    "range.revision=compact",
    "range.revision=compacted",
    "range.revision=future",
    "range.revision=negative",
    "range.sort_order=NONE",
    "range.sort_order=ASCEND",
    "range.sort_order=DESCEND",
    "range.sort_order=invalid",
    "range.sort_target=KEY",
    "range.sort_target=VERSION",
    "range.sort_target=CREATE",
    "range.sort_target=MOD",
    "range.sort_target=VALUE",
    "range.sort_target=invalid",
    "range.serializable",
    "range.keys_only",
    "range.count_only",
    "range.min_mod_revision",
    "range.max_mod_revision",
    "range.min_create_revision",
    "range.max_create_revision",
    // Put
    "put.key=empty",
    "put.key=\\0",
    "put.value=empty",
    "put.value=large",
    "put.lease",
    "put.prev_kv",
    "put.ignore_value",
    "put.ignore_lease",
    // DeleteRange
    "delete.key=empty",
    "delete.range_end",
    "delete.range_end=prefix",
    "delete.range_end=from_key",
    "delete.prev_kv",
    // Txn
    "txn.compare",
    "txn.compare.key=empty",
    "txn.compare.result=EQUAL",
    "txn.compare.result=GREATER",
    "txn.compare.result=LESS",
    "txn.compare.result=NOT_EQUAL",
    "txn.compare.target=VERSION",
    "txn.compare.target=CREATE",
    "txn.compare.target=MOD",
    "txn.compare.target=VALUE",
    "txn.compare.target=LEASE",
    "txn.compare.result=invalid",
    "txn.compare.target=invalid",
    "txn.compare.range_end",
    "txn.compare.range_end=prefix",
    "txn.compare.range_end=from_key",
    "txn.compare.target_union=none",
    "txn.compare.target_union=other",
    "txn.compare.value=large",
    "txn.success",
    "txn.failure",
    "txn.op=range",
    "txn.op=put",
    "txn.op=delete",
    "txn.op=txn",
    "txn.op=empty",
    "txn.depth>=3",
    "txn.read_only",
    "txn.ops=128",
    "txn.ops>128",
    "txn.nested_ops>budget",
    "txn.range.revision=compacted",
    "txn.range.revision=future",
    "txn.range.sort_target=VALUE",
    "txn.range.limit+sort",
    "txn.put.value=large",
    "txn.put.lease",
    "txn.put.prev_kv",
    "txn.put.ignore_value",
    "txn.put.ignore_lease",
    "txn.delete.range_end=from_key",
    "txn.delete.prev_kv",
    // Compact
    "compact.physical",
    "compact.barrier",
    "compact.revision=current",
    "compact.revision=historical",
    "compact.revision=compact",
    "compact.revision=compacted",
    "compact.revision=future",
    "compact.revision=0",
    "compact.revision=negative",
    // HashKV
    "hashkv.revision=0",
    "hashkv.revision=current",
    "hashkv.revision=historical",
    "hashkv.revision=compact",
    "hashkv.revision=earlier_compaction",
    "hashkv.revision=compacted",
    "hashkv.revision=future",
    "hashkv.revision=negative",
    // Answers
    "result:range.more",
    "result:range.kvs>=2",
    "result:delete.deleted=0",
    "result:delete.deleted>=2",
    "result:put.prev_kv",
    "result:txn.succeeded=true",
    "result:txn.succeeded=false",
    "result:txn.write",
    "result:hashkv.cached",
    "result:compact.ok",
    // Errors
    "err:etcdserver: key is not provided",
    "err:etcdserver: value is provided",
    "err:etcdserver: lease is provided",
    "err:etcdserver: key not found",
    "err:etcdserver: too many operations in txn request",
    "err:etcdserver: duplicate key given in txn request",
    "err:etcdserver: invalid sort option",
    "err:etcdserver: request is too large",
    "err:etcdserver: mvcc: required revision has been compacted",
    "err:etcdserver: mvcc: required revision is a future revision",
    "err:etcdserver: requested lease not found",
];

#[derive(Default)]
struct Coverage {
    seen: BTreeSet<String>,
}

impl Coverage {
    fn note(&mut self, item: impl Into<String>) {
        self.seen.insert(item.into());
    }

    fn missing(&self) -> Vec<&'static str> {
        REQUIRED
            .iter()
            .copied()
            .filter(|r| !self.seen.contains(*r))
            .collect()
    }

    /// Classifies a revision against the store's state.
    fn revision(&mut self, name: &str, v: i64, rev: i64, compact: i64) {
        let class = if v == 0 {
            "0"
        } else if v < 0 {
            "negative"
        } else if v > rev {
            "future"
        } else if v == compact {
            "compact"
        } else if v < compact {
            "compacted"
        } else if v == rev {
            "current"
        } else {
            "historical"
        };
        self.note(format!("{name}={class}"));
    }

    fn key(&mut self, p: &str, key: &[u8]) {
        if key.is_empty() {
            self.note(format!("{p}.key=empty"));
        } else if key == [0] {
            self.note(format!("{p}.key=\\0"));
        }
    }

    fn range_end(&mut self, p: &str, key: &[u8], end: &[u8]) {
        if end.is_empty() {
            return;
        }
        self.note(format!("{p}.range_end"));
        if end == [0] {
            self.note(format!("{p}.range_end=from_key"));
        } else {
            if end == prefix_end(key).as_slice() {
                self.note(format!("{p}.range_end=prefix"));
            }
            if end <= key {
                self.note(format!("{p}.range_end<=key"));
            }
        }
    }

    fn range(&mut self, p: &str, r: &pb::RangeRequest, rev: i64, compact: i64) {
        self.key(p, &r.key);
        self.range_end(p, &r.key, &r.range_end);
        let sorted = r.sort_order != 0 || r.sort_target != 0;
        if r.limit > 0 {
            self.note(format!("{p}.limit"));
            if sorted {
                self.note(format!("{p}.limit+sort"));
            }
        } else if r.limit < 0 {
            self.note(format!("{p}.limit<0"));
        }
        if r.revision != 0 {
            self.revision(&format!("{p}.revision"), r.revision, rev, compact);
        }
        let order = SortOrder::try_from(r.sort_order)
            .map(|x| x.as_str_name())
            .unwrap_or("invalid");
        self.note(format!("{p}.sort_order={order}"));
        let target = SortTarget::try_from(r.sort_target)
            .map(|x| x.as_str_name())
            .unwrap_or("invalid");
        self.note(format!("{p}.sort_target={target}"));
        for (name, v) in [
            ("serializable", r.serializable),
            ("keys_only", r.keys_only),
            ("count_only", r.count_only),
        ] {
            if v {
                self.note(format!("{p}.{name}"));
            }
        }
        for (name, v) in [
            ("min_mod_revision", r.min_mod_revision),
            ("max_mod_revision", r.max_mod_revision),
            ("min_create_revision", r.min_create_revision),
            ("max_create_revision", r.max_create_revision),
        ] {
            if v != 0 {
                self.note(format!("{p}.{name}"));
            }
        }
    }

    fn put(&mut self, p: &str, r: &pb::PutRequest) {
        self.key(p, &r.key);
        if r.value.is_empty() {
            self.note(format!("{p}.value=empty"));
        } else if r.value.len() > 1 << 20 {
            self.note(format!("{p}.value=large"));
        }
        if r.lease != 0 {
            self.note(format!("{p}.lease"));
        }
        for (name, v) in [
            ("prev_kv", r.prev_kv),
            ("ignore_value", r.ignore_value),
            ("ignore_lease", r.ignore_lease),
        ] {
            if v {
                self.note(format!("{p}.{name}"));
            }
        }
    }

    fn delete(&mut self, p: &str, d: &pb::DeleteRangeRequest) {
        self.key(p, &d.key);
        self.range_end(p, &d.key, &d.range_end);
        if d.prev_kv {
            self.note(format!("{p}.prev_kv"));
        }
    }

    fn txn(&mut self, t: &pb::TxnRequest, depth: usize, rev: i64, compact: i64) {
        if depth >= 3 {
            self.note("txn.depth>=3");
        }
        let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
        if opc == MAX_TXN_OPS {
            self.note("txn.ops=128");
        } else if opc > MAX_TXN_OPS {
            self.note("txn.ops>128");
        }
        if !t.compare.is_empty() {
            self.note("txn.compare");
        }
        for c in &t.compare {
            self.key("txn.compare", &c.key);
            self.range_end("txn.compare", &c.key, &c.range_end);
            let r = CompareResult::try_from(c.result)
                .map(|x| x.as_str_name())
                .unwrap_or("invalid");
            self.note(format!("txn.compare.result={r}"));
            let t = CompareTarget::try_from(c.target)
                .map(|x| x.as_str_name())
                .unwrap_or("invalid");
            self.note(format!("txn.compare.target={t}"));
            let union_target = match &c.target_union {
                None => None,
                Some(TargetUnion::Version(_)) => Some(CompareTarget::Version),
                Some(TargetUnion::CreateRevision(_)) => Some(CompareTarget::Create),
                Some(TargetUnion::ModRevision(_)) => Some(CompareTarget::Mod),
                Some(TargetUnion::Value(v)) => {
                    if v.len() > 1 << 20 {
                        self.note("txn.compare.value=large");
                    }
                    Some(CompareTarget::Value)
                }
                Some(TargetUnion::Lease(_)) => Some(CompareTarget::Lease),
            };
            match union_target {
                None => self.note("txn.compare.target_union=none"),
                Some(u) if u as i32 != c.target => self.note("txn.compare.target_union=other"),
                Some(_) => {}
            }
        }
        if !t.success.is_empty() {
            self.note("txn.success");
        }
        if !t.failure.is_empty() {
            self.note("txn.failure");
        }
        for op in t.success.iter().chain(&t.failure) {
            match &op.request {
                None => self.note("txn.op=empty"),
                Some(Q::RequestRange(r)) => {
                    self.note("txn.op=range");
                    self.range("txn.range", r, rev, compact);
                }
                Some(Q::RequestPut(p)) => {
                    self.note("txn.op=put");
                    self.put("txn.put", p);
                }
                Some(Q::RequestDeleteRange(d)) => {
                    self.note("txn.op=delete");
                    self.delete("txn.delete", d);
                }
                Some(Q::RequestTxn(t)) => {
                    self.note("txn.op=txn");
                    self.txn(t, depth + 1, rev, compact);
                }
            }
        }
    }

    /// Records what `op` exercises, classified against the store's state
    /// before it.
    fn request(&mut self, op: &Op, g: &Gen) {
        let (rev, compact) = (g.rev, g.compact);
        match op {
            Op::Range(r) => self.range("range", r, rev, compact),
            Op::Put(p) => self.put("put", p),
            Op::Delete(d) => self.delete("delete", d),
            Op::Txn(t) => {
                if is_read_only(t) {
                    self.note("txn.read_only");
                }
                if nested_budget_exceeded(t, MAX_TXN_OPS, 1) {
                    self.note("txn.nested_ops>budget");
                }
                self.txn(t, 1, rev, compact)
            }
            Op::Compact(c) => {
                if c.physical {
                    self.note("compact.physical");
                    if compact >= 0 && c.revision == compact && g.pending {
                        self.note("compact.barrier");
                    }
                }
                if c.revision == 0 {
                    self.note("compact.revision=0");
                } else {
                    self.revision("compact.revision", c.revision, rev, compact);
                }
            }
            Op::HashKv(h) => {
                if h.revision > 0 && h.revision != compact && g.compactions.contains(&h.revision) {
                    self.note("hashkv.revision=earlier_compaction");
                } else {
                    self.revision("hashkv.revision", h.revision, rev, compact);
                }
            }
        }
    }

    /// Records the shape of etcd's answer.
    fn outcome(&mut self, op: &Op, o: &Outcome, g: &Gen) {
        match o {
            Err(f) => self.note(format!("err:{}", f.message)),
            Ok(Resp::Range(r)) => {
                if r.more {
                    self.note("result:range.more");
                }
                if r.kvs.len() >= 2 {
                    self.note("result:range.kvs>=2");
                }
            }
            Ok(Resp::Put(p)) => {
                if p.prev_kv.is_some() {
                    self.note("result:put.prev_kv");
                }
            }
            Ok(Resp::Delete(d)) => {
                if d.deleted == 0 {
                    self.note("result:delete.deleted=0");
                } else if d.deleted >= 2 {
                    self.note("result:delete.deleted>=2");
                }
            }
            Ok(Resp::Txn(t)) => {
                self.note(format!("result:txn.succeeded={}", t.succeeded));
                if t.header.is_some_and(|h| h.revision > g.rev) {
                    self.note("result:txn.write");
                }
            }
            Ok(Resp::Compact(_)) => self.note("result:compact.ok"),
            Ok(Resp::HashKv(h)) => {
                if matches!(op, Op::HashKv(_)) && h.compact_revision != g.compact {
                    self.note("result:hashkv.cached");
                }
            }
        }
    }
}

/// Whether a nested level of `t` holds more ops than its parents left of
/// the `--max-txn-ops` budget (etcd `checkTxnRequest`).
fn nested_budget_exceeded(t: &pb::TxnRequest, budget: usize, depth: usize) -> bool {
    let opc = t.compare.len().max(t.success.len()).max(t.failure.len());
    if opc > budget {
        return depth > 1;
    }
    t.success
        .iter()
        .chain(&t.failure)
        .any(|op| match &op.request {
            Some(Q::RequestTxn(inner)) => nested_budget_exceeded(inner, budget - opc, depth + 1),
            _ => false,
        })
}

// ------------------------------------------------------------------ driver

/// Rewrites the second server's answer before the comparison and says
/// whether it changed it; for the planted-divergence test.
type Plant = fn(&Op, &mut Outcome) -> bool;

struct Settings {
    ops: usize,
    trace: bool,
}

impl Settings {
    fn from_env() -> Settings {
        let ops = std::env::var("KVIK_DIFF_OPS")
            .ok()
            .map(|v| v.parse().expect("KVIK_DIFF_OPS is a number"));
        Settings {
            ops: ops.unwrap_or(DEFAULT_OPS),
            trace: std::env::var("KVIK_DIFF_TRACE").is_ok_and(|v| !v.is_empty() && v != "0"),
        }
    }
}

fn start(kind: Kind) -> Server {
    match kind {
        // fsync changes nothing etcd answers; skipping it keeps seeds quick.
        Kind::Etcd => Server::start_with(Kind::Etcd, &["--unsafe-no-fsync"]),
        Kind::Kvik => Server::start(Kind::Kvik),
    }
}

/// Starts a fresh etcd and a fresh `other` side by side.
fn start_pair(other: Kind) -> (Server, Server) {
    std::thread::scope(|s| {
        let etcd = s.spawn(|| start(Kind::Etcd));
        let other = s.spawn(move || start(other));
        (
            etcd.join().expect("etcd start"),
            other.join().expect("server start"),
        )
    })
}

/// Replays seed `seed` on a fresh etcd and a fresh `other` (kvik, or a
/// second etcd for the comparator's own tests); the first divergence ends
/// it.
fn run_seed(
    rt: &tokio::runtime::Runtime,
    seed: u64,
    settings: &Settings,
    other: Kind,
    plant: Option<Plant>,
    cov: &mut Coverage,
) -> Result<(), Box<Mismatch>> {
    let (etcd, kvik) = start_pair(other);
    let other_name = match other {
        Kind::Kvik => "kvik",
        Kind::Etcd => "second etcd",
    };
    let result = rt.block_on(async {
        let mut ec = Raw::connect(etcd.endpoint()).await;
        let mut kc = Raw::connect(kvik.endpoint()).await;
        let mut g = Gen::new(seed);
        for index in 0..settings.ops {
            let op = g.next_op();
            cov.request(&op, &g);
            let (e, mut k) = tokio::join!(exec(&mut ec, &op), exec(&mut kc, &op));
            let planted = plant.is_some_and(|plant| plant(&op, &mut k));
            if settings.trace {
                eprintln!(
                    "seed {seed} #{index}: {}\n  -> {}",
                    show_op(&op),
                    show_outcome(&normalized(&e))
                );
            }
            cov.outcome(&op, &e, &g);
            if let Some(first) = compare_outcomes(&e, &k) {
                let crash = crash_lines("etcd", &etcd.log())
                    .into_iter()
                    .chain(crash_lines(other_name, &kvik.log()))
                    .collect();
                let (etcd, kvik) = (e, k);
                return Err(Box::new(Mismatch {
                    seed,
                    index,
                    op,
                    etcd,
                    kvik,
                    other_name,
                    first,
                    crash,
                    planted,
                }));
            }
            g.observe(&op, &e);
        }
        Ok(())
    });
    drop((etcd, kvik));
    result
}

/// The log lines of a server that report a crash, shortened.
fn crash_lines(name: &str, log: &str) -> Vec<String> {
    log.lines()
        .filter(|l| {
            l.contains("\"level\":\"fatal\"")
                || l.contains("\"level\":\"panic\"")
                || l.starts_with("panic")
                || l.contains("panicked at")
        })
        .take(3)
        .map(|l| format!("{name} log: {}", l.chars().take(400).collect::<String>()))
        .collect()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

#[test]
fn kvik_answers_like_etcd() {
    let settings = Settings::from_env();
    let single = std::env::var("KVIK_DIFF_SEED")
        .ok()
        .map(|v| v.parse::<u64>().expect("KVIK_DIFF_SEED is a number"));
    let seeds: Vec<u64> = match single {
        Some(s) => vec![s],
        None => {
            let bad = "KVIK_DIFF_SEEDS is a count `n` or a range `a..b`";
            match std::env::var("KVIK_DIFF_SEEDS").ok() {
                None => (1..=DEFAULT_SEEDS).collect(),
                Some(v) => match v.split_once("..") {
                    Some((a, b)) => {
                        (a.parse::<u64>().expect(bad)..b.parse::<u64>().expect(bad)).collect()
                    }
                    None => (1..=v.parse::<u64>().expect(bad)).collect(),
                },
            }
        }
    };
    let rt = runtime();
    let mut cov = Coverage::default();
    let mut mismatches = Vec::new();
    let start = Instant::now();
    for &seed in &seeds {
        if let Err(m) = run_seed(&rt, seed, &settings, Kind::Kvik, None, &mut cov) {
            if mismatches.len() < 5 {
                eprintln!("{m}\n");
            }
            mismatches.push(m);
        }
    }
    eprintln!(
        "differential: {} seed(s) x {} requests in {:.1?}; {} coverage items",
        seeds.len(),
        settings.ops,
        start.elapsed(),
        cov.seen.len()
    );
    assert!(
        mismatches.is_empty(),
        "kvik diverged from etcd on {} of {} seeds:\n{}",
        mismatches.len(),
        seeds.len(),
        mismatches
            .iter()
            .map(|m| m.summary())
            .collect::<Vec<_>>()
            .join("\n")
    );
    if single.is_none() {
        let missing = cov.missing();
        assert!(missing.is_empty(), "never exercised: {missing:?}");
    }
}

/// A no-op delete answered as if it took a revision.
fn plant_noop_delete_bump(op: &Op, out: &mut Outcome) -> bool {
    match (op, out) {
        (Op::Delete(_), Ok(Resp::Delete(d))) if d.deleted == 0 => {
            d.header.as_mut().expect("delete header").revision += 1;
            true
        }
        _ => false,
    }
}

/// A read inside a transaction answered with the next revision.
fn plant_nested_header_shift(op: &Op, out: &mut Outcome) -> bool {
    if let (Op::Txn(_), Ok(Resp::Txn(t))) = (op, out) {
        for r in &mut t.responses {
            if let Some(A::ResponseRange(x)) = &mut r.response {
                x.header.as_mut().expect("nested header").revision += 1;
                return true;
            }
        }
    }
    false
}

/// The comparator on two real etcds, so that no divergence of kvik's can
/// come first: untouched, they agree on every request (normalisation hides
/// exactly what differs between two clusters, and nothing in the sequence
/// depends on timing); with a planted rewrite of the second one's answers,
/// the first rewritten answer is reported.
#[test]
fn comparator_reports_planted_divergence() {
    let rt = runtime();
    let settings = Settings {
        ops: DEFAULT_OPS,
        trace: false,
    };

    for seed in [3, 4] {
        if let Err(m) = run_seed(
            &rt,
            seed,
            &settings,
            Kind::Etcd,
            None,
            &mut Coverage::default(),
        ) {
            panic!("two etcds disagree, so the comparison is unsound:\n{m}");
        }
    }

    let m = run_seed(
        &rt,
        1,
        &settings,
        Kind::Etcd,
        Some(plant_noop_delete_bump),
        &mut Coverage::default(),
    )
    .expect_err("a no-op delete that bumps the revision went unnoticed");
    assert!(
        m.planted,
        "reported an answer the plant did not touch:\n{m}"
    );
    let (Ok(Resp::Delete(e)), Ok(Resp::Delete(k))) = (&m.etcd, &m.kvik) else {
        panic!("not a delete:\n{m}")
    };
    assert_eq!(e.deleted, 0, "{m}");
    assert_eq!(
        k.header.unwrap().revision,
        e.header.unwrap().revision + 1,
        "{m}"
    );
    assert!(m.first.0.starts_with("DeleteRangeResponse"), "{m}");

    let m = run_seed(
        &rt,
        2,
        &settings,
        Kind::Etcd,
        Some(plant_nested_header_shift),
        &mut Coverage::default(),
    )
    .expect_err("a shifted nested header went unnoticed");
    assert!(
        m.planted,
        "reported an answer the plant did not touch:\n{m}"
    );
    assert!(matches!(m.op, Op::Txn(_)), "{m}");
    assert!(m.first.0.starts_with("RangeResponse"), "{m}");
}

#[test]
fn comparator_ignores_only_cluster_identity() {
    let header = |cluster_id, member_id, revision, raft_term| {
        Some(pb::ResponseHeader {
            cluster_id,
            member_id,
            revision,
            raft_term,
        })
    };
    let txn = |h, nested| {
        Ok(Resp::Txn(pb::TxnResponse {
            header: h,
            succeeded: true,
            responses: vec![pb::ResponseOp {
                response: Some(A::ResponseRange(pb::RangeResponse {
                    header: nested,
                    ..Default::default()
                })),
            }],
        }))
    };
    let etcd = txn(header(1, 2, 5, 3), header(0, 0, 4, 0));
    assert_eq!(
        compare_outcomes(&etcd, &txn(header(9, 8, 5, 7), header(6, 6, 4, 6))),
        None
    );
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 6, 3), header(0, 0, 4, 0))).is_some());
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 5, 3), header(0, 0, 5, 0))).is_some());
    assert!(compare_outcomes(&etcd, &txn(header(1, 2, 5, 3), None)).is_some());
    let err = |code, m: &str| {
        Err(Failure {
            code,
            message: m.to_string(),
        })
    };
    let e: Outcome = err(
        tonic::Code::OutOfRange,
        "etcdserver: mvcc: required revision has been compacted",
    );
    assert_eq!(compare_outcomes(&e, &e.clone()), None);
    assert!(compare_outcomes(
        &e,
        &err(
            tonic::Code::InvalidArgument,
            "etcdserver: mvcc: required revision has been compacted"
        )
    )
    .is_some());
    assert!(compare_outcomes(
        &e,
        &err(
            tonic::Code::OutOfRange,
            "etcdserver: mvcc: required revision is a future revision"
        )
    )
    .is_some());
}

#[test]
fn encoded_lengths_match_the_wire() {
    // Known encodings: tag + length + payload per field.
    let p = pb::PutRequest {
        key: b"a".to_vec(),
        value: vec![b'x'; 300],
        lease: 0,
        prev_kv: true,
        ..Default::default()
    };
    assert_eq!(len_put(&p), 3 + (1 + 2 + 300) + 2);
    let c = pb::Compare {
        key: b"k".to_vec(),
        range_end: vec![0],
        target_union: Some(TargetUnion::Version(0)),
        ..Default::default()
    };
    assert_eq!(len_compare(&c), 3 + 4 + 2);
    let r = pb::RangeRequest {
        key: b"k".to_vec(),
        sort_order: -1,
        ..Default::default()
    };
    assert_eq!(len_range(&r), 3 + 11);
    let n = fit(MAX_REQUEST_BYTES - 18, |n| {
        len_put(&pb::PutRequest {
            value: vec![0; n],
            ..p.clone()
        })
    });
    assert_eq!(
        len_put(&pb::PutRequest {
            value: vec![0; n],
            ..p
        }),
        MAX_REQUEST_BYTES - 18
    );
}
