//! Expected values recorded from a live etcd 3.7.2 (single member, fresh data
//! directory) given the same commands through its gRPC gateway.

use super::*;

fn hkv(m: &Mvcc, rev: i64) -> Result<(u32, i64, i64), Error> {
    m.hash_kv(rev)
        .map(|h| (h.hash, h.compact_revision, h.hash_revision))
}

#[test]
fn hash_kv_matches_etcd_across_compactions() {
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("b", "2")); // 3
    ok(&mut m, put("a", "11")); // 4
    grant(&mut m, 1000);
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 1000,
            ..put_req("c", "3")
        }),
    ); // 5
    ok(&mut m, del("b", "")); // 6
    let t = txn(
        vec![],
        vec![
            RequestOp::Put(put_req("d", "4")),
            RequestOp::Put(put_req("e", "5")),
            RequestOp::DeleteRange(del_req("a", "")),
        ],
        vec![],
    );
    ok(&mut m, Command::Txn(t)); // 7
    ok(&mut m, del("x", "y")); // no-op
    assert_eq!(m.current_revision(), 7);
    ok(&mut m, put("b", "22")); // 8
    ok(&mut m, del("c", "")); // 9

    assert_eq!(hkv(&m, 0), Ok((1278346344, -1, 9)));
    assert_eq!(hkv(&m, 5), Ok((3393490374, -1, 5)));
    assert_eq!(hkv(&m, 9), Ok((1278346344, -1, 9)));

    ok(&mut m, compact(6)); // b's tombstone sits exactly at 6
    assert_eq!(hkv(&m, 0), Ok((129424715, 6, 9)));
    assert_eq!(
        hkv(&m, 6),
        Ok((1687485355, -1, 6)),
        "cached by the compaction"
    );
    assert_eq!(hkv(&m, 7), Ok((2523634983, 6, 7)));
    assert_eq!(hkv(&m, 5), Err(Error::Compacted));

    ok(&mut m, put("f", "6")); // 10
    ok(&mut m, del("d", "")); // 11
    ok(&mut m, compact(9)); // c's tombstone sits exactly at 9
    assert_eq!(hkv(&m, 0), Ok((152640364, 9, 11)));
    assert_eq!(hkv(&m, 9), Ok((129424715, 6, 9)));
    assert_eq!(
        hkv(&m, 6),
        Ok((1687485355, -1, 6)),
        "older cached hashes still answer"
    );
    assert_eq!(hkv(&m, 10), Ok((2145718797, 9, 10)));

    ok(&mut m, compact(11));
    assert_eq!(hkv(&m, 0), Ok((2347347621, 11, 11)));
    assert_eq!(hkv(&m, 11), Ok((152640364, 9, 11)));
    assert_eq!(hkv(&m, 7), Err(Error::Compacted));

    let Applied::DeleteRange(d) = ok(&mut m, del("\0", "\0")) else {
        panic!()
    }; // 12
    assert_eq!(d.deleted, 3);
    assert_eq!(hkv(&m, 0), Ok((2615017751, 11, 12)));
    ok(&mut m, compact(12)); // nothing live: etcd's keep set is empty
    assert_eq!(hkv(&m, 0), Ok((1084519789, 12, 12)));
    assert_eq!(hkv(&m, 12), Ok((2365176796, 11, 12)));
    ok(&mut m, put("g", "7")); // 13
    assert_eq!(hkv(&m, 0), Ok((678100176, 12, 13)));
    assert_eq!(hkv(&m, 12), Ok((2365176796, 11, 12)));
    assert_eq!(hkv(&m, 13), Ok((678100176, 12, 13)));
}

