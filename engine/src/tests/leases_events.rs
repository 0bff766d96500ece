//! One test per etcd rule for leases (grant, revoke, key attachment) and
//! watch events (`take_events`, `events`). "Verified live" marks a rule
//! checked against a running etcd 3.7.2 (etcdctl watch -w json, the JSON
//! gateway); the others follow etcd's source.

use super::*;

fn kv(key: &str, create: i64, modr: i64, version: i64, value: &str, lease: i64) -> KeyValue {
    KeyValue {
        key: key.into(),
        create_revision: create,
        mod_revision: modr,
        version,
        value: value.into(),
        lease,
    }
}

fn put_ev(kv: KeyValue, prev: Option<KeyValue>) -> Event {
    Event {
        kind: EventKind::Put,
        kv,
        prev_kv: prev,
    }
}

/// What etcd sends as a DELETE event's kv: key and mod revision only.
fn del_ev(key: &str, rev: i64, prev: Option<KeyValue>) -> Event {
    Event {
        kind: EventKind::Delete,
        kv: KeyValue {
            key: key.into(),
            mod_revision: rev,
            ..KeyValue::default()
        },
        prev_kv: prev,
    }
}

fn put_lease(k: &str, v: &str, lease: i64) -> Command {
    Command::Put(PutRequest {
        lease,
        ..put_req(k, v)
    })
}

fn all_events(m: &Mvcc, from: i64) -> Result<(Vec<Event>, i64), Error> {
    m.events(b"\0", b"\0", from, i64::MAX, usize::MAX)
}

fn keys_of(evs: &[Event]) -> Vec<(EventKind, String, i64)> {
    evs.iter()
        .map(|e| {
            (
                e.kind,
                String::from_utf8(e.kv.key.clone()).unwrap(),
                e.kv.mod_revision,
            )
        })
        .collect()
}

// ---------------------------------------------------------------- events --

/// Verified live: `etcdctl watch --rev 1 --prev-kv a -w json` around
/// put, put, delete.
#[test]
fn put_and_delete_events_as_etcd_sends_them() {
    let mut m = Mvcc::new();
    assert_eq!(m.take_events(), vec![]);
    ok(&mut m, put("a", "1"));
    let a1 = kv("a", 2, 2, 1, "1", 0);
    // A create: no prev_kv.
    assert_eq!(m.take_events(), vec![put_ev(a1.clone(), None)]);
    assert_eq!(m.take_events(), vec![], "taking clears");
    ok(&mut m, put("a", "2"));
    let a2 = kv("a", 2, 3, 2, "2", 0);
    assert_eq!(m.take_events(), vec![put_ev(a2.clone(), Some(a1.clone()))]);
    ok(&mut m, del("a", ""));
    // DELETE: kv is {key, mod_revision = the delete's revision}, all else 0.
    assert_eq!(m.take_events(), vec![del_ev("a", 4, Some(a2.clone()))]);
    assert_eq!(EventKind::Put as i32, 0);
    assert_eq!(EventKind::Delete as i32, 1);
    // The same history read back.
    assert_eq!(
        all_events(&m, 1),
        Ok((
            vec![
                put_ev(a1.clone(), None),
                put_ev(a2.clone(), Some(a1)),
                del_ev("a", 4, Some(a2))
            ],
            5
        ))
    );
}

#[test]
fn commands_that_change_nothing_have_no_events() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    m.take_events();
    ok(&mut m, del("x", "y"));
    grant(&mut m, 5);
    let _ = m.apply(&put_lease("a", "v", 6)).unwrap_err();
    ok(&mut m, compact(2));
    ok(&mut m, Command::LeaseRevoke { id: 5 });
    assert_eq!(m.take_events(), vec![]);
    assert_eq!(m.current_revision(), 2);
}

