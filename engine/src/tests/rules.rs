//! One test per etcd rule the engine reproduces.

use super::*;

#[test]
fn fresh_store() {
    let m = Mvcc::new();
    assert_eq!(m.current_revision(), 1);
    assert_eq!(m.compact_revision(), 0);
    assert_eq!(m.key_count(), 0);
    let r = m.range(&get_req("\0", "\0")).unwrap();
    assert_eq!(
        (r.kvs.len(), r.count, r.more, r.header_revision),
        (0, 0, false, 1)
    );
}

#[test]
fn put_revisions_versions_and_recreate() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    assert_eq!(m.current_revision(), 2);
    let kv = get(&m, "a").unwrap();
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.value.as_slice()
        ),
        (2, 2, 1, &b"1"[..])
    );
    ok(&mut m, put("b", "x"));
    ok(&mut m, put("a", "2"));
    let kv = get(&m, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (2, 4, 2));
    // A delete is a tombstone: the next put starts a new generation.
    ok(&mut m, del("a", ""));
    assert_eq!(m.current_revision(), 5);
    assert_eq!(get(&m, "a"), None);
    ok(&mut m, put("a", "3"));
    let kv = get(&m, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (6, 6, 1));
    // Same value again still takes a revision and bumps the version.
    ok(&mut m, put("a", "3"));
    let kv = get(&m, "a").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (6, 7, 2));
    assert_eq!(m.key_count(), 2);
}

#[test]
fn history_reads() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("a", "2")); // 3
    ok(&mut m, del("a", "")); // 4
    ok(&mut m, put("a", "3")); // 5
    let at = |rev: i64| {
        let r = m
            .range(&RangeRequest {
                revision: rev,
                ..get_req("a", "")
            })
            .unwrap();
        assert_eq!(
            r.header_revision, 5,
            "the header carries the current revision, not the read one"
        );
        r.kvs
            .first()
            .map(|kv| (String::from_utf8(kv.value.clone()).unwrap(), kv.version))
    };
    assert_eq!(at(1), None);
    assert_eq!(at(2), Some(("1".into(), 1)));
    assert_eq!(at(3), Some(("2".into(), 2)));
    assert_eq!(at(4), None);
    assert_eq!(at(5), Some(("3".into(), 1)));
    assert_eq!(at(0), Some(("3".into(), 1)));
    // A negative revision at the top level reads the current revision.
    assert_eq!(at(-7), Some(("3".into(), 1)));
    assert_eq!(
        m.range(&RangeRequest {
            revision: 6,
            ..get_req("a", "")
        }),
        Err(Error::FutureRev)
    );
}

#[test]
fn no_op_delete_takes_no_revision() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    let r = ok(&mut m, del("b", ""));
    assert_eq!(
        r,
        Applied::DeleteRange(DeleteRangeResponse {
            deleted: 0,
            prev_kvs: vec![],
            header_revision: 2
        })
    );
    assert_eq!(m.current_revision(), 2);
    ok(&mut m, del("x", "z"));
    ok(&mut m, del("a", "a")); // empty interval
    ok(&mut m, del("b", "a")); // end before key
    assert_eq!(m.current_revision(), 2);
}

#[test]
fn delete_ranges_and_prev_kv() {
    let mut m = Mvcc::new();
    for k in ["a", "b", "c", "d", "e"] {
        ok(&mut m, put(k, k));
    }
    assert_eq!(m.current_revision(), 6);
    let r = ok(
        &mut m,
        Command::DeleteRange(DeleteRangeRequest {
            prev_kv: true,
            ..del_req("b", "d")
        }),
    );
    let Applied::DeleteRange(d) = r else { panic!() };
    assert_eq!(d.deleted, 2);
    assert_eq!(
        d.prev_kvs
            .iter()
            .map(|kv| kv.key.clone())
            .collect::<Vec<_>>(),
        vec![b"b".to_vec(), b"c".to_vec()]
    );
    assert_eq!(d.prev_kvs[0].mod_revision, 3);
    assert_eq!(d.header_revision, 7);
    assert_eq!(m.current_revision(), 7, "one revision for the whole delete");
    // Without prev_kv nothing is returned.
    let Applied::DeleteRange(d) = ok(&mut m, del("d", "\0")) else {
        panic!()
    };
    assert_eq!((d.deleted, d.prev_kvs.len()), (2, 0));
    // key "\0" and range_end "\0": everything.
    ok(&mut m, put("x", "1"));
    let Applied::DeleteRange(d) = ok(&mut m, del("\0", "\0")) else {
        panic!()
    };
    assert_eq!(d.deleted, 2);
    assert_eq!(m.key_count(), 0);
    // Sub revisions: the tombstones of one delete share the main revision.
    let r = m
        .range(&RangeRequest {
            revision: 9,
            ..get_req("\0", "\0")
        })
        .unwrap();
    assert_eq!(keys(&r), ["a", "x"]);
}

