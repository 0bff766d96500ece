//! The Raft peer transport between real transports on loopback ports.
//! Conditions are polled with generous deadlines; nothing sleeps to
//! synchronise.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use net::peer::{
    encode_frame, FrameKind, Hello, Inbox, Incoming, PeerError, PeerTransport, SendError,
    SnapshotError, TransportConfig, FRAME_BYTES_MAX, FRAME_HEADER_BYTES,
};

const DEADLINE: Duration = Duration::from_secs(30);
const CLUSTER: u64 = 0xc1;

fn url(addr: SocketAddr) -> String {
    format!("http://{addr}")
}

fn start_with(
    id: u64,
    cluster: u64,
    peers: Vec<(u64, Vec<String>)>,
    listen: Option<SocketAddr>,
    tune: impl FnOnce(&mut TransportConfig),
) -> (PeerTransport, Inbox) {
    let mut config = TransportConfig::new(id, cluster, peers);
    config.listen = vec![listen.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap())];
    tune(&mut config);
    PeerTransport::start(config).expect("start transport")
}

fn start(id: u64, peers: Vec<(u64, Vec<String>)>) -> (PeerTransport, Inbox) {
    start_with(id, CLUSTER, peers, None, |_| {})
}

/// A loopback URL nobody listens on: connections are refused.
fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    url(l.local_addr().unwrap())
}

fn poll_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Collects `n` items from the inbox, failing after the deadline.
fn recv_n(inbox: &mut Inbox, n: usize) -> Vec<Incoming> {
    let mut got = Vec::with_capacity(n);
    poll_until(&format!("{n} incoming frames"), || {
        while let Ok(m) = inbox.try_recv() {
            got.push(m);
        }
        got.len() >= n
    });
    got
}

fn seq_payload(seq: u64, pad: usize) -> Vec<u8> {
    let mut p = seq.to_le_bytes().to_vec();
    p.resize(8 + pad, 0xab);
    p
}

fn seq_of(m: &Incoming) -> u64 {
    match m {
        Incoming::Message { payload, .. } => u64::from_le_bytes(payload[..8].try_into().unwrap()),
        other => panic!("expected a message, got {other:?}"),
    }
}

/// Sends, retrying while the queue is full (the receiver drains it).
fn send_all(t: &PeerTransport, to: u64, seqs: std::ops::Range<u64>) -> u64 {
    let mut full = 0;
    for seq in seqs {
        loop {
            match t.send(to, seq % 3, seq_payload(seq, (seq % 97) as usize)) {
                Ok(()) => break,
                Err(SendError::QueueFull) => {
                    full += 1;
                    std::thread::yield_now();
                }
                Err(e) => panic!("send {seq}: {e}"),
            }
        }
    }
    full
}

fn assert_in_order(msgs: &[Incoming], from: u64, seqs: std::ops::Range<u64>) {
    let got: Vec<u64> = msgs.iter().map(seq_of).collect();
    let want: Vec<u64> = seqs.collect();
    assert_eq!(got, want, "messages out of order or missing");
    for m in msgs {
        let Incoming::Message {
            from: f,
            group,
            payload,
        } = m
        else {
            unreachable!()
        };
        let seq = seq_of(m);
        assert_eq!(*f, from);
        assert_eq!(*group, seq % 3);
        assert_eq!(payload.len(), 8 + (seq % 97) as usize);
    }
}

fn frame(kind: FrameKind, group: u64, payload: &[u8]) -> Vec<u8> {
    let mut b = Vec::new();
    encode_frame(kind, group, payload, &mut b).unwrap();
    b
}

fn raw_connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(DEADLINE)).unwrap();
    s
}

/// Reads one frame's kind and payload from a raw connection.
fn try_read_frame(s: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut h = [0u8; FRAME_HEADER_BYTES];
    s.read_exact(&mut h)?;
    let len = u32::from_le_bytes(h[10..14].try_into().unwrap()) as usize;
    let mut p = vec![0u8; len];
    s.read_exact(&mut p)?;
    Ok((h[1], p))
}

fn raw_read_frame(s: &mut TcpStream) -> (u8, Vec<u8>) {
    try_read_frame(s).unwrap()
}

