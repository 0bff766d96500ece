//! etcd's API-layer checks (v3rpc/key.go).

use super::*;

fn lim() -> Limits {
    Limits::default()
}

fn p(k: &str) -> RequestOp {
    RequestOp::Put(put_req(k, "v"))
}

fn d(k: &str, end: &str) -> RequestOp {
    RequestOp::DeleteRange(del_req(k, end))
}

fn r(k: &str) -> RequestOp {
    RequestOp::Range(get_req(k, ""))
}

fn nested(success: Vec<RequestOp>, failure: Vec<RequestOp>) -> RequestOp {
    RequestOp::Txn(txn(vec![], success, failure))
}

#[test]
fn single_requests() {
    assert_eq!(validate_range(&get_req("", "")), Err(Error::EmptyKey));
    assert_eq!(validate_range(&get_req("a", "")), Ok(()));
    assert_eq!(validate_delete(&del_req("", "\0")), Err(Error::EmptyKey));
    assert_eq!(validate_put(&put_req("", "v")), Err(Error::EmptyKey));
    assert_eq!(
        validate_put(&PutRequest {
            ignore_value: true,
            ..put_req("a", "v")
        }),
        Err(Error::ValueProvided)
    );
    assert_eq!(
        validate_put(&PutRequest {
            ignore_value: true,
            ..put_req("a", "")
        }),
        Ok(())
    );
    assert_eq!(
        validate_put(&PutRequest {
            ignore_lease: true,
            lease: 1,
            ..put_req("a", "")
        }),
        Err(Error::LeaseProvided)
    );
    assert_eq!(
        validate_put(&PutRequest {
            ignore_lease: true,
            ..put_req("a", "x")
        }),
        Ok(())
    );
}

#[test]
fn txn_op_budget_per_level() {
    let many = |n: usize| (0..n).map(|i| r(&format!("k{i}"))).collect::<Vec<_>>();
    assert_eq!(
        validate_txn(&txn(vec![], many(128), many(128)), &lim()),
        Ok(())
    );
    assert_eq!(
        validate_txn(&txn(vec![], many(129), vec![]), &lim()),
        Err(Error::TooManyOps)
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![], many(129)), &lim()),
        Err(Error::TooManyOps)
    );
    let cmps = |n: usize| {
        (0..n)
            .map(|_| cmp("a", CompareResult::Equal, CompareTarget::Version(0)))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        validate_txn(&txn(cmps(129), vec![], vec![]), &lim()),
        Err(Error::TooManyOps)
    );
    assert_eq!(
        validate_txn(&txn(cmps(128), many(128), many(128)), &lim()),
        Ok(())
    );
    // Nested levels share what the outer level leaves: 128 - 100 = 28.
    let outer = |inner: usize| {
        let mut ops = many(99);
        ops.push(RequestOp::Txn(txn(vec![], many(inner), vec![])));
        txn(vec![], ops, vec![])
    };
    assert_eq!(validate_txn(&outer(28), &lim()), Ok(()));
    assert_eq!(validate_txn(&outer(29), &lim()), Err(Error::TooManyOps));
    assert_eq!(
        validate_txn(&outer(29), &Limits { txn_ops_max: 129 }),
        Ok(())
    );
}

fn chain(depth: usize) -> TxnRequest {
    let mut t = txn(vec![], vec![], vec![]);
    for _ in 1..depth {
        t = txn(vec![], vec![RequestOp::Txn(t)], vec![]);
    }
    t
}

#[test]
fn txn_nesting_depth() {
    // With the default budget etcd allows at most 129 levels.
    assert_eq!(validate_txn(&chain(129), &lim()), Ok(()));
    assert_eq!(validate_txn(&chain(130), &lim()), Err(Error::TooManyOps));
    // A bigger budget hits kvik's own depth cap.
    let big = Limits {
        txn_ops_max: 10_000,
    };
    assert_eq!(validate_txn(&chain(TXN_DEPTH_MAX), &big), Ok(()));
    assert_eq!(
        validate_txn(&chain(TXN_DEPTH_MAX + 1), &big),
        Err(Error::TooManyOps)
    );
    // apply refuses it too, without recursing.
    let mut m = Mvcc::new();
    assert_eq!(
        m.apply(&Command::Txn(chain(TXN_DEPTH_MAX + 1))),
        Err(Error::TooManyOps)
    );
    assert!(m.apply(&Command::Txn(chain(TXN_DEPTH_MAX))).is_ok());
}