#[test]
fn range_forms() {
    let mut m = Mvcc::new();
    for k in ["a", "ab", "abc", "b", "c"] {
        ok(&mut m, put(k, "v"));
    }
    let q = |k: &str, e: &str| keys(&m.range(&get_req(k, e)).unwrap());
    assert_eq!(q("ab", ""), ["ab"]);
    assert_eq!(q("zz", ""), Vec::<String>::new());
    assert_eq!(q("ab", "b"), ["ab", "abc"]);
    assert_eq!(q("ab", "\0"), ["ab", "abc", "b", "c"]);
    assert_eq!(q("\0", "\0"), ["a", "ab", "abc", "b", "c"]);
    // Prefix "a" as a client sends it: range_end "b".
    assert_eq!(q("a", "b"), ["a", "ab", "abc"]);
    assert_eq!(q("c", "a"), Vec::<String>::new());
}

#[test]
fn range_count_limit_more_filters() {
    let mut m = Mvcc::new();
    for (i, k) in ["a", "b", "c", "d", "e"].iter().enumerate() {
        ok(&mut m, put(k, &format!("{}", 5 - i))); // revisions 2..=6
    }
    let base = get_req("a", "\0");
    let r = m
        .range(&RangeRequest {
            limit: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["a".to_string(), "b".into()], true, 5)
    );
    let r = m
        .range(&RangeRequest {
            limit: 5,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (5, false, 5));
    let r = m
        .range(&RangeRequest {
            limit: -1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.more), (5, false));
    let r = m
        .range(&RangeRequest {
            limit: i64::MAX,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.more), (5, false));
    // Filters do not change count; `more` is about what is left after them.
    let r = m
        .range(&RangeRequest {
            min_mod_revision: 4,
            limit: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["c".to_string(), "d".into()], true, 5)
    );
    let r = m
        .range(&RangeRequest {
            min_mod_revision: 4,
            limit: 3,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.more, r.count), (3, false, 5));
    let r = m
        .range(&RangeRequest {
            max_mod_revision: 3,
            min_create_revision: 3,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["b"]);
    let r = m
        .range(&RangeRequest {
            max_create_revision: 2,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["a"]);
    // Sorted with a limit: everything is sorted, then truncated.
    let r = m
        .range(&RangeRequest {
            limit: 2,
            sort_target: SortTarget::Value,
            sort_order: SortOrder::Ascend,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (vec!["e".to_string(), "d".into()], true, 5)
    );
    let r = m
        .range(&RangeRequest {
            limit: 2,
            sort_order: SortOrder::Descend,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["e", "d"]);
    // A non-key target without an order sorts ascending.
    let r = m
        .range(&RangeRequest {
            sort_target: SortTarget::Value,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["e", "d", "c", "b", "a"]);
    // Key target with order NONE or ASCEND: key order.
    let r = m
        .range(&RangeRequest {
            sort_target: SortTarget::Key,
            sort_order: SortOrder::Ascend,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["a", "b", "c", "d", "e"]);
    let r = m
        .range(&RangeRequest {
            sort_target: SortTarget::Mod,
            sort_order: SortOrder::Descend,
            ..base.clone()
        })
        .unwrap();
    assert_eq!(keys(&r), ["e", "d", "c", "b", "a"]);
    // count_only: no kvs, count ignores limit.
    let r = m
        .range(&RangeRequest {
            count_only: true,
            limit: 1,
            ..base.clone()
        })
        .unwrap();
    assert_eq!((r.kvs.len(), r.count, r.more), (0, 5, false));
    let r = m
        .range(&RangeRequest {
            count_only: true,
            ..get_req("c", "")
        })
        .unwrap();
    assert_eq!(r.count, 1);
}

#[test]
fn sort_order_none_with_a_limit_sorts_only_the_first_limit_plus_one_keys() {
    // etcd decides how much to read from the raw sort order: NONE reads
    // limit+1 keys in key order, then a non-key target sorts just those
    // (verified live: CREATE/NONE/limit 1 over c, b, a created in that order
    // answers b, CREATE/ASCEND answers c).
    let mut m = Mvcc::new();
    ok(&mut m, put("/q/c", "1"));
    ok(&mut m, put("/q/b", "2"));
    ok(&mut m, put("/q/a", "3"));
    let q = |order| {
        let r = m
            .range(&RangeRequest {
                sort_target: SortTarget::Create,
                sort_order: order,
                limit: 1,
                ..get_req("/q/", "/q0")
            })
            .unwrap();
        (keys(&r), r.more, r.count)
    };
    assert_eq!(q(SortOrder::None), (vec!["/q/b".to_string()], true, 3));
    assert_eq!(q(SortOrder::Ascend), (vec!["/q/c".to_string()], true, 3));
}

#[test]
fn keys_only_drops_value_and_in_the_fast_path_the_lease() {
    let mut m = Mvcc::new();
    grant(&mut m, 777);
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 777,
            ..put_req("a", "v1")
        }),
    );
    // Live etcd 3.7.2: keys_only with a non-value sort target answers
    // lease 0; with the value target it keeps the lease.
    let r = m
        .range(&RangeRequest {
            keys_only: true,
            ..get_req("a", "")
        })
        .unwrap();
    assert_eq!(
        r.kvs[0],
        KeyValue {
            key: b"a".to_vec(),
            create_revision: 2,
            mod_revision: 2,
            version: 1,
            value: vec![],
            lease: 0
        }
    );
    let r = m
        .range(&RangeRequest {
            keys_only: true,
            sort_target: SortTarget::Value,
            ..get_req("a", "")
        })
        .unwrap();
    assert_eq!((r.kvs[0].value.len(), r.kvs[0].lease), (0, 777));
    let r = m.range(&get_req("a", "")).unwrap();
    assert_eq!(
        (r.kvs[0].value.as_slice(), r.kvs[0].lease),
        (&b"v1"[..], 777)
    );
}

#[test]
fn put_prev_kv_ignore_value_ignore_lease() {
    let mut m = Mvcc::new();
    grant(&mut m, 5);
    let r = ok(
        &mut m,
        Command::Put(PutRequest {
            prev_kv: true,
            ..put_req("a", "1")
        }),
    );
    assert_eq!(
        r,
        Applied::Put(PutResponse {
            prev_kv: None,
            header_revision: 2
        })
    );
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 5,
            ..put_req("a", "2")
        }),
    );
    let Applied::Put(p) = ok(
        &mut m,
        Command::Put(PutRequest {
            prev_kv: true,
            ..put_req("a", "3")
        }),
    ) else {
        panic!()
    };
    let prev = p.prev_kv.unwrap();
    assert_eq!(
        (prev.value.as_slice(), prev.version, prev.lease),
        (&b"2"[..], 2, 5)
    );
    // A plain put replaces the lease (with 0 here).
    assert_eq!(get(&m, "a").unwrap().lease, 0);
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 5,
            ..put_req("a", "4")
        }),
    );
    // ignore_value keeps the value, sets the lease given.
    ok(
        &mut m,
        Command::Put(PutRequest {
            ignore_value: true,
            ..put_req("a", "")
        }),
    );
    let kv = get(&m, "a").unwrap();
    assert_eq!(
        (kv.value.as_slice(), kv.lease, kv.version),
        (&b"4"[..], 0, 5)
    );
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 5,
            ..put_req("a", "4")
        }),
    );
    // ignore_lease keeps the lease, sets the value.
    ok(
        &mut m,
        Command::Put(PutRequest {
            ignore_lease: true,
            ..put_req("a", "5")
        }),
    );
    let kv = get(&m, "a").unwrap();
    assert_eq!((kv.value.as_slice(), kv.lease), (&b"5"[..], 5));
    // Both on a missing key: key not found, no revision.
    let rev = m.current_revision();
    for p in [
        PutRequest {
            ignore_value: true,
            ..put_req("zz", "")
        },
        PutRequest {
            ignore_lease: true,
            ..put_req("zz", "v")
        },
    ] {
        assert_eq!(m.apply(&Command::Put(p)), Err(Error::KeyNotFound));
    }
    assert_eq!(m.current_revision(), rev);
}