/// Events of one transaction come in sub-revision order; several commands
/// between two takes come out in revision order.
#[test]
fn take_events_in_revision_and_sub_revision_order() {
    let mut m = Mvcc::new();
    ok(&mut m, put("b", "1")); // 2
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::Put(put_req("c", "1")),
                RequestOp::Put(put_req("a", "1")),
                RequestOp::DeleteRange(del_req("b", "")),
            ],
            vec![],
        )),
    ); // 3
    ok(&mut m, put("a", "2")); // 4
    assert_eq!(
        keys_of(&m.take_events()),
        vec![
            (EventKind::Put, "b".into(), 2),
            (EventKind::Put, "c".into(), 3),
            (EventKind::Put, "a".into(), 3),
            (EventKind::Delete, "b".into(), 3),
            (EventKind::Put, "a".into(), 4),
        ]
    );
}

/// Verified live: a transaction deleting "from key" and then putting a key
/// it deleted: the DELETE has the old version as prev_kv, the PUT is a
/// create (version 1, create revision = this one) and etcd sends no prev_kv.
#[test]
fn put_recreating_a_key_deleted_in_the_same_txn_has_no_prev_kv() {
    let mut m = Mvcc::new();
    grant(&mut m, 3000);
    ok(&mut m, put("m", "1")); // 2
    ok(&mut m, put("n", "1")); // 3
    m.take_events();
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::DeleteRange(del_req("m", "\0")),
                RequestOp::Put(PutRequest {
                    lease: 3000,
                    ..put_req("m", "2")
                }),
            ],
            vec![],
        )),
    ); // 4
    let want = vec![
        del_ev("m", 4, Some(kv("m", 2, 2, 1, "1", 0))),
        del_ev("n", 4, Some(kv("n", 3, 3, 1, "1", 0))),
        put_ev(kv("m", 4, 4, 1, "2", 3000), None),
    ];
    assert_eq!(m.take_events(), want);
    assert_eq!(m.events(b"m", b"o", 4, 4, 0), Ok((want, 5)));
    // Verified live: the put attached m to the lease.
    assert_eq!(m.lease_keys(3000), vec![b"m".to_vec()]);
}

/// Verified live: a transaction putting keys and then deleting them "from
/// key": each DELETE's prev_kv is the key before the transaction (etcd
/// reads it at the revision before), not the put of the same transaction;
/// a key the transaction created has none.
#[test]
fn delete_after_put_in_the_same_txn_has_the_version_before_the_txn() {
    let mut m = Mvcc::new();
    ok(&mut m, put("p", "1")); // 2
    m.take_events();
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::Put(put_req("p", "2")),
                RequestOp::Put(put_req("q", "1")),
                RequestOp::DeleteRange(del_req("p", "\0")),
            ],
            vec![],
        )),
    ); // 3
    let p1 = kv("p", 2, 2, 1, "1", 0);
    assert_eq!(
        m.take_events(),
        vec![
            put_ev(kv("p", 2, 3, 2, "2", 0), Some(p1.clone())),
            put_ev(kv("q", 3, 3, 1, "1", 0), None),
            del_ev("p", 3, Some(p1)),
            del_ev("q", 3, None),
        ]
    );
}

/// Verified live (etcdctl watch --rev R after compacting at R): a watch
/// starting exactly at the compaction revision is served, one below is
/// cancelled as compacted (with the compact revision); events at the
/// compaction revision come without prev_kv (etcd's read at R - 1 fails),
/// a tombstone at the compaction revision included; the event after it has
/// its prev_kv even when that version is at or below the compaction.
#[test]
fn events_at_the_compaction_revision() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("a", "2")); // 3
    ok(&mut m, put("b", "1")); // 4
    ok(&mut m, del("a", "")); // 5
    ok(&mut m, compact(5));
    assert_eq!(m.events(b"a", b"", 4, i64::MAX, 0), Err(Error::Compacted));
    assert_eq!(
        m.events(b"a", b"", 5, i64::MAX, 0),
        Ok((vec![del_ev("a", 5, None)], 6))
    );
    assert_eq!(m.events(b"a", b"", 6, i64::MAX, 0), Ok((vec![], 6)));

    ok(&mut m, put("b", "2")); // 6
    ok(&mut m, put("b", "3")); // 7
    ok(&mut m, compact(7));
    assert_eq!(
        m.events(b"b", b"", 7, i64::MAX, 0),
        Ok((vec![put_ev(kv("b", 4, 7, 3, "3", 0), None)], 8))
    );
    ok(&mut m, put("c", "1")); // 8
    ok(&mut m, put("d", "1")); // 9
    ok(&mut m, compact(9));
    ok(&mut m, put("c", "2")); // 10
    assert_eq!(
        m.events(b"c", b"", 10, i64::MAX, 0),
        Ok((
            vec![put_ev(
                kv("c", 8, 10, 2, "2", 0),
                Some(kv("c", 8, 8, 1, "1", 0))
            )],
            11
        ))
    );
}