/// A raw client that completed the handshake as member `from`.
fn raw_handshake(addr: SocketAddr, from: u64, to: u64) -> TcpStream {
    let mut s = raw_connect(addr);
    let hello = Hello {
        from,
        to,
        cluster_id: CLUSTER,
    };
    s.write_all(&frame(FrameKind::Hello, 0, &hello.encode()))
        .unwrap();
    let (kind, payload) = raw_read_frame(&mut s);
    assert_eq!(kind, FrameKind::Hello as u8);
    assert_eq!(
        Hello::decode(&payload).unwrap(),
        Hello {
            from: to,
            to: from,
            cluster_id: CLUSTER
        }
    );
    s
}

/// Whether the server closed the connection (end of stream or reset).
fn closed_by_server(s: &mut TcpStream) -> bool {
    let mut b = [0u8; 64];
    loop {
        match s.read(&mut b) {
            Ok(0) => return true,
            Ok(_) => continue,
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return true,
            Err(e) => panic!("connection still open after the deadline: {e}"),
        }
    }
}

#[test]
fn messages_arrive_in_order() {
    const N: u64 = 20_000;
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, |c| {
        c.inbox_messages_max = N as usize + 16;
    });
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b.local_addrs()[0])])]);
    let full = send_all(&a, 2, 0..N);
    let msgs = recv_n(&mut b_inbox, N as usize);
    assert_in_order(&msgs, 1, 0..N);
    // Both sides count just after the bytes move, so the test may see a
    // message before its count.
    poll_until("the counters to catch up", || {
        a.peer_stats(2).unwrap().sent == N && b.stats().received == N
    });
    let stats = a.peer_stats(2).unwrap();
    assert_eq!(stats.dropped, full, "every refused send is counted");
    assert!(stats.connected && stats.connected_since.is_some());
    assert_eq!(stats.connects, 1);
    assert_eq!(b.stats().accepted, 1);
}

#[test]
fn unreachable_peers_do_not_block_a_reachable_one() {
    const N: u64 = 2_000;
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, |c| {
        c.inbox_messages_max = N as usize + 16;
    });
    // 3 refuses connections; 4 accepts them in the kernel but never
    // answers the handshake.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let (a, _a_inbox) = start_with(
        1,
        CLUSTER,
        vec![
            (2, vec![url(b.local_addrs()[0])]),
            (3, vec![dead_url()]),
            (4, vec![url(silent.local_addr().unwrap())]),
        ],
        None,
        |c| c.peer_queue_messages_max = 64,
    );
    let mut refused = 0;
    for seq in 0..N {
        for dead in [3, 4] {
            match a.send(dead, 0, seq_payload(seq, 0)) {
                Ok(()) => {}
                Err(SendError::QueueFull) => refused += 1,
                Err(e) => panic!("{e}"),
            }
        }
        send_all(&a, 2, seq..seq + 1);
    }
    let msgs = recv_n(&mut b_inbox, N as usize);
    assert_in_order(&msgs, 1, 0..N);
    // Nothing drains a queue without a connection: each holds its first 64
    // messages and every later one was refused.
    assert_eq!(
        refused,
        2 * (N - 64),
        "dead peers' queues filled and dropped"
    );
    for dead in [3, 4] {
        let s = a.peer_stats(dead).unwrap();
        assert!(!s.connected);
        assert_eq!((s.sent, s.queued, s.dropped), (0, 64, N - 64));
    }
    poll_until("a refused dial to be counted", || {
        a.peer_stats(3).unwrap().dial_failures > 0
    });
}