#[test]
fn lease_not_found_before_key_not_found() {
    let mut m = Mvcc::new();
    let p = PutRequest {
        lease: 9,
        ignore_value: true,
        ..put_req("a", "")
    };
    assert_eq!(m.apply(&Command::Put(p)), Err(Error::LeaseNotFound));
    assert_eq!(
        m.apply(&Command::Put(PutRequest {
            lease: 9,
            ..put_req("a", "v")
        })),
        Err(Error::LeaseNotFound)
    );
    assert_eq!(m.current_revision(), 1);
    assert!(!m.lease_exists(9));
    grant(&mut m, 9);
    assert_eq!(
        m.apply(&Command::LeaseGrant {
            id: 9,
            ttl_secs: 100
        }),
        Err(Error::LeaseExists)
    );
    assert!(m.lease_exists(9));
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 9,
            ..put_req("a", "v")
        }),
    );
    assert_eq!(get(&m, "a").unwrap().lease, 9);
}

#[test]
fn txn_compare_targets_and_results() {
    let mut m = Mvcc::new();
    grant(&mut m, 3);
    ok(&mut m, put("a", "m")); // 2
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 3,
            ..put_req("a", "m")
        }),
    ); // 3: version 2
    use CompareResult::*;
    use CompareTarget as T;
    let cases: Vec<(Compare, bool)> = vec![
        (cmp("a", Equal, T::Version(2)), true),
        (cmp("a", Greater, T::Version(1)), true),
        (cmp("a", Less, T::Version(2)), false),
        (cmp("a", NotEqual, T::Version(2)), false),
        (cmp("a", Equal, T::Create(2)), true),
        (cmp("a", Less, T::Create(3)), true),
        (cmp("a", Equal, T::Mod(3)), true),
        (cmp("a", Greater, T::Mod(3)), false),
        (cmp("a", Equal, T::Value(b"m".to_vec())), true),
        (cmp("a", Greater, T::Value(b"l".to_vec())), true),
        (cmp("a", Less, T::Value(b"ma".to_vec())), true),
        (cmp("a", NotEqual, T::Value(b"m".to_vec())), false),
        (cmp("a", Equal, T::Lease(3)), true),
        (cmp("a", Greater, T::Lease(0)), true),
        // A missing key compares as a zero KeyValue...
        (cmp("zz", Equal, T::Version(0)), true),
        (cmp("zz", Equal, T::Create(0)), true),
        (cmp("zz", Equal, T::Mod(0)), true),
        (cmp("zz", Equal, T::Lease(0)), true),
        (cmp("zz", Less, T::Mod(1)), true),
        // ...except for values, which always fail.
        (cmp("zz", Equal, T::Value(vec![])), false),
        (cmp("zz", NotEqual, T::Value(b"x".to_vec())), false),
    ];
    for (c, expect) in cases {
        let t = txn(vec![c.clone()], vec![], vec![]);
        let r = txn_resp(ok(&mut m, Command::Txn(t)));
        assert_eq!(r.succeeded, expect, "{c:?}");
        assert_eq!(r.header_revision, 3);
    }
    assert_eq!(
        m.current_revision(),
        3,
        "read-only transactions take no revision"
    );
    // All compares must hold.
    let t = txn(
        vec![
            cmp("a", Equal, T::Version(2)),
            cmp("a", Equal, T::Version(3)),
        ],
        vec![],
        vec![],
    );
    assert!(!txn_resp(ok(&mut m, Command::Txn(t))).succeeded);
}