/// Verified live: after compacting at the revision of a transaction that
/// put keys and then deleted them "from key", a watch at that revision
/// sees only the DELETE events: the compaction kept each key's last change
/// of the revision.
#[test]
fn compaction_keeps_only_the_last_change_of_a_key_in_its_revision() {
    let mut m = Mvcc::new();
    ok(&mut m, put("r", "1")); // 2
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::Put(put_req("r", "2")),
                RequestOp::Put(put_req("s", "1")),
                RequestOp::DeleteRange(del_req("r", "\0")),
            ],
            vec![],
        )),
    ); // 3
    ok(&mut m, compact(3));
    assert_eq!(
        all_events(&m, 3),
        Ok((vec![del_ev("r", 3, None), del_ev("s", 3, None)], 4))
    );
}

/// Events not taken yet survive a compaction that would remove their
/// records (or their prev_kv) from the store.
#[test]
fn take_events_across_a_compaction() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("a", "2")); // 3
    ok(&mut m, compact(3));
    ok(&mut m, put("a", "3")); // 4
    let a1 = kv("a", 2, 2, 1, "1", 0);
    let a2 = kv("a", 2, 3, 2, "2", 0);
    assert_eq!(
        m.take_events(),
        vec![
            put_ev(a1.clone(), None),
            put_ev(a2.clone(), Some(a1)),
            put_ev(kv("a", 2, 4, 3, "3", 0), Some(a2)),
        ]
    );
    m.check_invariants().unwrap();
}

#[test]
fn skip_events_drops_what_take_events_would_return() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    ok(&mut m, compact(2));
    ok(&mut m, put("a", "2"));
    m.skip_events();
    assert_eq!(m.take_events(), vec![]);
    ok(&mut m, put("a", "3"));
    assert_eq!(
        keys_of(&m.take_events()),
        vec![(EventKind::Put, "a".into(), 4)]
    );
}

#[test]
fn events_windows_ranges_and_whole_revisions() {
    let mut m = Mvcc::new();
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                RequestOp::Put(put_req("a", "1")),
                RequestOp::Put(put_req("b", "1")),
                RequestOp::Put(put_req("c", "1")),
            ],
            vec![],
        )),
    ); // 2
    ok(&mut m, put("b", "2")); // 3
    ok(&mut m, put("d", "1")); // 4
    ok(&mut m, del("a", "c")); // 5
    let revs = |r: Result<(Vec<Event>, i64), Error>| {
        let (evs, next) = r.unwrap();
        let keys: Vec<String> = keys_of(&evs)
            .into_iter()
            .map(|(_, k, rev)| format!("{k}{rev}"))
            .collect();
        (keys, next)
    };
    // events_max 1 still returns all of revision 2, and continues at 3.
    assert_eq!(
        revs(m.events(b"\0", b"\0", 1, i64::MAX, 1)),
        (vec!["a2".into(), "b2".into(), "c2".into()], 3)
    );
    assert_eq!(
        revs(m.events(b"\0", b"\0", 3, i64::MAX, 2)),
        (vec!["b3".into(), "d4".into()], 5)
    );
    // events_max 0: one revision with events (progress is guaranteed).
    assert_eq!(
        revs(m.events(b"\0", b"\0", 3, i64::MAX, 0)),
        (vec!["b3".into()], 4)
    );
    // Ranges: one key, [from, end), from key.
    assert_eq!(
        revs(m.events(b"b", b"", 1, i64::MAX, usize::MAX)),
        (vec!["b2".into(), "b3".into(), "b5".into()], 6)
    );
    assert_eq!(
        revs(m.events(b"b", b"d", 1, i64::MAX, usize::MAX)),
        (vec!["b2".into(), "c2".into(), "b3".into(), "b5".into()], 6)
    );
    assert_eq!(
        revs(m.events(b"c", b"\0", 1, i64::MAX, usize::MAX)),
        (vec!["c2".into(), "d4".into()], 6)
    );
    // Revisions without a matching event are skipped, not returned; all
    // was read, so next is one past the current revision.
    assert_eq!(
        revs(m.events(b"d", b"", 2, i64::MAX, 0)),
        (vec!["d4".into()], 6)
    );
    // The window's end bounds the read; next is one past it.
    assert_eq!(
        revs(m.events(b"\0", b"\0", 3, 4, usize::MAX)),
        (vec!["b3".into(), "d4".into()], 5)
    );
    assert_eq!(revs(m.events(b"\0", b"\0", 4, 3, 0)), (vec![], 4));
    // Caught up, or ahead: nothing, continue at the start.
    assert_eq!(revs(m.events(b"\0", b"\0", 6, i64::MAX, 0)), (vec![], 6));
    assert_eq!(revs(m.events(b"\0", b"\0", 9, i64::MAX, 0)), (vec![], 9));
    // Start 0 reads from 1. Verified live: a negative start revision is
    // cancelled as compacted, even on a store never compacted.
    assert_eq!(revs(m.events(b"d", b"", 0, 4, 0)), (vec!["d4".into()], 5));
    assert_eq!(m.events(b"d", b"", -1, 4, 0), Err(Error::Compacted));
    // Paging with next reads everything exactly once.
    let mut next = 1;
    let mut paged = Vec::new();
    loop {
        let (evs, n) = m.events(b"\0", b"\0", next, i64::MAX, 1).unwrap();
        if evs.is_empty() {
            break;
        }
        paged.extend(evs);
        next = n;
    }
    assert_eq!(Ok((paged, 6)), all_events(&m, 1));
}

