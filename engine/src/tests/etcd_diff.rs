//! Differential test against recorded etcd 3.7.2 answers: seeded random
//! puts, deletes, transactions, ranges, compactions and HashKV calls sent to
//! a real etcd by `tests/fixtures/gen_etcd_random.py`, replayed here through
//! the `validate_*` functions and [`Mvcc`]; every answer must be identical,
//! header revisions (nested ones included), sort order of ties, error texts
//! and hashes.

use serde_json::{json, Value};

use super::*;

const FIXTURES: &[(&str, &str)] = &[
    (
        "seed 1",
        include_str!("../../tests/fixtures/etcd_random_seed1.jsonl"),
    ),
    (
        "seed 2",
        include_str!("../../tests/fixtures/etcd_random_seed2.jsonl"),
    ),
];

fn bytes(v: &Value) -> Vec<u8> {
    v.as_str().expect("string").as_bytes().to_vec()
}

fn int(v: &Value) -> i64 {
    v.as_i64().expect("integer")
}

fn flag(v: &Value) -> bool {
    v.as_bool().expect("bool")
}

fn range_req(v: &Value) -> RangeRequest {
    RangeRequest {
        key: bytes(&v["key"]),
        range_end: bytes(&v["range_end"]),
        limit: int(&v["limit"]),
        revision: int(&v["revision"]),
        sort_order: match v["sort_order"].as_str().unwrap() {
            "NONE" => SortOrder::None,
            "ASCEND" => SortOrder::Ascend,
            "DESCEND" => SortOrder::Descend,
            o => panic!("sort order {o}"),
        },
        sort_target: match v["sort_target"].as_str().unwrap() {
            "KEY" => SortTarget::Key,
            "VERSION" => SortTarget::Version,
            "CREATE" => SortTarget::Create,
            "MOD" => SortTarget::Mod,
            "VALUE" => SortTarget::Value,
            t => panic!("sort target {t}"),
        },
        serializable: false,
        keys_only: flag(&v["keys_only"]),
        count_only: flag(&v["count_only"]),
        min_mod_revision: int(&v["min_mod_revision"]),
        max_mod_revision: int(&v["max_mod_revision"]),
        min_create_revision: int(&v["min_create_revision"]),
        max_create_revision: int(&v["max_create_revision"]),
    }
}

fn put_request(v: &Value) -> PutRequest {
    PutRequest {
        key: bytes(&v["key"]),
        value: bytes(&v["value"]),
        lease: int(&v["lease"]),
        prev_kv: flag(&v["prev_kv"]),
        ignore_value: flag(&v["ignore_value"]),
        ignore_lease: flag(&v["ignore_lease"]),
    }
}

fn del_request(v: &Value) -> DeleteRangeRequest {
    DeleteRangeRequest {
        key: bytes(&v["key"]),
        range_end: bytes(&v["range_end"]),
        prev_kv: flag(&v["prev_kv"]),
    }
}

fn txn_request(v: &Value) -> TxnRequest {
    let compare = v["compare"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| Compare {
            result: match c["result"].as_str().unwrap() {
                "EQUAL" => CompareResult::Equal,
                "GREATER" => CompareResult::Greater,
                "LESS" => CompareResult::Less,
                "NOT_EQUAL" => CompareResult::NotEqual,
                r => panic!("result {r}"),
            },
            target: match c["target"].as_str().unwrap() {
                "VERSION" => CompareTarget::Version(int(&c["value"])),
                "CREATE" => CompareTarget::Create(int(&c["value"])),
                "MOD" => CompareTarget::Mod(int(&c["value"])),
                "VALUE" => CompareTarget::Value(bytes(&c["value"])),
                "LEASE" => CompareTarget::Lease(int(&c["value"])),
                t => panic!("target {t}"),
            },
            key: bytes(&c["key"]),
            range_end: bytes(&c["range_end"]),
        })
        .collect();
    let ops = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                if let Some(r) = o.get("range") {
                    RequestOp::Range(range_req(r))
                } else if let Some(p) = o.get("put") {
                    RequestOp::Put(put_request(p))
                } else if let Some(d) = o.get("del") {
                    RequestOp::DeleteRange(del_request(d))
                } else {
                    RequestOp::Txn(txn_request(&o["txn"]))
                }
            })
            .collect()
    };
    TxnRequest {
        compare,
        success: ops(&v["success"]),
        failure: ops(&v["failure"]),
    }
}

fn kv_json(kv: &KeyValue) -> Value {
    let s = |b: &[u8]| String::from_utf8(b.to_vec()).unwrap();
    json!([
        s(&kv.key),
        kv.create_revision,
        kv.mod_revision,
        kv.version,
        s(&kv.value),
        kv.lease
    ])
}

fn range_json(r: &RangeResponse) -> Value {
    json!({"rev": r.header_revision, "kvs": r.kvs.iter().map(kv_json).collect::<Vec<_>>(), "more": r.more, "count": r.count})
}