#[test]
fn txn_compare_over_a_range() {
    let mut m = Mvcc::new();
    ok(&mut m, put("k1", "x"));
    ok(&mut m, put("k2", "x"));
    ok(&mut m, put("k3", "y"));
    let c = |end: &str, target: CompareTarget, result: CompareResult| Compare {
        result,
        target,
        key: b"k1".to_vec(),
        range_end: end.into(),
    };
    let holds = |m: &mut Mvcc, c: Compare| {
        txn_resp(ok(m, Command::Txn(txn(vec![c], vec![], vec![])))).succeeded
    };
    assert!(holds(
        &mut m,
        c(
            "k3",
            CompareTarget::Value(b"x".to_vec()),
            CompareResult::Equal
        )
    ));
    assert!(!holds(
        &mut m,
        c(
            "k4",
            CompareTarget::Value(b"x".to_vec()),
            CompareResult::Equal
        )
    ));
    assert!(holds(
        &mut m,
        c("\0", CompareTarget::Create(5), CompareResult::Less)
    ));
    assert!(!holds(
        &mut m,
        c("\0", CompareTarget::Create(4), CompareResult::Less)
    ));
    // An empty range compares a zero KeyValue (non-value targets).
    assert!(holds(
        &mut m,
        Compare {
            key: b"x".to_vec(),
            range_end: b"z".to_vec(),
            ..c("", CompareTarget::Mod(0), CompareResult::Equal)
        }
    ));
}