#[test]
fn events_are_rebuilt_by_replay() {
    let cmds = [
        Command::LeaseGrant {
            id: 7,
            ttl_secs: 60,
        },
        put_lease("a", "1", 7),
        put("b", "1"),
        compact(3),
        put_lease("b", "2", 7),
        Command::LeaseRevoke { id: 7 },
        put("a", "3"),
    ];
    let mut m = Mvcc::new();
    let mut live = Vec::new();
    for c in &cmds {
        ok(&mut m, c.clone());
        live.extend(m.take_events());
    }
    let mut r = Mvcc::new();
    for c in &cmds {
        ok(&mut r, Command::decode(&c.encode()).unwrap());
    }
    r.skip_events();
    assert_eq!(all_events(&r, 3), all_events(&m, 3));
    assert_eq!(r.leases(), m.leases());
    let (history, _) = all_events(&m, 4).unwrap();
    assert_eq!(history, live[live.len() - history.len()..]);
}

// ---------------------------------------------------------------- leases --

/// Verified live (gateway `lease/grant`): a grant takes no revision;
/// granting an existing id fails; TTL 9e9 is accepted, 9e9+1 refused;
/// negative ids are accepted.
#[test]
fn lease_grant_rules() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    let g = |id, ttl_secs| Command::LeaseGrant { id, ttl_secs };
    assert_eq!(
        m.apply(&g(1000, 100)),
        Ok(Applied::LeaseGrant {
            id: 1000,
            ttl_secs: 100
        })
    );
    assert_eq!(m.current_revision(), 2);
    assert_eq!(m.apply(&g(1000, 5)), Err(Error::LeaseExists));
    assert_eq!(
        m.lease_ttl(1000),
        Some(100),
        "a failed grant changes nothing"
    );
    assert_eq!(
        m.apply(&g(1001, LEASE_TTL_MAX_SECS)),
        Ok(Applied::LeaseGrant {
            id: 1001,
            ttl_secs: 9_000_000_000
        })
    );
    assert_eq!(
        m.apply(&g(1002, LEASE_TTL_MAX_SECS + 1)),
        Err(Error::LeaseTtlTooLarge)
    );
    // etcd's lessor checks the TTL before the id's existence.
    assert_eq!(
        m.apply(&g(1000, LEASE_TTL_MAX_SECS + 1)),
        Err(Error::LeaseTtlTooLarge)
    );
    ok(&mut m, g(-7, 100));
    assert_eq!(
        m.leases(),
        vec![(-7, 100), (1000, 100), (1001, LEASE_TTL_MAX_SECS)]
    );
    assert_eq!(m.lease_ttl(1002), None);
    assert!(m.lease_exists(-7) && !m.lease_exists(1002));
    assert_eq!(m.current_revision(), 2);
    assert_eq!(m.take_events().len(), 1, "only the put");
    assert_eq!(
        Error::LeaseExists.text(),
        "etcdserver: lease already exists"
    );
    assert_eq!(
        Error::LeaseTtlTooLarge.text(),
        "etcdserver: too large lease TTL"
    );
}

