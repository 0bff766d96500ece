//! The command codec: round trips and hostile input.

use rand::{Rng, RngCore, SeedableRng};

use super::*;

fn full_range() -> RangeRequest {
    RangeRequest {
        key: b"k\x00\xff".to_vec(),
        range_end: b"\x00".to_vec(),
        limit: -3,
        revision: i64::MAX,
        sort_order: SortOrder::Descend,
        sort_target: SortTarget::Value,
        serializable: true,
        keys_only: true,
        count_only: true,
        min_mod_revision: 1,
        max_mod_revision: 2,
        min_create_revision: 3,
        max_create_revision: i64::MIN,
    }
}

fn full_put() -> PutRequest {
    PutRequest {
        key: b"key".to_vec(),
        value: vec![0; 300],
        lease: -9,
        prev_kv: true,
        ignore_value: true,
        ignore_lease: true,
    }
}

fn samples() -> Vec<Command> {
    let compares = vec![
        Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Version(1),
            key: b"a".to_vec(),
            range_end: vec![],
        },
        Compare {
            result: CompareResult::Greater,
            target: CompareTarget::Create(2),
            key: b"b".to_vec(),
            range_end: b"c".to_vec(),
        },
        Compare {
            result: CompareResult::Less,
            target: CompareTarget::Mod(-3),
            key: b"c".to_vec(),
            range_end: vec![0],
        },
        Compare {
            result: CompareResult::NotEqual,
            target: CompareTarget::Value(b"v".to_vec()),
            key: b"d".to_vec(),
            range_end: vec![],
        },
        Compare {
            result: CompareResult::Equal,
            target: CompareTarget::Lease(7),
            key: b"e".to_vec(),
            range_end: vec![],
        },
    ];
    let inner = txn(
        compares[..2].to_vec(),
        vec![
            RequestOp::Put(full_put()),
            RequestOp::Txn(txn(vec![], vec![], vec![RequestOp::Range(full_range())])),
        ],
        vec![RequestOp::DeleteRange(del_req("x", "y"))],
    );
    vec![
        Command::Put(full_put()),
        Command::Put(PutRequest::default()),
        Command::DeleteRange(DeleteRangeRequest {
            key: b"a".to_vec(),
            range_end: b"b".to_vec(),
            prev_kv: true,
        }),
        Command::DeleteRange(DeleteRangeRequest::default()),
        Command::Compact(CompactionRequest {
            revision: 42,
            physical: true,
        }),
        Command::Compact(CompactionRequest {
            revision: -1,
            physical: false,
        }),
        Command::Txn(TxnRequest::default()),
        Command::Txn(txn(
            compares.clone(),
            vec![
                RequestOp::Range(full_range()),
                RequestOp::Put(full_put()),
                RequestOp::DeleteRange(del_req("a", "\0")),
                RequestOp::Txn(inner.clone()),
                RequestOp::Txn(TxnRequest::default()),
            ],
            vec![
                RequestOp::Txn(inner),
                RequestOp::Range(RangeRequest::default()),
            ],
        )),
        // Appended after the lease commands joined the log: the encodings
        // above must not change.
        Command::LeaseGrant {
            id: 7,
            ttl_secs: 100,
        },
        Command::LeaseGrant {
            id: -1,
            ttl_secs: i64::MIN,
        },
        Command::LeaseGrant {
            id: i64::MAX,
            ttl_secs: LEASE_TTL_MAX_SECS,
        },
        Command::LeaseRevoke { id: 7 },
        Command::LeaseRevoke { id: i64::MIN },
    ]
}

#[test]
fn round_trip_every_variant() {
    for c in samples() {
        let bytes = c.encode();
        assert_eq!(bytes[0], CODEC_VERSION);
        assert_eq!(Command::decode(&bytes), Ok(c.clone()), "{c:?}");
        // Deterministic encoding.
        assert_eq!(c.encode(), bytes);
    }
}

#[test]
fn round_trip_deep_nesting() {
    let mut t = txn(vec![], vec![RequestOp::Put(put_req("leaf", "v"))], vec![]);
    for i in 1..TXN_DEPTH_MAX {
        t = txn(
            vec![],
            vec![RequestOp::Range(get_req(&format!("k{i}"), ""))],
            vec![RequestOp::Txn(t)],
        );
    }
    let c = Command::Txn(t);
    assert_eq!(Command::decode(&c.encode()).as_ref(), Ok(&c));
    // One level more than the engine accepts does not decode.
    let Command::Txn(t) = c else { unreachable!() };
    let deeper = Command::Txn(txn(vec![], vec![RequestOp::Txn(t)], vec![]));
    assert_eq!(
        Command::decode(&deeper.encode()),
        Err(DecodeError::BadTxnTree)
    );
}

#[test]
fn version_and_empty_input() {
    assert_eq!(Command::decode(&[]), Err(DecodeError::Empty));
    let mut b = put("a", "b").encode();
    b[0] = 2;
    assert_eq!(Command::decode(&b), Err(DecodeError::UnsupportedVersion(2)));
    assert!(matches!(
        Command::decode(&[CODEC_VERSION]),
        Err(DecodeError::Malformed(_))
    ));
}

#[test]
fn truncated_and_corrupted_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed);
    for c in samples() {
        let bytes = c.encode();
        for n in 0..bytes.len() {
            // Must not panic; a truncated archive must not decode to the
            // original command.
            if let Ok(d) = Command::decode(&bytes[..n]) {
                assert_ne!(d, c);
            }
        }
        for _ in 0..2000 {
            let mut b = bytes.clone();
            let flips = rng.random_range(1..4);
            for _ in 0..flips {
                let i = rng.random_range(1..b.len());
                b[i] ^= 1 << rng.random_range(0..8);
            }
            let _ = Command::decode(&b);
        }
    }
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let mut buf = vec![0u8; 512];
    for i in 0..20_000 {
        let n = rng.random_range(0..buf.len());
        rng.fill_bytes(&mut buf[..n]);
        if i % 2 == 0 && n > 0 {
            buf[0] = CODEC_VERSION;
        }
        let _ = Command::decode(&buf[..n]);
    }
}

/// The log format must not change by accident (e.g. by reordering fields of
/// a request type, which the archive layout follows). If this fails on
/// purpose: bump `CODEC_VERSION`, keep decoding the old version, and update
/// the checksums.
#[test]
fn encoding_is_stable() {
    let sums: Vec<u32> = samples()
        .iter()
        .map(|c| crc32c::crc32c(&c.encode()))
        .collect();
    assert_eq!(sums, GOLDEN_CRCS, "the command encoding changed");
}

const GOLDEN_CRCS: [u32; 13] = [
    13875935, 882205242, 1297552732, 2525030670, 1176017774, 4266693922, 2736496212, 303376205,
    4021770409, 1463975717, 1409205108, 49010826, 1138085392,
];