#[test]
fn txn_writes_share_one_revision_and_reads_see_them() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    let t = txn(
        vec![],
        vec![
            RequestOp::Range(get_req("a", "")),
            RequestOp::Put(put_req("b", "x")),
            RequestOp::Range(get_req("b", "")),
            RequestOp::DeleteRange(del_req("zz", "")),
            RequestOp::Txn(txn(
                vec![],
                vec![RequestOp::Range(get_req("b", ""))],
                vec![],
            )),
            RequestOp::Put(PutRequest {
                prev_kv: true,
                ..put_req("c", "y")
            }),
            RequestOp::DeleteRange(DeleteRangeRequest {
                prev_kv: true,
                ..del_req("a", "")
            }),
        ],
        vec![],
    );
    let r = txn_resp(ok(&mut m, Command::Txn(t)));
    assert_eq!(m.current_revision(), 3);
    assert_eq!(r.header_revision, 3);
    // Header revisions as live etcd 3.7.2 answers them: a read before the
    // first write sees the old revision, a nested txn's header is 0.
    let heads: Vec<i64> = r
        .responses
        .iter()
        .map(|op| match op {
            ResponseOp::Range(x) => x.header_revision,
            ResponseOp::Put(x) => x.header_revision,
            ResponseOp::DeleteRange(x) => x.header_revision,
            ResponseOp::Txn(x) => x.header_revision,
        })
        .collect();
    assert_eq!(heads, [2, 3, 3, 3, 0, 3, 3]);
    let ResponseOp::Range(b) = &r.responses[2] else {
        panic!()
    };
    assert_eq!((b.kvs[0].mod_revision, b.kvs[0].create_revision), (3, 3));
    let ResponseOp::Txn(inner) = &r.responses[4] else {
        panic!()
    };
    let ResponseOp::Range(b2) = &inner.responses[0] else {
        panic!()
    };
    assert_eq!(b2.kvs.len(), 1);
    let ResponseOp::DeleteRange(d) = &r.responses[6] else {
        panic!()
    };
    assert_eq!((d.deleted, d.prev_kvs[0].value.as_slice()), (1, &b"1"[..]));
    // All three writes at main revision 3; b and c visible at 3, a gone.
    let r = m
        .range(&RangeRequest {
            revision: 3,
            ..get_req("\0", "\0")
        })
        .unwrap();
    assert_eq!(keys(&r), ["b", "c"]);
}