#[test]
fn full_queue_drops_instead_of_blocking() {
    let (a, _inbox) = start_with(1, CLUSTER, vec![(3, vec![dead_url()])], None, |c| {
        c.peer_queue_messages_max = 8
    });
    let mut ok = 0;
    let mut full = 0;
    for seq in 0..100 {
        match a.send(3, 0, seq_payload(seq, 0)) {
            Ok(()) => ok += 1,
            Err(SendError::QueueFull) => full += 1,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!((ok, full), (8, 92));
    let s = a.peer_stats(3).unwrap();
    assert_eq!(s.dropped, 92);
    assert_eq!(s.queued, 8);
    assert_eq!(a.send(9, 0, vec![]), Err(SendError::UnknownPeer));
    assert_eq!(
        a.send(3, 0, vec![0; FRAME_BYTES_MAX + 1]),
        Err(SendError::TooLarge {
            len: FRAME_BYTES_MAX + 1
        })
    );
}

#[test]
fn restarted_peer_is_reconnected() {
    let (b, mut b_inbox) = start(2, vec![]);
    let b_addr = b.local_addrs()[0];
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b_addr)])]);
    send_all(&a, 2, 0..10);
    assert_in_order(&recv_n(&mut b_inbox, 10), 1, 0..10);

    drop(b);
    drop(b_inbox);
    // The old listener may take a moment to release the port.
    let mut restarted = None;
    poll_until("the port to be free again", || {
        let mut config = TransportConfig::new(2, CLUSTER, vec![]);
        config.listen = vec![b_addr];
        match PeerTransport::start(config) {
            Ok(t) => {
                restarted = Some(t);
                true
            }
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => false,
            Err(e) => panic!("{e}"),
        }
    });
    let (b2, mut b2_inbox) = restarted.unwrap();

    // Messages sent while the peer was away may be lost (Raft resends);
    // later ones must arrive on a new connection.
    let mut seq = 100;
    let mut first = None;
    poll_until("a message on the new connection", || {
        let _ = a.send(2, 0, seq_payload(seq, 0));
        seq += 1;
        if let Ok(m) = b2_inbox.try_recv() {
            first = Some(seq_of(&m));
        }
        first.is_some()
    });
    let first = first.unwrap();
    // Once reconnected, nothing sent afterwards is lost or reordered.
    while b2_inbox.try_recv().is_ok() {}
    let start = 1_000_000;
    send_all(&a, 2, start..start + 500);
    let mut tail = Vec::new();
    poll_until("the later messages", || {
        while let Ok(m) = b2_inbox.try_recv() {
            if seq_of(&m) >= start {
                tail.push(m);
            }
        }
        tail.len() >= 500
    });
    assert_in_order(&tail, 1, start..start + 500);
    assert!(first >= 100);
    assert!(a.peer_stats(2).unwrap().connects >= 2);
    assert_eq!(b2.stats().accepted, 1);
}

#[test]
fn bad_frames_close_only_their_connection() {
    let (b, mut b_inbox) = start(2, vec![]);
    let b_addr = b.local_addrs()[0];
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b_addr)])]);
    send_all(&a, 2, 0..10);
    assert_in_order(&recv_n(&mut b_inbox, 10), 1, 0..10);

    // A raw client speaks the format: its message is delivered.
    let mut good = raw_handshake(b_addr, 7, 2);
    good.write_all(&frame(FrameKind::Message, 5, b"raw"))
        .unwrap();
    let got = recv_n(&mut b_inbox, 1);
    assert_eq!(
        got[0],
        Incoming::Message {
            from: 7,
            group: 5,
            payload: b"raw".to_vec()
        }
    );

    // Oversize length after the handshake.
    let mut oversize = raw_handshake(b_addr, 7, 2);
    let mut h = frame(FrameKind::Message, 0, b"");
    h[10..14].copy_from_slice(&((FRAME_BYTES_MAX + 1) as u32).to_le_bytes());
    oversize.write_all(&h).unwrap();
    assert!(closed_by_server(&mut oversize));

    // A bad version instead of a hello.
    let mut bad_version = raw_connect(b_addr);
    let mut f = frame(FrameKind::Hello, 0, &[0; Hello::BYTES]);
    f[0] = 99;
    bad_version.write_all(&f).unwrap();
    assert!(closed_by_server(&mut bad_version));

    // An unknown kind after the handshake.
    let mut bad_kind = raw_handshake(b_addr, 7, 2);
    let mut f = frame(FrameKind::Message, 0, b"x");
    f[1] = 200;
    bad_kind.write_all(&f).unwrap();
    assert!(closed_by_server(&mut bad_kind));

    // A frame cut short by the end of the stream.
    let mut truncated = raw_handshake(b_addr, 7, 2);
    let f = frame(FrameKind::Message, 0, &[1; 100]);
    truncated.write_all(&f[..FRAME_HEADER_BYTES + 10]).unwrap();
    truncated.shutdown(std::net::Shutdown::Write).unwrap();
    assert!(closed_by_server(&mut truncated));

    poll_until("four bad frames counted", || b.stats().bad_frames >= 4);
    assert_eq!(b.stats().bad_frames, 4);
    // The well-behaved connections are untouched.
    good.write_all(&frame(FrameKind::Message, 5, b"still"))
        .unwrap();
    send_all(&a, 2, 10..20);
    let msgs = recv_n(&mut b_inbox, 11);
    let (raw, from_a): (Vec<_>, Vec<_>) = msgs
        .into_iter()
        .partition(|m| matches!(m, Incoming::Message { from: 7, .. }));
    assert_eq!(raw.len(), 1);
    assert_in_order(&from_a, 1, 10..20);
    assert_eq!(a.peer_stats(2).unwrap().connects, 1);
}

