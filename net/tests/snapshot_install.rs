//! Installing a leader's snapshot over a member's own state, with the power
//! cut at every storage operation of the install. After each cut and a
//! restart, the member must hold exactly its old state or exactly the
//! snapshot's, never a mixture and never nothing; once the install has
//! returned, only the snapshot's. Either way it must take new writes that
//! survive another restart (the WAL continues after the snapshot).

use engine::segment::Manifest;
use engine::{Command, KeyValue, Limits, PutRequest, RangeRequest};
use net::shard::{self, Shard};
use net::snapshot::{self, Received};
use raftlog::raft::{self, MessageBody, SnapshotMeta};
use raftlog::sim::{block_on, SimDisk};
use raftlog::Wal;

const LIMITS: Limits = Limits { txn_ops_max: 128 };

/// Everything a member holds, as a client sees it.
#[derive(Debug, Clone, PartialEq)]
struct State {
    revision: i64,
    kvs: Vec<KeyValue>,
}

fn state_of(shard: &Shard<SimDisk>) -> State {
    let r = shard
        .mvcc()
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range");
    State {
        revision: shard.mvcc().current_revision(),
        kvs: r.kvs,
    }
}

/// A disk with `puts` writes under `prefix`, checkpointed every few entries.
fn member_disk(prefix: &str, puts: usize) -> SimDisk {
    let disk = SimDisk::new();
    write(&disk, prefix, puts, 7);
    disk
}

/// Opens the member on `disk`, writes `puts` keys and stops it cleanly.
fn write(disk: &SimDisk, prefix: &str, puts: usize, checkpoint_entries: u64) {
    let mut shard = block_on(Shard::open(disk.clone(), disk.clone(), LIMITS)).expect("open");
    shard.set_checkpoint_policy(shard::CheckpointPolicy {
        bytes: 1 << 20,
        entries: checkpoint_entries,
    });
    let (handle, inbox) = shard::channel();
    let prefix = prefix.to_string();
    let client = async move {
        for i in 0..puts {
            handle
                .write(Command::Put(PutRequest {
                    key: format!("{prefix}{:03}", i % 40).into_bytes(),
                    value: format!("{prefix}-value-{i}").into_bytes(),
                    ..Default::default()
                }))
                .await
                .expect("put");
        }
    };
    let (r, ()) = block_on(futures_util::future::join(shard.run(inbox), client));
    r.expect("shard run");
}

/// A copy of every file of `disk`, all durable.
fn copy(disk: &SimDisk) -> SimDisk {
    let out = SimDisk::new();
    for name in disk.file_names() {
        out.put_file(&name, &disk.file_bytes(&name).expect("listed"));
    }
    out
}

/// The leader's newest checkpoint as a follower receives it, and the state
/// it holds.
fn leader_snapshot(leader: &SimDisk) -> (Received, State) {
    let (mvcc, manifest) = block_on(net::revstore::open(leader)).expect("open store");
    let manifest: Manifest = manifest.expect("the leader checkpointed");
    let (conf, _) = net::raftstate::decode_membership(&manifest.membership).expect("membership");
    let message = raft::Message {
        group: shard::GROUP_ID,
        from: shard::SOLO_MEMBER_ID,
        to: shard::SOLO_MEMBER_ID,
        term: manifest.applied_term,
        body: MessageBody::Snapshot {
            meta: SnapshotMeta {
                index: manifest.applied_index,
                term: manifest.applied_term,
                conf,
            },
        },
    };
    let bytes: Vec<u8> = snapshot::pieces(
        &raft::codec::encode(&message),
        &manifest,
        mvcc.live_segments(),
    )
    .flatten()
    .collect();
    let received = snapshot::parse(bytes.into()).expect("parse");
    let r = mvcc
        .range(&RangeRequest {
            key: vec![0],
            range_end: vec![0],
            ..Default::default()
        })
        .expect("range");
    let state = State {
        revision: mvcc.current_revision(),
        kvs: r.kvs,
    };
    (received, state)
}