#[test]
fn hash_kv_after_compact_zero_matches_etcd() {
    // Compacting a fresh member at 0 caches a hash for revision 0, which
    // etcd then answers for every HashKV(0) afterwards.
    let mut m = Mvcc::new();
    ok(&mut m, compact(0));
    assert_eq!(hkv(&m, 0), Ok((1084519789, -1, 0)));
    grant(&mut m, 777);
    ok(
        &mut m,
        Command::Put(PutRequest {
            lease: 777,
            ..put_req("a", "v1")
        }),
    );
    assert_eq!(hkv(&m, 0), Ok((1084519789, -1, 0)));
    assert_eq!(hkv(&m, 2), Ok((3656735385, 0, 2)));
}

/// Keys `/s/k00`..`/s/k39`, value `v{(i*7)%3}`, then a few re-puts so that
/// versions tie in groups: the order etcd 3.7.2 answered for each sort.
#[test]
fn sort_order_of_ties_matches_etcd() {
    let mut m = Mvcc::new();
    for i in 0..40 {
        ok(
            &mut m,
            put(&format!("/s/k{i:02}"), &format!("v{}", (i * 7) % 3)),
        );
    }
    for i in [3, 5, 9, 11, 20, 33] {
        ok(&mut m, put(&format!("/s/k{i:02}"), "v1"));
    }
    let expect = [
        (SortTarget::Value, SortOrder::Ascend, "12,39,36,30,27,24,06,21,18,15,00,10,33,13,01,09,16,37,34,19,20,07,22,11,05,25,31,04,28,03,29,26,32,23,08,35,02,17,38,14"),
        (SortTarget::Value, SortOrder::Descend, "14,38,02,35,32,29,26,23,08,17,20,04,01,13,10,37,16,09,03,19,34,33,22,07,11,25,31,05,28,27,30,06,24,21,00,18,36,15,12,39"),
        (SortTarget::Value, SortOrder::None, "12,39,36,30,27,24,06,21,18,15,00,10,33,13,01,09,16,37,34,19,20,07,22,11,05,25,31,04,28,03,29,26,32,23,08,35,02,17,38,14"),
        (SortTarget::Version, SortOrder::Ascend, "30,14,02,39,04,38,06,07,08,37,10,36,12,13,19,15,16,17,01,18,25,21,22,23,24,35,26,27,28,29,00,31,32,34,33,20,11,09,05,03"),
        (SortTarget::Version, SortOrder::Descend, "09,33,20,03,11,05,10,23,08,06,00,04,12,13,14,15,16,17,18,19,02,21,22,07,24,25,26,27,28,29,30,31,32,01,34,35,36,37,38,39"),
        (SortTarget::Version, SortOrder::None, "30,14,02,39,04,38,06,07,08,37,10,36,12,13,19,15,16,17,01,18,25,21,22,23,24,35,26,27,28,29,00,31,32,34,33,20,11,09,05,03"),
        (SortTarget::Create, SortOrder::Descend, "39,38,37,36,35,34,33,32,31,30,29,28,27,26,25,24,23,22,21,20,19,18,17,16,15,14,13,12,11,10,09,08,07,06,05,04,03,02,01,00"),
    ];
    for (target, order, want) in expect {
        let r = m
            .range(&RangeRequest {
                sort_target: target,
                sort_order: order,
                ..get_req("/s/", "/s0")
            })
            .unwrap();
        let got: Vec<String> = keys(&r).into_iter().map(|k| k[4..].to_string()).collect();
        assert_eq!(got.join(","), want, "{target:?} {order:?}");
    }
    // With a limit: sorted first, then truncated.
    let r = m
        .range(&RangeRequest {
            sort_target: SortTarget::Value,
            sort_order: SortOrder::Descend,
            limit: 5,
            ..get_req("/s/", "/s0")
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (
            vec![
                "/s/k14".to_string(),
                "/s/k38".into(),
                "/s/k02".into(),
                "/s/k35".into(),
                "/s/k32".into()
            ],
            true,
            40
        )
    );
    // etcd ran this at revisions 3 higher: its min_mod_revision was 10.
    let r = m
        .range(&RangeRequest {
            min_mod_revision: 7,
            limit: 5,
            ..get_req("/s/", "/s0")
        })
        .unwrap();
    assert_eq!(
        (keys(&r), r.more, r.count),
        (
            vec![
                "/s/k03".to_string(),
                "/s/k05".into(),
                "/s/k06".into(),
                "/s/k07".into(),
                "/s/k08".into()
            ],
            true,
            40
        )
    );
}

#[test]
fn hash_kv_after_delete_then_put_in_one_txn_matches_etcd() {
    // A "from key" delete followed by a put of a deleted key in the same
    // transaction: etcd's index then treats the tombstone, not the put, as
    // the key's survivor for the hash's keep set (here leaving it empty, so
    // the records below the compaction are all hashed).
    let mut m = Mvcc::new();
    ok(&mut m, put("a", "1")); // 2
    ok(&mut m, put("f", "1")); // 3
    ok(&mut m, put("f", "2")); // 4
    ok(&mut m, compact(3));
    let t = txn(
        vec![],
        vec![
            RequestOp::DeleteRange(del_req("\0", "\0")),
            RequestOp::Put(put_req("f", "3")),
        ],
        vec![],
    );
    let r = txn_resp(ok(&mut m, Command::Txn(t)));
    let ResponseOp::DeleteRange(d) = &r.responses[0] else {
        panic!()
    };
    assert_eq!((d.deleted, r.header_revision), (2, 5));
    let kv = get(&m, "f").unwrap();
    assert_eq!((kv.create_revision, kv.mod_revision, kv.version), (5, 5, 1));
    assert_eq!(hkv(&m, 0), Ok((2134077215, 3, 5)));
    ok(&mut m, put("g", "1")); // 6
    assert_eq!(hkv(&m, 0), Ok((3227403971, 3, 6)));
    assert_eq!(hkv(&m, 5), Ok((2134077215, 3, 5)));
}

/// 100 keys per pattern, value `v{pattern(i):02}`: inputs long enough for
/// Go's pdqsort to pivot, partition and break patterns (its pseudo-random
/// generator decides the order of ties here).
#[test]
fn pdqsort_order_of_ties_matches_etcd() {
    type Pattern = (&'static str, fn(usize) -> usize);
    let patterns: [Pattern; 4] = [
        ("mod7", |i| (i * 7) % 5),
        ("half", |i| if i < 50 { 0 } else { i % 4 }),
        ("mostly0", |i| usize::from(i % 17 == 0)),
        ("sqmod", |i| (i * i) % 11),
    ];
    let expect = [
        ("mod7", SortOrder::Ascend, "020,025,095,045,035,005,090,050,000,085,010,030,080,055,070,015,075,060,040,065,078,013,018,023,063,098,073,058,028,068,083,053,008,033,088,093,048,003,038,043,051,026,001,096,091,006,046,086,036,011,081,076,016,031,071,041,056,021,066,061,069,079,099,024,064,039,094,004,044,029,019,054,089,009,074,084,049,034,014,059,037,077,082,032,052,017,047,087,072,007,092,057,012,067,027,002,022,097,042,062"),
        ("mod7", SortOrder::Descend, "072,022,002,097,037,047,092,007,052,032,087,057,012,082,027,062,077,017,042,067,014,029,064,074,024,099,079,019,059,069,084,054,009,089,034,049,094,004,044,039,051,061,001,096,006,091,046,036,086,011,081,016,076,071,031,021,056,041,066,026,068,013,028,063,098,003,058,023,043,093,038,053,008,073,018,088,033,048,078,083,070,020,080,015,035,085,000,010,075,050,090,045,060,055,005,095,030,065,025,040"),
        ("half", SortOrder::Ascend, "036,046,002,003,004,005,006,007,008,009,076,011,012,013,014,015,016,017,018,019,020,021,022,023,024,025,026,027,028,029,030,031,032,033,038,035,010,001,034,039,040,041,042,043,044,045,037,047,048,049,000,072,052,080,096,068,056,084,092,064,060,088,061,085,089,065,057,081,093,069,053,077,097,073,050,062,074,098,078,054,070,094,082,058,066,090,086,087,075,059,063,091,083,055,067,095,079,051,071,099"),
        ("half", SortOrder::Descend, "051,099,095,091,087,083,079,075,071,067,063,059,055,074,070,098,054,094,058,090,050,086,062,082,066,078,089,073,077,069,081,065,085,061,093,057,097,053,035,029,040,041,042,043,044,045,046,047,048,049,038,013,052,037,036,012,056,014,034,011,060,033,032,010,064,031,030,009,068,039,028,008,072,027,000,007,076,026,025,006,080,024,023,005,084,022,021,004,088,020,019,003,092,018,017,002,096,016,015,001"),
        ("mostly0", SortOrder::Ascend, "049,052,003,004,005,006,007,008,009,010,011,012,013,014,015,016,018,019,020,048,022,023,050,025,026,027,028,029,030,031,047,033,035,036,099,037,038,039,040,041,042,043,044,045,046,094,032,002,024,098,001,097,021,053,054,055,056,057,058,059,060,061,062,063,064,065,066,067,096,069,070,071,072,073,074,075,076,077,078,079,080,081,082,083,084,095,086,087,088,089,090,091,092,093,034,085,068,051,017,000"),
        ("mostly0", SortOrder::Descend, "017,085,068,051,000,034,049,058,008,009,010,011,012,013,014,015,016,006,018,019,020,021,022,023,024,025,026,027,054,029,030,031,032,033,005,035,052,037,038,039,040,041,042,043,044,045,046,047,048,004,050,003,036,007,028,055,056,057,053,059,060,061,062,063,064,065,066,067,002,069,070,071,072,073,074,075,076,077,078,079,080,081,082,083,084,001,086,087,088,089,090,091,092,093,094,095,096,097,098,099"),
        ("sqmod", SortOrder::Ascend, "022,011,099,044,055,000,033,066,077,088,034,067,012,087,045,023,098,043,078,089,076,021,001,054,056,032,065,010,027,038,093,071,072,006,049,061,060,028,005,039,094,082,050,017,016,083,075,064,002,046,042,097,090,053,009,013,086,057,079,020,024,035,068,031,059,081,048,029,062,051,070,026,095,073,004,007,092,040,018,037,084,015,052,047,080,085,058,019,041,008,014,063,091,036,074,025,096,069,003,030"),
        ("sqmod", SortOrder::Descend, "052,096,041,003,047,030,091,036,008,085,025,058,080,074,014,063,069,019,007,018,026,015,062,059,081,051,073,084,070,029,092,048,004,095,040,037,075,057,097,002,090,086,042,009,035,079,046,013,031,020,068,064,024,053,083,072,006,005,027,093,060,061,082,094,028,039,038,016,050,049,017,071,021,034,032,001,076,065,078,045,012,067,098,023,010,043,054,087,056,089,077,088,033,044,011,055,000,066,022,099"),
    ];
    let mut m = Mvcc::new();
    for (name, f) in patterns {
        for i in 0..100 {
            ok(
                &mut m,
                put(&format!("/p/{name}/k{i:03}"), &format!("v{:02}", f(i))),
            );
        }
    }
    for (name, order, want) in expect {
        let (from, to) = (format!("/p/{name}/"), format!("/p/{name}0"));
        let req = RangeRequest {
            sort_target: SortTarget::Value,
            sort_order: order,
            keys_only: true,
            ..get_req(&from, &to)
        };
        let got: Vec<String> = keys(&m.range(&req).unwrap())
            .into_iter()
            .map(|k| k[k.len() - 3..].to_string())
            .collect();
        assert_eq!(got.join(","), want, "{name} {order:?}");
    }
}
