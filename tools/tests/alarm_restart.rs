//! Alarms are in the log: a NOSPACE alarm survives kill -9 and keeps
//! refusing writes, as etcd's persisted alarms do, until it is disarmed.

mod common;

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;

fn alarm_req(action: pb::alarm_request::AlarmAction, member_id: u64) -> pb::AlarmRequest {
    pb::AlarmRequest {
        action: action as i32,
        member_id,
        alarm: pb::AlarmType::Nospace as i32,
    }
}

#[test]
fn nospace_alarm_survives_kill9_and_blocks_writes_until_disarmed() {
    use pb::alarm_request::AlarmAction;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut s = Server::start(Kind::Kvik);
    let member_id = rt.block_on(async {
        let mut c = Raw::connect(s.endpoint()).await;
        let id = c
            .maintenance
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner()
            .header
            .unwrap()
            .member_id;
        c.maintenance
            .alarm(alarm_req(AlarmAction::Activate, id))
            .await
            .unwrap();
        id
    });
    s.kill9();
    s.spawn();
    s.wait_ready();
    rt.block_on(async {
        let mut c = Raw::connect(s.endpoint()).await;
        let listed = c
            .maintenance
            .alarm(alarm_req(AlarmAction::Get, 0))
            .await
            .unwrap()
            .into_inner()
            .alarms;
        assert_eq!(
            listed,
            vec![pb::AlarmMember {
                member_id,
                alarm: pb::AlarmType::Nospace as i32
            }]
        );
        let status = c
            .maintenance
            .status(pb::StatusRequest {})
            .await
            .unwrap()
            .into_inner();
        assert_eq!(
            status.errors,
            vec![format!("memberID:{member_id} alarm:NOSPACE")]
        );
        let put = pb::PutRequest {
            key: b"k".to_vec(),
            value: b"v".to_vec(),
            ..Default::default()
        };
        let err = c.kv.put(put.clone()).await.unwrap_err();
        assert_eq!(err.code(), tonic::Code::ResourceExhausted);
        assert_eq!(err.message(), "etcdserver: mvcc: database space exceeded");
        c.maintenance
            .alarm(alarm_req(AlarmAction::Deactivate, member_id))
            .await
            .unwrap();
        c.kv.put(put).await.expect("writes resume once disarmed");
    });
}