#[test]
fn snapshot_streams_while_messages_flow() {
    const SNAPSHOT_BYTES: usize = 12 << 20;
    const N: u64 = 3_000;
    // The receiver spools snapshots to files; clear_spool removes a file
    // another (stopped) process left, and keeps this process's own.
    let spool =
        std::env::temp_dir().join(format!("kvik-peer-spool-{:016x}", rand::random::<u64>()));
    std::fs::create_dir_all(&spool).unwrap();
    let prefix = net::peer::SNAPSHOT_SPOOL_PREFIX;
    let own = spool.join(format!("{prefix}{}-7", net::peer::spool_token()));
    std::fs::write(spool.join(format!("{prefix}0000000000000000-7")), b"stale").unwrap();
    std::fs::write(&own, b"in progress").unwrap();
    net::peer::clear_spool(&spool).unwrap();
    let spooled = || std::fs::read_dir(&spool).unwrap().count();
    assert_eq!(spooled(), 1, "only this process's spool file is left");
    std::fs::remove_file(&own).unwrap();
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, |c| {
        c.inbox_messages_max = N as usize + 16;
        c.snapshot_spool_dir = Some(spool.clone());
    });
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b.local_addrs()[0])])]);
    // Pseudo-random data in uneven pieces.
    let mut x: u64 = 0x9e37_79b9;
    let data: Vec<u8> = (0..SNAPSHOT_BYTES)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    let pieces = vec![
        data[..3 << 20].to_vec(),
        data[3 << 20..(3 << 20) + 17].to_vec(),
        data[(3 << 20) + 17..].to_vec(),
    ];
    let mut pending = a.send_snapshot(2, 9, pieces).unwrap();
    send_all(&a, 2, 0..N);
    let mut result = None;
    let mut msgs = Vec::new();
    let mut snapshot = None;
    poll_until("the snapshot and the messages", || {
        while let Ok(m) = b_inbox.try_recv() {
            match m {
                Incoming::Snapshot { from, group, data } => snapshot = Some((from, group, data)),
                m => msgs.push(m),
            }
        }
        if result.is_none() {
            result = pending.try_result();
        }
        result.is_some() && snapshot.is_some() && msgs.len() as u64 >= N
    });
    assert_eq!(
        result.unwrap(),
        Ok(net::peer::SnapshotSent {
            bytes: SNAPSHOT_BYTES as u64
        })
    );
    let (from, group, got) = snapshot.unwrap();
    assert_eq!((from, group), (1, 9));
    assert!(*got == *data, "snapshot differs");
    assert!(got.is_spooled(), "{got:?}");
    assert_eq!(
        spooled(),
        0,
        "a delivered snapshot's file is unlinked, only mapped"
    );
    drop(got);
    std::fs::remove_dir_all(&spool).unwrap();
    assert_in_order(&msgs, 1, 0..N);
    let s = a.peer_stats(2).unwrap();
    assert_eq!((s.snapshots_sent, s.snapshots_failed), (1, 0));
    // The snapshot had a connection of its own; messages kept theirs.
    assert_eq!(s.connects, 1);
    assert_eq!(b.stats().accepted, 2);
    assert_eq!(b.stats().snapshots_received, 1);
}