fn put_json(r: &PutResponse) -> Value {
    json!({"rev": r.header_revision, "prev": r.prev_kv.as_ref().map(kv_json)})
}

fn del_json(r: &DeleteRangeResponse) -> Value {
    json!({"rev": r.header_revision, "deleted": r.deleted, "prev": r.prev_kvs.iter().map(kv_json).collect::<Vec<_>>()})
}

fn txn_json(r: &TxnResponse) -> Value {
    let ops: Vec<Value> = r
        .responses
        .iter()
        .map(|o| match o {
            ResponseOp::Range(x) => json!({"range": range_json(x)}),
            ResponseOp::Put(x) => json!({"put": put_json(x)}),
            ResponseOp::DeleteRange(x) => json!({"del": del_json(x)}),
            ResponseOp::Txn(x) => json!({"txn": txn_json(x)}),
        })
        .collect();
    json!({"rev": r.header_revision, "ok": r.succeeded, "ops": ops})
}

fn err_json(e: Error) -> Value {
    json!({"err": e.to_string()})
}

/// Runs one recorded call; the answer in the fixture's normalized form.
fn replay(m: &mut Mvcc, rec: &Value) -> Option<Value> {
    let limits = Limits::default();
    let top_rev = |m: &Mvcc, v: Value| {
        if let Some(rev) = v.get("rev") {
            assert_eq!(
                int(rev),
                m.current_revision(),
                "a top-level answer carries the current revision"
            );
        }
        v
    };
    if let Some(id) = rec.get("lease_grant") {
        grant(m, int(id));
        return None;
    }
    let answer = if let Some(p) = rec.get("put") {
        let p = put_request(p);
        match validate_put(&p).and_then(|()| m.apply(&Command::Put(p))) {
            Ok(Applied::Put(r)) => top_rev(m, put_json(&r)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => err_json(e),
        }
    } else if let Some(d) = rec.get("del") {
        let d = del_request(d);
        match validate_delete(&d).and_then(|()| m.apply(&Command::DeleteRange(d))) {
            Ok(Applied::DeleteRange(r)) => top_rev(m, del_json(&r)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => err_json(e),
        }
    } else if let Some(t) = rec.get("txn") {
        let t = txn_request(t);
        match validate_txn(&t, &limits).and_then(|()| m.apply(&Command::Txn(t))) {
            Ok(Applied::Txn(r)) => top_rev(m, txn_json(&r)),
            Ok(other) => panic!("{other:?}"),
            Err(e) => err_json(e),
        }
    } else if let Some(q) = rec.get("range") {
        let q = range_req(q);
        match validate_range(&q).and_then(|()| m.range(&q)) {
            Ok(r) => top_rev(m, range_json(&r)),
            Err(e) => err_json(e),
        }
    } else if let Some(rev) = rec.get("compact") {
        match m.apply(&compact(int(rev))) {
            Ok(_) => json!({"rev": m.current_revision()}),
            Err(e) => err_json(e),
        }
    } else if let Some(rev) = rec.get("hashkv") {
        match m.hash_kv(int(rev)) {
            Ok(h) => {
                json!({"rev": m.current_revision(), "hash": h.hash, "compact": h.compact_revision, "hashrev": h.hash_revision})
            }
            Err(e) => err_json(e),
        }
    } else {
        panic!("unknown record {rec}");
    };
    Some(answer)
}

/// Replays one recording; returns (calls replayed, final revision).
fn replay_all(name: &str, text: &str) -> (usize, i64) {
    let mut m = Mvcc::new();
    let mut calls = 0;
    for (line_no, line) in text.lines().enumerate() {
        let rec: Value = serde_json::from_str(line).unwrap();
        let Some(got) = replay(&mut m, &rec) else {
            continue;
        };
        calls += 1;
        let want = &rec["resp"];
        assert_eq!(&got, want, "{name}, line {}: {}", line_no + 1, line);
    }
    m.check_invariants().unwrap();
    (calls, m.current_revision())
}

#[test]
fn engine_answers_like_recorded_etcd() {
    for (name, text) in FIXTURES {
        let (calls, rev) = replay_all(name, text);
        assert!(
            calls > 200 && rev > 50,
            "{name}: the fixture exercises too little"
        );
    }
}

/// For fresh recordings: `ENGINE_ETCD_RECORDING=<file> cargo test -p engine
/// -- --ignored recorded_etcd_from_env`.
#[test]
#[ignore]
fn recorded_etcd_from_env() {
    let path =
        std::env::var("ENGINE_ETCD_RECORDING").expect("ENGINE_ETCD_RECORDING names a recording");
    let text = std::fs::read_to_string(&path).unwrap();
    let (calls, rev) = replay_all(&path, &text);
    println!("{path}: {calls} calls, final revision {rev}");
}