#[test]
#[cfg(debug_assertions)]
#[should_panic(expected = "lease id")]
fn lease_grant_of_id_zero_is_a_server_bug() {
    let _ = Mvcc::new().apply(&Command::LeaseGrant {
        id: 0,
        ttl_secs: 10,
    });
}

#[test]
#[cfg(not(debug_assertions))]
fn lease_grant_of_id_zero_is_refused_in_release_builds() {
    let mut m = Mvcc::new();
    assert_eq!(
        m.apply(&Command::LeaseGrant {
            id: 0,
            ttl_secs: 10
        }),
        Err(Error::LeaseNotFound)
    );
    assert_eq!(m.leases(), vec![]);
}

/// Verified live: revoking a lease without keys takes no revision;
/// revoking an unknown lease fails with "requested lease not found".
#[test]
fn revoke_without_keys_and_unknown_revoke() {
    let mut m = Mvcc::new();
    grant(&mut m, 1001);
    ok(&mut m, put("a", "1"));
    assert_eq!(
        m.apply(&Command::LeaseRevoke { id: 1001 }),
        Ok(Applied::LeaseRevoke)
    );
    assert_eq!(m.current_revision(), 2);
    assert_eq!(m.lease_ttl(1001), None);
    assert_eq!(
        m.apply(&Command::LeaseRevoke { id: 1001 }),
        Err(Error::LeaseNotFound)
    );
    assert_eq!(
        m.apply(&Command::LeaseRevoke { id: 5555 }),
        Err(Error::LeaseNotFound)
    );
}

/// Verified live, the whole sequence: z, x, y put with lease L; k1 put
/// with L then with lease 0 (detached); k2 with L then `ignore_lease`
/// (stays); k3 with L, deleted, put again without a lease (detached); k4
/// with lease -7 then with L (moved). Revoking L deletes k2 k4 x y z in one
/// revision, in key order, with prev_kv carrying the lease; -7 is left
/// without keys, and revoking it takes no revision.
#[test]
fn attachment_rules_and_revoke() {
    let l = 1000;
    let mut m = Mvcc::new();
    grant(&mut m, l);
    grant(&mut m, -7);
    for k in ["z", "x", "y"] {
        ok(&mut m, put_lease(k, "v", l));
    }
    ok(&mut m, put_lease("k1", "v", l));
    ok(&mut m, put("k1", "v2"));
    ok(&mut m, put_lease("k2", "v", l));
    ok(
        &mut m,
        Command::Put(PutRequest {
            ignore_lease: true,
            ..put_req("k2", "v2")
        }),
    );
    ok(&mut m, put_lease("k3", "v", l));
    ok(&mut m, del("k3", ""));
    ok(&mut m, put("k3", "v2"));
    ok(&mut m, put_lease("k4", "v", -7));
    ok(&mut m, put_lease("k4", "v2", l));
    let strs = |keys: Vec<Vec<u8>>| -> Vec<String> {
        keys.into_iter()
            .map(|k| String::from_utf8(k).unwrap())
            .collect()
    };
    assert_eq!(strs(m.lease_keys(l)), ["k2", "k4", "x", "y", "z"]);
    assert_eq!(m.lease_keys(-7), Vec::<Vec<u8>>::new());
    let before = m.current_revision();
    assert_eq!(before, 13);
    m.take_events();

    assert_eq!(
        m.apply(&Command::LeaseRevoke { id: l }),
        Ok(Applied::LeaseRevoke)
    );
    assert_eq!(m.current_revision(), before + 1, "one revision");
    let evs = m.take_events();
    assert_eq!(
        keys_of(&evs),
        ["k2", "k4", "x", "y", "z"]
            .iter()
            .map(|k| (EventKind::Delete, k.to_string(), 14))
            .collect::<Vec<_>>()
    );
    assert_eq!(evs[0].prev_kv, Some(kv("k2", 7, 8, 2, "v2", l)));
    assert_eq!(evs[1].prev_kv, Some(kv("k4", 12, 13, 2, "v2", l)));
    assert!(evs.iter().all(|e| e.prev_kv.as_ref().unwrap().lease == l));
    assert_eq!(keys(&m.range(&get_req("\0", "\0")).unwrap()), ["k1", "k3"]);
    assert_eq!(m.lease_ttl(l), None);
    assert_eq!(m.lease_keys(l), Vec::<Vec<u8>>::new());
    assert_eq!(m.apply(&put_lease("a", "v", l)), Err(Error::LeaseNotFound));

    ok(&mut m, Command::LeaseRevoke { id: -7 });
    assert_eq!(m.current_revision(), before + 1);
    assert_eq!(m.leases(), vec![]);
}