#[test]
fn a_snapshot_the_spool_disk_cannot_hold_is_refused() {
    // A receiver that must keep more free space than its disk has refuses
    // the transfer (the sender sees it fail and may try again later),
    // delivers nothing and leaves no spool file.
    let spool =
        std::env::temp_dir().join(format!("kvik-peer-spool-{:016x}", rand::random::<u64>()));
    let spooled = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, |c| {
        c.snapshot_spool_dir = Some(spool.clone());
        c.spool_free_reserve_bytes = u64::MAX / 2;
    });
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b.local_addrs()[0])])]);
    let mut p = a.send_snapshot(2, 4, vec![vec![7u8; 3 << 20]]).unwrap();
    let mut r = None;
    poll_until("the refused snapshot's result", || {
        r = p.try_result();
        r.is_some()
    });
    assert!(r.unwrap().is_err(), "the transfer was not refused");
    assert!(
        b_inbox.try_recv().is_err(),
        "a refused snapshot was delivered"
    );
    poll_until("no spool file left", || spooled() == 0);
    assert_eq!(b.stats().snapshots_received, 0);
    let _ = std::fs::remove_dir_all(&spool);
}

#[test]
fn snapshot_to_an_unreachable_peer_fails() {
    let (a, _inbox) = start(1, vec![(3, vec![dead_url()])]);
    let mut p = a.send_snapshot(3, 0, vec![vec![1u8; 100]]).unwrap();
    let mut r = None;
    poll_until("the snapshot verdict", || {
        r = p.try_result();
        r.is_some()
    });
    assert!(matches!(r.unwrap(), Err(SnapshotError::Connect(_))));
    assert_eq!(a.peer_stats(3).unwrap().snapshots_failed, 1);
    assert!(matches!(
        a.send_snapshot(9, 0, vec![]),
        Err(SnapshotError::UnknownPeer)
    ));
}

#[test]
fn cluster_id_mismatch_is_refused() {
    let (b, mut b_inbox) = start_with(2, 0xbad, vec![], None, |_| {});
    let b_addr = b.local_addrs()[0];
    let (a, _a_inbox) = start(1, vec![(2, vec![url(b_addr)])]);
    poll_until("both sides to see the refusal", || {
        let _ = a.send(2, 0, b"x".to_vec());
        a.peer_stats(2).unwrap().rejected >= 1 && b.stats().rejected >= 1
    });
    let s = a.peer_stats(2).unwrap();
    assert!(!s.connected);
    assert_eq!((s.sent, s.connects), (0, 0));
    assert_eq!(b.stats().accepted, 0);
    assert!(b_inbox.try_recv().is_err());

    // On the wire: a Reject frame with etcd's words, then the close.
    let mut raw = raw_connect(b_addr);
    let hello = Hello {
        from: 1,
        to: 2,
        cluster_id: CLUSTER,
    };
    raw.write_all(&frame(FrameKind::Hello, 0, &hello.encode()))
        .unwrap();
    let (kind, reason) = raw_read_frame(&mut raw);
    assert_eq!(kind, FrameKind::Reject as u8);
    assert_eq!(reason, b"request cluster ID mismatch");
    assert!(closed_by_server(&mut raw));

    // A hello for another member is refused too.
    let mut raw = raw_connect(b_addr);
    let hello = Hello {
        from: 1,
        to: 3,
        cluster_id: 0xbad,
    };
    raw.write_all(&frame(FrameKind::Hello, 0, &hello.encode()))
        .unwrap();
    let (kind, reason) = raw_read_frame(&mut raw);
    assert_eq!(kind, FrameKind::Reject as u8);
    assert_eq!(reason, b"request member ID mismatch");
}

/// The end frame of a snapshot: total bytes and crc32c.
fn snapshot_end(total: usize, crc: u32) -> Vec<u8> {
    let mut e = (total as u64).to_le_bytes().to_vec();
    e.extend_from_slice(&crc.to_le_bytes());
    e
}