#[test]
fn txn_empty_keys_and_nested_checks() {
    let c = Compare {
        key: vec![],
        ..Default::default()
    };
    assert_eq!(
        validate_txn(&txn(vec![c], vec![], vec![]), &lim()),
        Err(Error::EmptyKey)
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![], vec![r("")]), &lim()),
        Err(Error::EmptyKey)
    );
    assert_eq!(
        validate_txn(
            &txn(vec![], vec![nested(vec![], vec![d("", "")])], vec![]),
            &lim()
        ),
        Err(Error::EmptyKey)
    );
    let bad_put = RequestOp::Put(PutRequest {
        ignore_value: true,
        ..put_req("a", "v")
    });
    assert_eq!(
        validate_txn(
            &txn(vec![], vec![nested(vec![bad_put], vec![])], vec![]),
            &lim()
        ),
        Err(Error::ValueProvided)
    );
    // TooManyOps of a level is reported before the empty key of its compares.
    let many: Vec<_> = (0..129).map(|_| r("a")).collect();
    let c = Compare {
        key: vec![],
        ..Default::default()
    };
    assert_eq!(
        validate_txn(&txn(vec![c], many, vec![]), &lim()),
        Err(Error::TooManyOps)
    );
}

#[test]
fn duplicate_keys_one_level() {
    let v = |success: Vec<RequestOp>| validate_txn(&txn(vec![], success, vec![]), &lim());
    assert_eq!(v(vec![p("a"), p("a")]), Err(Error::DuplicateKey));
    assert_eq!(v(vec![p("a"), p("b")]), Ok(()));
    assert_eq!(v(vec![p("a"), d("a", "")]), Err(Error::DuplicateKey));
    assert_eq!(v(vec![d("a", ""), p("a")]), Err(Error::DuplicateKey));
    assert_eq!(v(vec![d("a", "c"), p("b")]), Err(Error::DuplicateKey));
    assert_eq!(v(vec![d("a", "c"), p("c")]), Ok(()));
    assert_eq!(
        v(vec![d("a", "c"), d("b", "d")]),
        Ok(()),
        "overlapping deletes are fine"
    );
    assert_eq!(v(vec![r("a"), p("a")]), Ok(()), "ranges do not count");
    // etcd builds the interval from the raw range_end, so a "from key"
    // delete (range_end \0) overlaps nothing (verified live), nor does an
    // inverted interval.
    assert_eq!(v(vec![d("a", "\0"), p("b")]), Ok(()));
    assert_eq!(v(vec![d("\0", "\0"), p("b")]), Ok(()));
    assert_eq!(v(vec![d("c", "a"), p("b")]), Ok(()));
    // Success and failure are checked separately.
    assert_eq!(
        validate_txn(&txn(vec![], vec![p("a")], vec![p("a"), d("b", "")]), &lim()),
        Ok(())
    );
    assert_eq!(
        validate_txn(&txn(vec![], vec![p("a")], vec![p("a"), d("a", "")]), &lim()),
        Err(Error::DuplicateKey)
    );
}

#[test]
fn duplicate_keys_nested() {
    let v = |success: Vec<RequestOp>| validate_txn(&txn(vec![], success, vec![]), &lim());
    assert_eq!(
        v(vec![p("a"), nested(vec![p("a")], vec![])]),
        Err(Error::DuplicateKey)
    );
    assert_eq!(
        v(vec![d("a", ""), nested(vec![p("a")], vec![])]),
        Err(Error::DuplicateKey)
    );
    assert_eq!(
        v(vec![d("a", "z"), nested(vec![], vec![p("m")])]),
        Err(Error::DuplicateKey)
    );
    assert_eq!(
        v(vec![p("a"), nested(vec![d("a", "")], vec![])]),
        Err(Error::DuplicateKey)
    );
    // Then and else of one nested txn exclude each other.
    assert_eq!(v(vec![nested(vec![p("a")], vec![p("a")])]), Ok(()));
    // Two nested txns putting the same key.
    assert_eq!(
        v(vec![
            nested(vec![p("a")], vec![]),
            nested(vec![], vec![p("a")])
        ]),
        Err(Error::DuplicateKey)
    );
    // etcd's order: a nested txn's puts meet the deletes of the nested txns
    // before it, not those after it.
    assert_eq!(
        v(vec![
            nested(vec![d("a", "")], vec![]),
            nested(vec![p("a")], vec![])
        ]),
        Err(Error::DuplicateKey)
    );
    assert_eq!(
        v(vec![
            nested(vec![p("a")], vec![]),
            nested(vec![d("a", "")], vec![])
        ]),
        Ok(())
    );
    // Deep nesting carries puts up.
    assert_eq!(
        v(vec![
            p("a"),
            nested(vec![nested(vec![p("a")], vec![])], vec![])
        ]),
        Err(Error::DuplicateKey)
    );
    // Inside one nested txn the same rules hold.
    assert_eq!(
        v(vec![nested(vec![p("a"), p("a")], vec![])]),
        Err(Error::DuplicateKey)
    );
}