/// The install as the shard runs it, on a member whose disk is `disk`.
fn install(disk: &SimDisk, received: &Received) -> Result<(), String> {
    let (_, current) = block_on(net::revstore::open(disk))?;
    let (mut wal, _) = block_on(Wal::open(disk.clone())).map_err(|e| e.to_string())?;
    block_on(snapshot::install(
        &mut wal,
        disk,
        disk,
        current.as_ref(),
        received,
    ))
    .map(|_| ())
}

/// Restarts the member on `disk` and checks it holds `old` or `new` (only
/// `new` if `completed`), takes a write, and keeps it across a restart.
fn check(disk: &SimDisk, old: &State, new: &State, completed: bool) -> Result<(), String> {
    let shard = block_on(Shard::open(disk.clone(), disk.clone(), LIMITS))
        .map_err(|e| format!("restart failed: {e}"))?;
    let got = state_of(&shard);
    drop(shard);
    if got != *new && (completed || got != *old) {
        return Err(format!(
            "restarted at revision {} with {} keys: neither the old state (revision {}) nor \
             the snapshot's (revision {}){}",
            got.revision,
            got.kvs.len(),
            old.revision,
            new.revision,
            if completed {
                ", after the install returned"
            } else {
                ""
            }
        ));
    }
    if disk
        .file_names()
        .iter()
        .any(|n| n == net::raftstate::INSTALL_MARKER)
    {
        return Err("the install marker outlived the restart".into());
    }
    write(disk, "after/", 1, 1_000);
    let shard = block_on(Shard::open(disk.clone(), disk.clone(), LIMITS))
        .map_err(|e| format!("second restart failed: {e}"))?;
    let after = state_of(&shard);
    if after.revision != got.revision + 1 || !after.kvs.iter().any(|kv| kv.key == b"after/000") {
        return Err(format!(
            "a write after the restart did not survive: revision {} after {}",
            after.revision, got.revision
        ));
    }
    Ok(())
}

#[test]
fn a_crash_at_any_step_of_an_install_leaves_the_old_state_or_the_snapshot() {
    let leader = member_disk("leader/", 300);
    let (received, new) = leader_snapshot(&leader);
    assert!(
        !received.segments.is_empty(),
        "the snapshot carries segments"
    );
    let follower = member_disk("follower/", 90);
    let old = {
        let d = copy(&follower);
        let shard = block_on(Shard::open(d.clone(), d, LIMITS)).expect("open");
        state_of(&shard)
    };
    assert_ne!(old, new);
    let mut cut = 0u64;
    loop {
        let disk = copy(&follower);
        disk.cut_power_after(cut);
        let completed = install(&disk, &received).is_ok();
        disk.crash(cut);
        if let Err(e) = check(&disk, &old, &new, completed) {
            panic!("power cut after {cut} operations: {e}");
        }
        if completed {
            break;
        }
        cut += 1;
    }
    // Every step was cut at least once before the install could complete.
    assert!(cut > 10, "the install took only {cut} operations");
}

/// The checker must catch an install that restarts the WAL before the
/// snapshot's state is durable: a crash in between leaves a log that
/// begins after a state the member does not have.
#[test]
fn restarting_the_log_before_the_state_is_durable_is_caught() {
    let leader = member_disk("leader/", 300);
    let (received, new) = leader_snapshot(&leader);
    let follower = member_disk("follower/", 90);
    let old = {
        let d = copy(&follower);
        let shard = block_on(Shard::open(d.clone(), d, LIMITS)).expect("open");
        state_of(&shard)
    };
    let disk = copy(&follower);
    let (mut wal, _) = block_on(Wal::open(disk.clone())).expect("wal");
    block_on(wal.reset_after(received.meta.index, received.meta.term)).expect("reset");
    disk.crash(1);
    let err = check(&disk, &old, &new, false).expect_err("the planted order must be caught");
    assert!(err.contains("restart failed"), "{err}");
}