#[test]
fn damaged_snapshots_are_refused() {
    // Spooled to files, so that a refused or cut-off transfer is seen to
    // leave none behind.
    let spool =
        std::env::temp_dir().join(format!("kvik-peer-spool-{:016x}", rand::random::<u64>()));
    let spooled = || std::fs::read_dir(&spool).map_or(0, |d| d.count());
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, |c| {
        c.snapshot_spool_dir = Some(spool.clone());
    });
    let b_addr = b.local_addrs()[0];
    let data: &[u8] = b"snapshot bytes";
    let crc = crc32c::crc32c(data);

    // An intact snapshot in two chunks is delivered and acknowledged.
    let mut good = raw_handshake(b_addr, 7, 2);
    good.write_all(&frame(FrameKind::SnapshotChunk, 4, &data[..5]))
        .unwrap();
    good.write_all(&frame(FrameKind::SnapshotChunk, 4, &data[5..]))
        .unwrap();
    good.write_all(&frame(
        FrameKind::SnapshotEnd,
        4,
        &snapshot_end(data.len(), crc),
    ))
    .unwrap();
    assert_eq!(
        raw_read_frame(&mut good),
        (FrameKind::SnapshotAck as u8, vec![0])
    );
    assert_eq!(
        recv_n(&mut b_inbox, 1)[0],
        Incoming::Snapshot {
            from: 7,
            group: 4,
            data: data.to_vec().into()
        }
    );

    // A flipped bit, then a wrong length: each is refused with a verdict
    // and its connection closed. A snapshot is delivered before its
    // verdict is written, so the inbox is final once the verdict is read.
    let mut flipped = data.to_vec();
    flipped[3] ^= 1;
    for (chunk, end) in [
        (flipped, snapshot_end(data.len(), crc)),
        (data.to_vec(), snapshot_end(data.len() + 1, crc)),
    ] {
        let mut bad = raw_handshake(b_addr, 7, 2);
        bad.write_all(&frame(FrameKind::SnapshotChunk, 4, &chunk))
            .unwrap();
        bad.write_all(&frame(FrameKind::SnapshotEnd, 4, &end))
            .unwrap();
        let (kind, verdict) = raw_read_frame(&mut bad);
        assert_eq!(kind, FrameKind::SnapshotAck as u8);
        assert_eq!(verdict, b"\x01checksum mismatch");
        assert!(closed_by_server(&mut bad));
        assert!(
            b_inbox.try_recv().is_err(),
            "a damaged snapshot was delivered"
        );
    }
    assert_eq!(b.stats().snapshots_received, 1);
    poll_until("both refusals counted", || b.stats().bad_frames == 2);

    // A transfer cut off mid-way leaves no spool file either.
    let mut cut = raw_handshake(b_addr, 7, 2);
    cut.write_all(&frame(FrameKind::SnapshotChunk, 4, data))
        .unwrap();
    poll_until("the cut-off transfer's spool file", || spooled() == 1);
    drop(cut);
    poll_until("the cut-off transfer's spool file removed", || {
        spooled() == 0
    });
    let _ = std::fs::remove_dir_all(&spool);
}

/// A listener that completes every handshake with the hello `answer`
/// makes of the dialer's, then reads until the dialer hangs up.
fn fake_member(answer: fn(Hello) -> Hello) -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let u = url(l.local_addr().unwrap());
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { return };
            let Ok((_, payload)) = try_read_frame(&mut s) else {
                continue;
            };
            let reply = answer(Hello::decode(&payload).unwrap());
            let _ = s.write_all(&frame(FrameKind::Hello, 0, &reply.encode()));
            let mut b = [0u8; 256];
            while matches!(s.read(&mut b), Ok(n) if n > 0) {}
        }
    });
    u
}

#[test]
fn dialer_refuses_a_listener_that_is_someone_else() {
    // 2's URL reaches member 9; 3's reaches a member of another cluster.
    let other_member = fake_member(|h| Hello {
        from: 9,
        to: h.from,
        cluster_id: h.cluster_id,
    });
    let other_cluster = fake_member(|h| Hello {
        from: h.to,
        to: h.from,
        cluster_id: 0xbad,
    });
    let (a, _inbox) = start(1, vec![(2, vec![other_member]), (3, vec![other_cluster])]);
    for peer in [2, 3] {
        a.send(peer, 0, b"x".to_vec()).unwrap();
        poll_until("the dialer to refuse the answer", || {
            a.peer_stats(peer).unwrap().rejected >= 1
        });
        let s = a.peer_stats(peer).unwrap();
        assert_eq!((s.connects, s.sent, s.queued), (0, 0, 1));
    }
}