#[test]
fn txn_branches_and_nesting() {
    let mut m = Mvcc::new();
    ok(&mut m, put("flag", "on")); // 2
    let on = || {
        cmp(
            "flag",
            CompareResult::Equal,
            CompareTarget::Value(b"on".to_vec()),
        )
    };
    let off = || {
        cmp(
            "flag",
            CompareResult::Equal,
            CompareTarget::Value(b"off".to_vec()),
        )
    };
    let t = txn(
        vec![off()],
        vec![RequestOp::Put(put_req("never", "1"))],
        vec![
            // The nested compare sees the state before the outer txn, even
            // though the write before it changes "flag".
            RequestOp::Put(put_req("flag", "off")),
            RequestOp::Txn(txn(
                vec![on()],
                vec![RequestOp::Put(put_req("x", "1"))],
                vec![RequestOp::Put(put_req("y", "1"))],
            )),
            RequestOp::Txn(txn(
                vec![off()],
                vec![RequestOp::Put(put_req("p", "1"))],
                vec![RequestOp::Put(put_req("q", "1"))],
            )),
        ],
    );
    let r = txn_resp(ok(&mut m, Command::Txn(t)));
    assert!(!r.succeeded);
    let ResponseOp::Txn(n1) = &r.responses[1] else {
        panic!()
    };
    let ResponseOp::Txn(n2) = &r.responses[2] else {
        panic!()
    };
    assert!(n1.succeeded);
    assert!(!n2.succeeded);
    assert_eq!(
        keys(&m.range(&get_req("\0", "\0")).unwrap()),
        ["flag", "q", "x"]
    );
    assert_eq!(m.current_revision(), 3);
}

#[test]
fn txn_checks_the_chosen_branch_before_writing() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    let bad_lease = RequestOp::Put(PutRequest {
        lease: 42,
        ..put_req("b", "1")
    });
    // The failing op is after a write: nothing is written, no revision.
    let t = txn(
        vec![],
        vec![RequestOp::Put(put_req("c", "1")), bad_lease.clone()],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::LeaseNotFound));
    assert_eq!((m.current_revision(), get(&m, "c")), (2, None));
    // The same op on the branch not taken is never checked.
    let t = txn(
        vec![],
        vec![RequestOp::Put(put_req("c", "1"))],
        vec![bad_lease.clone()],
    );
    ok(&mut m, Command::Txn(t));
    assert_eq!(m.current_revision(), 3);
    // Nested: checked when its branch is chosen.
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("d", "1")),
            RequestOp::Txn(txn(vec![], vec![bad_lease], vec![])),
        ],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::LeaseNotFound));
    // ignore_value on a missing key.
    let t = txn(
        vec![],
        vec![RequestOp::Put(PutRequest {
            ignore_value: true,
            ..put_req("nope", "")
        })],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::KeyNotFound));
    // A range at a future revision fails the whole txn, even after a write
    // that would make the revision exist.
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("e", "1")),
            RequestOp::Range(RangeRequest {
                revision: 4,
                ..get_req("e", "")
            }),
        ],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::FutureRev));
    assert_eq!(m.current_revision(), 3);
    // Checks use the state before the transaction: ignore_value on a key
    // an earlier op creates is still "not found" (validation would also
    // refuse this pair as a duplicate key; apply does not rely on it).
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("new", "1")),
            RequestOp::Put(PutRequest {
                ignore_value: true,
                ..put_req("new", "")
            }),
        ],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::KeyNotFound));
    assert_eq!(m.current_revision(), 3);
}

#[test]
fn txn_put_ignore_value_after_from_key_delete_is_rolled_back() {
    // etcd's duplicate-key check cannot see a "from key" delete, and etcd
    // crashes applying this; kvik answers "key not found" and writes nothing.
    let mut m = Mvcc::new();
    ok(&mut m, put("b", "1")); // 2
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("a", "new")),
            RequestOp::DeleteRange(del_req("b", "\0")),
            RequestOp::Put(PutRequest {
                ignore_value: true,
                ..put_req("b", "")
            }),
        ],
        vec![],
    );
    assert_eq!(validate_txn(&t, &Limits::default()), Ok(()));
    let before = m.hash();
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::KeyNotFound));
    m.check_invariants().unwrap();
    assert_eq!(
        (m.current_revision(), m.key_count(), m.hash()),
        (2, 1, before)
    );
    assert_eq!(get(&m, "a"), None);
}

