//! Leases across kill -9: a lease and its keys survive the restart with the
//! lease's full TTL restored (etcd's behaviour without lease checkpoints),
//! and a lease that is not kept alive still expires after the restart,
//! deleting its keys at a new revision.

mod common;

use std::time::{Duration, Instant};

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;
use pb::lease_client::LeaseClient;

const EXPIRY_DEADLINE: Duration = Duration::from_secs(30);

async fn lease_client(endpoint: String) -> LeaseClient<tonic::transport::Channel> {
    let ch = tonic::transport::Endpoint::from_shared(endpoint)
        .unwrap()
        .connect()
        .await
        .unwrap();
    LeaseClient::new(ch)
}

#[test]
fn leases_survive_kill9_and_still_expire() {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut s = Server::start(Kind::Kvik);
    let (long, short, put_rev) = rt.block_on(async {
        let mut l = lease_client(s.endpoint()).await;
        let mut c = Raw::connect(s.endpoint()).await;
        let long = l
            .lease_grant(pb::LeaseGrantRequest { ttl: 600, id: 0 })
            .await
            .unwrap()
            .into_inner()
            .id;
        let short = l
            .lease_grant(pb::LeaseGrantRequest { ttl: 3, id: 0 })
            .await
            .unwrap()
            .into_inner()
            .id;
        c.kv.put(pb::PutRequest {
            key: b"long".to_vec(),
            value: b"v".to_vec(),
            lease: long,
            ..Default::default()
        })
        .await
        .unwrap();
        let r =
            c.kv.put(pb::PutRequest {
                key: b"short".to_vec(),
                value: b"v".to_vec(),
                lease: short,
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        (long, short, r.header.unwrap().revision)
    });
    s.kill9();
    s.spawn();
    s.wait_ready();
    rt.block_on(async {
        let mut l = lease_client(s.endpoint()).await;
        let mut c = Raw::connect(s.endpoint()).await;
        // The long lease is back with its keys and (nearly) its full TTL.
        let t = l
            .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: long,
                keys: true,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.granted_ttl, 600);
        assert!(t.ttl > 590 && t.ttl <= 600, "TTL after restart: {}", t.ttl);
        assert_eq!(t.keys, vec![b"long".to_vec()]);
        let listed: Vec<i64> = l
            .lease_leases(pb::LeaseLeasesRequest {})
            .await
            .unwrap()
            .into_inner()
            .leases
            .iter()
            .map(|x| x.id)
            .collect();
        assert!(
            listed.contains(&long) && listed.contains(&short),
            "{listed:?}"
        );
        // The short one expires without keep-alives, deleting its key at a
        // new revision.
        let end = Instant::now() + EXPIRY_DEADLINE;
        loop {
            let r =
                c.kv.range(pb::RangeRequest {
                    key: b"short".to_vec(),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if r.kvs.is_empty() {
                assert!(
                    r.header.unwrap().revision > put_rev,
                    "the expiry delete takes a new revision"
                );
                break;
            }
            assert!(
                Instant::now() < end,
                "lease {short:x} did not expire within {EXPIRY_DEADLINE:?} after the restart"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let t = l
            .lease_time_to_live(pb::LeaseTimeToLiveRequest {
                id: short,
                keys: false,
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(t.ttl, -1, "an expired lease is gone");
        // The long lease's key is untouched; revoking it deletes the key.
        l.lease_revoke(pb::LeaseRevokeRequest { id: long })
            .await
            .unwrap();
        let r =
            c.kv.range(pb::RangeRequest {
                key: b"long".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert!(r.kvs.is_empty());
    });
}