#[test]
fn peers_are_added_removed_and_moved() {
    let (b, mut b_inbox) = start(2, vec![]);
    let b_url = url(b.local_addrs()[0]);
    let (a, _a_inbox) = start(1, vec![(2, vec![dead_url()])]);
    assert_eq!(
        a.add_peer(2, vec![b_url.clone()]),
        Err(PeerError::AlreadyKnown(2))
    );
    assert_eq!(
        a.add_peer(1, vec![b_url.clone()]),
        Err(PeerError::LocalMember)
    );
    assert!(matches!(
        a.add_peer(5, vec!["https://127.0.0.1:1".into()]),
        Err(PeerError::BadUrl(_))
    ));
    assert_eq!(
        a.update_peer_urls(9, vec![b_url.clone()]),
        Err(PeerError::UnknownPeer(9))
    );
    // Moving member 2 to its real address connects at once.
    a.update_peer_urls(2, vec![b_url.clone()]).unwrap();
    send_all(&a, 2, 0..100);
    assert_in_order(&recv_n(&mut b_inbox, 100), 1, 0..100);

    a.remove_peer(2).unwrap();
    assert_eq!(a.send(2, 0, vec![]), Err(SendError::UnknownPeer));
    assert_eq!(a.peer_stats(2), None);
    assert_eq!(a.remove_peer(2), Err(PeerError::UnknownPeer(2)));
    // The removed peer's connection is closed; a new one is made on re-add.
    a.add_peer(2, vec![b_url]).unwrap();
    send_all(&a, 2, 100..200);
    assert_in_order(&recv_n(&mut b_inbox, 100), 1, 100..200);
    assert_eq!(a.peers(), vec![2]);
    poll_until("the second connection to be counted", || {
        b.stats().accepted == 2
    });
}

#[test]
fn three_members_exchange_messages() {
    let listeners: Vec<(PeerTransport, Inbox)> = (1..=3).map(|id| start(id, vec![])).collect();
    let urls: Vec<String> = listeners
        .iter()
        .map(|(t, _)| url(t.local_addrs()[0]))
        .collect();
    let mut nodes = listeners;
    for (i, (t, _)) in nodes.iter().enumerate() {
        for (j, u) in urls.iter().enumerate() {
            if i != j {
                t.add_peer(j as u64 + 1, vec![u.clone()]).unwrap();
            }
        }
    }
    for (i, (t, _)) in nodes.iter().enumerate() {
        for to in 1..=3u64 {
            if to != i as u64 + 1 {
                send_all(t, to, 0..200);
            }
        }
    }
    for (i, (_, inbox)) in nodes.iter_mut().enumerate() {
        let mut others = (1..=3u64).filter(|f| *f != i as u64 + 1);
        let (x, y) = (others.next().unwrap(), others.next().unwrap());
        let (from_x, from_y): (Vec<_>, Vec<_>) = recv_n(inbox, 400)
            .into_iter()
            .partition(|m| matches!(m, Incoming::Message { from, .. } if *from == x));
        assert_in_order(&from_x, x, 0..200);
        assert_in_order(&from_y, y, 0..200);
    }
}

#[test]
fn epoll_backend_carries_messages_and_snapshots() {
    let epoll = |c: &mut TransportConfig| c.force_epoll = true;
    let (b, mut b_inbox) = start_with(2, CLUSTER, vec![], None, epoll);
    let peers = vec![(2, vec![url(b.local_addrs()[0])])];
    let (a, _a_inbox) = start_with(1, CLUSTER, peers, None, epoll);
    send_all(&a, 2, 0..1_000);
    assert_in_order(&recv_n(&mut b_inbox, 1_000), 1, 0..1_000);
    let data: Vec<u8> = (0..(3 << 20) + 5).map(|i| (i % 251) as u8).collect();
    let mut p = a.send_snapshot(2, 4, vec![data.clone()]).unwrap();
    let got = recv_n(&mut b_inbox, 1);
    assert_eq!(
        got[0],
        Incoming::Snapshot {
            from: 1,
            group: 4,
            data: data.into()
        }
    );
    let mut r = None;
    poll_until("the snapshot verdict", || {
        r = p.try_result();
        r.is_some()
    });
    assert!(r.unwrap().is_ok());
}