#[test]
fn txn_delete_then_put_same_key_via_from_key_delete() {
    // Allowed by etcd (verified live): the put after the delete recreates
    // the key at the same main revision with a higher sub revision.
    let mut m = Mvcc::new();
    ok(&mut m, put("c", "1")); // 2
    let t = txn(
        vec![],
        vec![
            RequestOp::DeleteRange(del_req("a", "\0")),
            RequestOp::Put(put_req("c", "2")),
        ],
        vec![],
    );
    ok(&mut m, Command::Txn(t));
    let kv = get(&m, "c").unwrap();
    assert_eq!(
        (
            kv.create_revision,
            kv.mod_revision,
            kv.version,
            kv.value.as_slice()
        ),
        (3, 3, 1, &b"2"[..])
    );
    // Put then delete in one txn: gone at that revision.
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("z", "1")),
            RequestOp::DeleteRange(del_req("a", "\0")),
        ],
        vec![],
    );
    ok(&mut m, Command::Txn(t));
    assert_eq!(m.key_count(), 0);
    assert_eq!(m.current_revision(), 4);
    m.check_invariants().unwrap();
}

#[test]
fn txn_range_revision_checks_against_compaction() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("a", "2")); // 3
    ok(&mut m, compact(2));
    let rr = |rev: i64| {
        Command::Txn(txn(
            vec![],
            vec![RequestOp::Range(RangeRequest {
                revision: rev,
                ..get_req("a", "")
            })],
            vec![],
        ))
    };
    assert_eq!(m.apply(&rr(1)), Err(Error::Compacted));
    assert!(m.apply(&rr(2)).is_ok());
    assert_eq!(m.apply(&rr(4)), Err(Error::FutureRev));
    // etcd: a negative revision in a transaction is below the compact
    // revision (verified live), while a plain range reads the current one.
    assert_eq!(m.apply(&rr(-1)), Err(Error::Compacted));
    assert!(m
        .range(&RangeRequest {
            revision: -1,
            ..get_req("a", "")
        })
        .is_ok());
    // Before any compaction etcd's compact revision is -1.
    let mut fresh = Mvcc::new();
    assert!(fresh.apply(&rr(-1)).is_ok());
    assert_eq!(fresh.apply(&rr(-2)), Err(Error::Compacted));
}

#[test]
fn compaction_rules() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("a", "2")); // 3
    ok(&mut m, put("b", "1")); // 4
    ok(&mut m, del("b", "")); // 5
    ok(&mut m, put("c", "1")); // 6
    ok(&mut m, del("c", "")); // 7
    ok(&mut m, put("a", "3")); // 8
    assert_eq!(m.apply(&compact(9)), Err(Error::FutureRev));
    assert_eq!(m.apply(&compact(-3)), Err(Error::Compacted));
    ok(&mut m, compact(7));
    assert_eq!(m.compact_revision(), 7);
    assert_eq!(m.current_revision(), 8, "compaction takes no revision");
    assert_eq!(m.apply(&compact(7)), Err(Error::Compacted));
    assert_eq!(m.apply(&compact(5)), Err(Error::Compacted));
    let at = |m: &Mvcc, rev: i64| {
        m.range(&RangeRequest {
            revision: rev,
            ..get_req("\0", "\0")
        })
        .map(|r| keys(&r))
    };
    assert_eq!(at(&m, 6), Err(Error::Compacted));
    assert_eq!(at(&m, 7), Ok(vec!["a".to_string()]));
    let kv = m
        .range(&RangeRequest {
            revision: 7,
            ..get_req("a", "")
        })
        .unwrap()
        .kvs[0]
        .clone();
    assert_eq!(
        (kv.value.as_slice(), kv.version, kv.create_revision),
        (&b"2"[..], 2, 2)
    );
    // Kept: a@3 (newest <= 7), a@8, and c's tombstone at exactly 7; b's
    // tombstone (5 < 7) and everything older go.
    let kept: Vec<(Vec<u8>, i64, bool)> = m
        .store
        .records_by_revision()
        .map(|(k, r)| (k.to_vec(), r.rev.main, r.is_tombstone()))
        .collect();
    assert_eq!(
        kept,
        vec![
            (b"a".to_vec(), 3, false),
            (b"c".to_vec(), 7, true),
            (b"a".to_vec(), 8, false)
        ]
    );
    ok(&mut m, compact(8));
    let kept: Vec<i64> = m
        .store
        .records_by_revision()
        .map(|(_, r)| r.rev.main)
        .collect();
    assert_eq!(kept, vec![8]);
    assert_eq!(
        get(&m, "a").unwrap().version,
        3,
        "compaction keeps versions"
    );
}