/// A put with lease 0 in a transaction that first put the key with a lease
/// ends detached; a transaction's net effect is what counts.
#[test]
fn txn_attachments_follow_the_last_write_of_each_key() {
    let mut m = Mvcc::new();
    grant(&mut m, 1);
    grant(&mut m, 2);
    ok(&mut m, put_lease("a", "0", 1));
    ok(
        &mut m,
        Command::Txn(txn(
            vec![],
            vec![
                // Put with lease 2, then delete "from key" everything
                // from "a", then put again with lease 1: ends on lease 1.
                RequestOp::Put(PutRequest {
                    lease: 2,
                    ..put_req("b", "1")
                }),
                RequestOp::DeleteRange(del_req("a", "\0")),
                RequestOp::Put(PutRequest {
                    lease: 1,
                    ..put_req("b", "2")
                }),
            ],
            vec![],
        )),
    );
    assert_eq!(m.lease_keys(1), vec![b"b".to_vec()]);
    assert_eq!(m.lease_keys(2), Vec::<Vec<u8>>::new());
    assert_eq!(get(&m, "b").unwrap().lease, 1);
    assert_eq!(get(&m, "a"), None);
    m.check_invariants().unwrap();
}

/// A transaction that fails half way (ignore_value on a key an earlier op
/// deleted) leaves the attachments as they were.
#[test]
fn failed_txn_leaves_attachments_alone() {
    let mut m = Mvcc::new();
    grant(&mut m, 1);
    grant(&mut m, 2);
    ok(&mut m, put_lease("a", "1", 1));
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(PutRequest {
                lease: 2,
                ..put_req("c", "1")
            }),
            RequestOp::DeleteRange(del_req("a", "\0")),
            RequestOp::Put(PutRequest {
                ignore_value: true,
                ..put_req("a", "")
            }),
        ],
        vec![],
    );
    assert_eq!(m.apply(&Command::Txn(t)), Err(Error::KeyNotFound));
    assert_eq!(m.lease_keys(1), vec![b"a".to_vec()]);
    assert_eq!(m.lease_keys(2), Vec::<Vec<u8>>::new());
    assert_eq!(m.take_events().len(), 1, "only the first put");
    m.check_invariants().unwrap();
}

/// Verified live: HashKV answers the same before and after a grant and a
/// revoke without keys (etcd hashes the `key` bucket only, and leases live
/// in their own bucket). The lease field inside a stored KeyValue counts.
#[test]
fn leases_do_not_change_the_hashes() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1"));
    let (hkv, h) = (m.hash_kv(0).unwrap(), m.hash());
    grant(&mut m, 2000);
    grant(&mut m, 2001);
    ok(&mut m, Command::LeaseRevoke { id: 2001 });
    assert_eq!((m.hash_kv(0).unwrap(), m.hash()), (hkv, h));

    let mut with = m.clone();
    ok(&mut m, put("b", "1"));
    ok(&mut with, put_lease("b", "1", 2000));
    assert_ne!(m.hash_kv(0).unwrap().hash, with.hash_kv(0).unwrap().hash);
}
