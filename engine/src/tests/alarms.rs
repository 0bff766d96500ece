//! Alarms as etcd's alarm store keeps them (checked against etcd 3.7.2 by
//! the etcd-client comparison test), now carried by the log.

use crate::{AlarmMember, Applied, Command, Mvcc};

fn alarm(m: &mut Mvcc, activate: bool, member_id: u64, alarm: i32) -> Vec<AlarmMember> {
    let rev = m.current_revision();
    let out = match m
        .apply(&Command::Alarm {
            activate,
            member_id,
            alarm,
        })
        .unwrap()
    {
        Applied::Alarm(list) => list,
        other => panic!("an alarm applies as an alarm, got {other:?}"),
    };
    assert_eq!(m.current_revision(), rev, "alarms take no revision");
    out
}

#[test]
fn activate_and_deactivate_act_on_exact_pairs() {
    let mut m = Mvcc::new();
    let nospace = AlarmMember {
        member_id: 7,
        alarm: 1,
    };
    assert_eq!(alarm(&mut m, true, 7, 1), vec![nospace]);
    // Raising it again lists it again but stores it once.
    assert_eq!(alarm(&mut m, true, 7, 1), vec![nospace]);
    // NONE is never raised; member 0 is stored literally.
    assert_eq!(alarm(&mut m, true, 7, 0), vec![]);
    assert_eq!(
        alarm(&mut m, true, 0, 2),
        vec![AlarmMember {
            member_id: 0,
            alarm: 2
        }]
    );
    assert_eq!(
        m.alarms(),
        &[
            nospace,
            AlarmMember {
                member_id: 0,
                alarm: 2
            }
        ]
    );
    // Deactivation matches exactly: (0, NONE) clears nothing.
    assert_eq!(alarm(&mut m, false, 0, 0), vec![]);
    assert_eq!(alarm(&mut m, false, 7, 1), vec![nospace]);
    assert_eq!(alarm(&mut m, false, 7, 1), vec![]);
    assert_eq!(
        m.alarms(),
        &[AlarmMember {
            member_id: 0,
            alarm: 2
        }]
    );
}

#[test]
fn alarms_round_trip_the_codec_and_replay() {
    let cmds = [
        Command::Alarm {
            activate: true,
            member_id: u64::MAX,
            alarm: 1,
        },
        Command::Alarm {
            activate: true,
            member_id: 3,
            alarm: 2,
        },
        Command::Alarm {
            activate: false,
            member_id: u64::MAX,
            alarm: 1,
        },
    ];
    let mut live = Mvcc::new();
    let mut replayed = Mvcc::new();
    for c in &cmds {
        let bytes = c.encode();
        let back = Command::decode(&bytes).unwrap();
        assert_eq!(&back, c);
        live.apply(c).unwrap();
        replayed.apply(&back).unwrap();
    }
    assert_eq!(live.alarms(), replayed.alarms());
    assert_eq!(
        live.alarms(),
        &[AlarmMember {
            member_id: 3,
            alarm: 2
        }]
    );
}