#[test]
fn compact_zero_on_a_fresh_store_is_accepted() {
    // etcd's compact revision starts at -1, so compacting at 0 succeeds.
    let mut m = Mvcc::new();
    ok(&mut m, compact(0));
    assert_eq!(m.compact_revision(), 0);
    assert_eq!(m.apply(&compact(0)), Err(Error::Compacted));
    ok(&mut m, compact(1));
    assert_eq!(m.compact_revision(), 1);
}

#[test]
fn hash_kv_errors_and_current() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    ok(&mut m, put("a", "2"));
    ok(&mut m, put("a", "3"));
    ok(&mut m, compact(3));
    assert_eq!(m.hash_kv(5), Err(Error::FutureRev));
    assert_eq!(m.hash_kv(2), Err(Error::Compacted));
    let h = m.hash_kv(0).unwrap();
    assert_eq!((h.compact_revision, h.hash_revision), (3, 4));
    assert_eq!(m.hash_kv(4).unwrap(), h);
    // A negative revision is not checked and hashes nothing (etcd).
    let neg = m.hash_kv(-4).unwrap();
    assert_eq!((neg.hash, neg.hash_revision), (1084519789, -4));
}

#[test]
fn determinism_same_commands_same_state() {
    let cmds = [
        put("a", "1"),
        put("b", "2"),
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::Put(put_req("c", "3")),
                RequestOp::DeleteRange(del_req("a", "")),
            ],
            vec![],
        )),
        compact(3),
        del("\0", "\0"),
        put("a", "4"),
    ];
    let run = || {
        let mut m = Mvcc::new();
        let outs: Vec<_> = cmds.iter().map(|c| m.apply(c)).collect();
        (
            outs,
            m.hash(),
            m.hash_kv(0).unwrap(),
            m.current_revision(),
            m.store_stats(),
        )
    };
    assert_eq!(run(), run());
}

#[test]
fn error_texts_are_etcds() {
    let all = [
        (Error::EmptyKey, "etcdserver: key is not provided"),
        (Error::ValueProvided, "etcdserver: value is provided"),
        (Error::LeaseProvided, "etcdserver: lease is provided"),
        (Error::KeyNotFound, "etcdserver: key not found"),
        (
            Error::TooManyOps,
            "etcdserver: too many operations in txn request",
        ),
        (
            Error::DuplicateKey,
            "etcdserver: duplicate key given in txn request",
        ),
        (Error::InvalidSortOption, "etcdserver: invalid sort option"),
        (
            Error::Compacted,
            "etcdserver: mvcc: required revision has been compacted",
        ),
        (
            Error::FutureRev,
            "etcdserver: mvcc: required revision is a future revision",
        ),
        (
            Error::LeaseNotFound,
            "etcdserver: requested lease not found",
        ),
        // Verified live (gateway lease/grant answers).
        (Error::LeaseExists, "etcdserver: lease already exists"),
        (Error::LeaseTtlTooLarge, "etcdserver: too large lease TTL"),
        (Error::Corrupt, "etcdserver: corrupt cluster"),
    ];
    for (e, text) in all {
        assert_eq!(e.to_string(), text);
    }
    assert_eq!(SortOrder::try_from(3), Err(Error::InvalidSortOption));
    assert_eq!(SortTarget::try_from(4), Ok(SortTarget::Value));
    assert_eq!(SortTarget::try_from(-1), Err(Error::InvalidSortOption));
    assert_eq!(SortOrder::Descend as i32, 2);
    assert_eq!(CompareResult::NotEqual as i32, 3);
}

#[test]
fn the_memory_tail_tracks_what_is_stored() {
    let mut m = Mvcc::new();
    assert_eq!(m.mem_usage(), (0, 0));
    ok(&mut m, put("a", &"x".repeat(10_000)));
    let (one, _) = m.mem_usage();
    assert!(one >= 10_000);
    ok(&mut m, put("a", "small"));
    assert_eq!(m.mem_usage().1, 2, "history is still stored");
    ok(&mut m, compact(3));
    assert!(m.mem_usage().0 < one, "compaction frees the old version");
}
