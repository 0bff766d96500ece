//! The Raft peer transport: binary frames over plain TCP between members,
//! on the peer URLs (`--listen-peer-urls`, `--initial-advertise-peer-urls`).
//!
//! # Threads
//! The transport runs on its own thread with its own compio runtime (built by
//! [`crate::rt::build_runtime`]), so that dialling, backoff and slow peers
//! never touch a core that serves clients. Its API is synchronous, and the
//! transport is `Send` and `Sync`: [`PeerTransport::send`] is a `try_send`
//! into the peer's bounded queue and returns at once. Received frames come out of the [`Inbox`], a
//! bounded tokio channel the Raft-owning shard task awaits on its own core.
//!
//! # Wire format
//! Every frame is a 14-byte header — version (u8), kind (u8), group id
//! (u64 LE), payload length (u32 LE, at most [`FRAME_BYTES_MAX`]) — then the
//! payload. A connection opens with a `Hello` each way: the dialer sends its
//! member id, the member id it wants and the cluster id; the listener checks
//! them and answers with its own `Hello`, or with a `Reject` carrying the
//! reason and closes. A bad version, an unknown kind, an oversize length, a
//! truncated frame or a frame out of place closes that connection only.
//!
//! # Sending
//! One long-lived connection per remote member carries Raft messages in the
//! order they were queued. Its queue is bounded; when full, `send` drops the
//! message and counts it (Raft retransmits). A member that cannot be reached
//! is redialled with capped exponential backoff and jitter; its queue fills
//! and drops while the others go on. Snapshots go on a connection of their
//! own, in chunks of [`SNAPSHOT_CHUNK_BYTES`], so heartbeats are never stuck
//! behind them, and end with a checksum the receiver verifies and
//! acknowledges.
//!
//! Payloads are opaque here: the Raft core encodes and validates them.
//! TLS for `https://` peer URLs is not implemented yet.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use compio::buf::BufResult;
use compio::io::{AsyncReadExt, AsyncWriteExt};
use compio::net::TcpStream;
use futures_util::future::{select, Either};
use tokio::sync::{mpsc, oneshot, Notify};

use crate::{membership, rt};

// ---------------------------------------------------------------- limits

/// The frame format this build speaks.
pub const FRAME_VERSION: u8 = 1;
/// Version, kind, group id, payload length.
pub const FRAME_HEADER_BYTES: usize = 14;
/// Largest frame payload. It must exceed the largest Raft message: one
/// append carries at least one entry of up to `--max-request-bytes`.
pub const FRAME_BYTES_MAX: usize = 64 << 20;
/// Snapshot payload per chunk frame.
pub const SNAPSHOT_CHUNK_BYTES: usize = 1 << 20;
/// Largest snapshot a receiver assembles.
pub const SNAPSHOT_BYTES_MAX: u64 = 8 << 30;
/// Messages queued per remote member before `send` drops (etcd's stream
/// buffer holds 4096).
pub const PEER_QUEUE_MESSAGES_MAX: usize = 4096;
/// Received messages waiting for the Raft owner before new ones are dropped
/// (etcd's receive buffer holds 4096).
pub const INBOX_MESSAGES_MAX: usize = 4096;
/// Snapshots being sent at once by one transport.
pub const SNAPSHOTS_IN_FLIGHT_MAX: usize = 4;
/// Bytes gathered into one socket write from a peer's queue.
pub const WRITE_BATCH_BYTES_MAX: usize = 256 << 10;
/// Read size of a connection's frame reader.
pub const READ_BUFFER_BYTES: usize = 64 << 10;
/// Longest reason text kept from a peer's `Reject` frame or refused
/// `SnapshotAck`; the rest is cut before it reaches errors and logs.
pub const REJECT_REASON_BYTES_MAX: usize = 1024;
/// Control commands (new peers, snapshots) waiting for the transport thread.
pub const CONTROL_COMMANDS_MAX: usize = 1024;

/// Dial timeout per URL (etcd's peer dial timeout is 1 s).
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// Both sides' wait for the other's `Hello`.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// A socket write (one batch of messages, one snapshot chunk, a handshake
/// frame) that has not finished after this long closes the connection
/// (etcd's `ConnWriteTimeout`, a deadline per write).
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// First redial delay after a failure.
pub const BACKOFF_INITIAL: Duration = Duration::from_millis(50);
/// Redial delay cap. Each delay is picked between half of the capped
/// exponential delay and all of it.
pub const BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long a receiver waits for room in the inbox for a whole snapshot.
pub const SNAPSHOT_DELIVER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a sender waits for the receiver's verdict on a snapshot.
pub const SNAPSHOT_ACK_TIMEOUT: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------- frames

/// What a frame carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// Handshake: from, to and cluster id, 8 bytes LE each.
    Hello = 1,
    /// One Raft message for `group`.
    Message = 2,
    /// Part of a snapshot for `group`.
    SnapshotChunk = 3,
    /// End of a snapshot: total bytes (u64 LE) and crc32c (u32 LE).
    SnapshotEnd = 4,
    /// A receiver's verdict on a snapshot: status u8 (0 = delivered), then
    /// the reason as text.
    SnapshotAck = 5,
    /// The listener refuses the connection; the payload says why.
    Reject = 6,
}

impl FrameKind {
    fn from_u8(b: u8) -> Option<FrameKind> {
        Some(match b {
            1 => FrameKind::Hello,
            2 => FrameKind::Message,
            3 => FrameKind::SnapshotChunk,
            4 => FrameKind::SnapshotEnd,
            5 => FrameKind::SnapshotAck,
            6 => FrameKind::Reject,
            _ => return None,
        })
    }
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    pub kind: FrameKind,
    pub group: u64,
    pub len: usize,
}

/// Why bytes on a peer connection are not acceptable.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    BadVersion(u8),
    BadKind(u8),
    TooLarge {
        len: u64,
    },
    /// The connection ended inside a frame.
    Truncated,
    BadHello,
    /// A frame that has no place at this point of the conversation.
    Unexpected(FrameKind),
    BadSnapshot(&'static str),
}

impl std::fmt::Display for FrameError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FrameError::BadVersion(v) => write!(f, "unsupported frame version {v}"),
            FrameError::BadKind(k) => write!(f, "unknown frame kind {k}"),
            FrameError::TooLarge { len } => {
                write!(
                    f,
                    "frame of {len} bytes exceeds the limit of {FRAME_BYTES_MAX}"
                )
            }
            FrameError::Truncated => f.write_str("connection closed inside a frame"),
            FrameError::BadHello => f.write_str("malformed hello"),
            FrameError::Unexpected(k) => write!(f, "unexpected {k:?} frame"),
            FrameError::BadSnapshot(why) => write!(f, "bad snapshot: {why}"),
        }
    }
}

impl std::error::Error for FrameError {}

/// Decodes a frame header, checking version, kind and length.
pub fn decode_header(b: &[u8; FRAME_HEADER_BYTES]) -> Result<FrameHeader, FrameError> {
    if b[0] != FRAME_VERSION {
        return Err(FrameError::BadVersion(b[0]));
    }
    let kind = FrameKind::from_u8(b[1]).ok_or(FrameError::BadKind(b[1]))?;
    let group = u64::from_le_bytes(b[2..10].try_into().expect("8 bytes"));
    let len = u32::from_le_bytes(b[10..14].try_into().expect("4 bytes")) as usize;
    if len > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge { len: len as u64 });
    }
    Ok(FrameHeader { kind, group, len })
}

/// Appends one frame to `out`.
pub fn encode_frame(
    kind: FrameKind,
    group: u64,
    payload: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), FrameError> {
    if payload.len() > FRAME_BYTES_MAX {
        return Err(FrameError::TooLarge {
            len: payload.len() as u64,
        });
    }
    out.push(FRAME_VERSION);
    out.push(kind as u8);
    out.extend_from_slice(&group.to_le_bytes());
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(payload);
    Ok(())
}

/// The handshake both sides send.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub from: u64,
    pub to: u64,
    pub cluster_id: u64,
}

impl Hello {
    pub const BYTES: usize = 24;

    pub fn encode(&self) -> [u8; Hello::BYTES] {
        let mut b = [0u8; Hello::BYTES];
        b[..8].copy_from_slice(&self.from.to_le_bytes());
        b[8..16].copy_from_slice(&self.to.to_le_bytes());
        b[16..].copy_from_slice(&self.cluster_id.to_le_bytes());
        b
    }

    pub fn decode(b: &[u8]) -> Result<Hello, FrameError> {
        if b.len() != Hello::BYTES {
            return Err(FrameError::BadHello);
        }
        let word = |i: usize| u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"));
        Ok(Hello {
            from: word(0),
            to: word(8),
            cluster_id: word(16),
        })
    }
}

/// A received frame. The payload borrows the reader's buffer until the next
/// read, so a frame that is consumed in place (a hello, a snapshot chunk, an
/// acknowledgement) costs no copy.
#[derive(Debug)]
struct Frame<'a> {
    kind: FrameKind,
    group: u64,
    payload: &'a [u8],
}

#[derive(Debug)]
enum ConnError {
    Io(std::io::Error),
    Frame(FrameError),
    /// The peer closed the connection where a frame was required.
    Closed,
    Timeout(&'static str),
    /// Writing or mapping a received snapshot's spool file failed.
    Spool(std::io::Error),
}

impl From<FrameError> for ConnError {
    fn from(e: FrameError) -> Self {
        ConnError::Frame(e)
    }
}

impl std::fmt::Display for ConnError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConnError::Io(e) => write!(f, "{e}"),
            ConnError::Frame(e) => write!(f, "{e}"),
            ConnError::Closed => f.write_str("connection closed"),
            ConnError::Timeout(what) => write!(f, "timed out {what}"),
            ConnError::Spool(e) => write!(f, "snapshot spool: {e}"),
        }
    }
}

/// Reads frames from a stream through one growing buffer.
struct FrameReader {
    buf: Vec<u8>,
    /// Start of the bytes not yet handed out.
    pos: usize,
}

impl FrameReader {
    fn new() -> FrameReader {
        FrameReader {
            buf: Vec::with_capacity(READ_BUFFER_BYTES),
            pos: 0,
        }
    }

    /// The next frame; `None` on a clean end of stream between frames.
    async fn next(&mut self, stream: &TcpStream) -> Result<Option<Frame<'_>>, ConnError> {
        if self.pos == self.buf.len() {
            self.buf.clear();
            self.pos = 0;
            // Give back what one large frame needed.
            if self.buf.capacity() > 4 * READ_BUFFER_BYTES {
                self.buf.shrink_to(READ_BUFFER_BYTES);
            }
        }
        loop {
            let avail = self.buf.len() - self.pos;
            let need = if avail >= FRAME_HEADER_BYTES {
                let head: &[u8; FRAME_HEADER_BYTES] = self.buf
                    [self.pos..self.pos + FRAME_HEADER_BYTES]
                    .try_into()
                    .expect("header bytes");
                let h = decode_header(head)?;
                let total = FRAME_HEADER_BYTES + h.len;
                if avail >= total {
                    let start = self.pos + FRAME_HEADER_BYTES;
                    self.pos += total;
                    return Ok(Some(Frame {
                        kind: h.kind,
                        group: h.group,
                        payload: &self.buf[start..self.pos],
                    }));
                }
                total - avail
            } else {
                FRAME_HEADER_BYTES - avail
            };
            if self.pos > 0 {
                self.buf.drain(..self.pos);
                self.pos = 0;
            }
            // Grow towards a large frame gradually, so a lying header costs
            // no more memory than the bytes that really arrive.
            self.buf
                .reserve(need.min(self.buf.len().max(READ_BUFFER_BYTES)));
            let mut s = stream;
            let BufResult(r, buf) = s.append(std::mem::take(&mut self.buf)).await;
            self.buf = buf;
            match r {
                Ok(0) if self.buf.is_empty() => return Ok(None),
                Ok(0) => return Err(ConnError::Frame(FrameError::Truncated)),
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(ConnError::Io(e)),
            }
        }
    }

    /// The next frame within `limit`, where the conversation requires one:
    /// the end of the stream is an error here.
    async fn expect(
        &mut self,
        stream: &TcpStream,
        limit: Duration,
        waiting_for: &'static str,
    ) -> Result<Frame<'_>, ConnError> {
        match compio::time::timeout(limit, self.next(stream)).await {
            Ok(Ok(Some(f))) => Ok(f),
            Ok(Ok(None)) => Err(ConnError::Closed),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(ConnError::Timeout(waiting_for)),
        }
    }
}

/// A reason text sent by a peer, cut to [`REJECT_REASON_BYTES_MAX`].
fn reason_text(b: &[u8]) -> String {
    String::from_utf8_lossy(&b[..b.len().min(REJECT_REASON_BYTES_MAX)]).into_owned()
}

async fn write_all(stream: &TcpStream, buf: Vec<u8>) -> (Result<(), ConnError>, Vec<u8>) {
    let mut s = stream;
    match compio::time::timeout(WRITE_TIMEOUT, s.write_all(buf)).await {
        Ok(BufResult(Ok(()), buf)) => (Ok(()), buf),
        Ok(BufResult(Err(e), buf)) => (Err(ConnError::Io(e)), buf),
        Err(_) => (Err(ConnError::Timeout("writing")), Vec::new()),
    }
}

async fn write_frame(
    stream: &TcpStream,
    kind: FrameKind,
    group: u64,
    payload: &[u8],
) -> Result<(), ConnError> {
    let mut buf = Vec::with_capacity(FRAME_HEADER_BYTES + payload.len());
    encode_frame(kind, group, payload, &mut buf)?;
    write_all(stream, buf).await.0
}

// ---------------------------------------------------------------- API types

/// What the transport hands to the Raft owner.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    Message {
        from: u64,
        group: u64,
        payload: Vec<u8>,
    },
    /// A complete snapshot whose length and checksum were verified.
    Snapshot {
        from: u64,
        group: u64,
        data: SnapshotBytes,
    },
}

/// A received snapshot's bytes: spooled to a file in the transport's spool
/// directory and mapped read-only (the file is unlinked once mapped, so it
/// goes with the map on every path), or held in memory by a transport that
/// has no spool directory.
pub struct SnapshotBytes(SnapshotStore);

enum SnapshotStore {
    Memory(Vec<u8>),
    Spooled(memmap2::Mmap),
}

impl std::ops::Deref for SnapshotBytes {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            SnapshotStore::Memory(v) => v,
            SnapshotStore::Spooled(map) => map,
        }
    }
}

impl From<Vec<u8>> for SnapshotBytes {
    fn from(v: Vec<u8>) -> Self {
        SnapshotBytes(SnapshotStore::Memory(v))
    }
}

impl SnapshotBytes {
    /// Whether the bytes live in a spool file, not in memory.
    pub fn is_spooled(&self) -> bool {
        matches!(self.0, SnapshotStore::Spooled(_))
    }
}

impl std::fmt::Debug for SnapshotBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "SnapshotBytes({} bytes{})",
            self.len(),
            if self.is_spooled() { ", spooled" } else { "" }
        )
    }
}

impl PartialEq for SnapshotBytes {
    fn eq(&self, other: &Self) -> bool {
        **self == **other
    }
}

impl Eq for SnapshotBytes {}

/// Names of spool files: `<prefix><process token>-<sequence>`.
pub const SNAPSHOT_SPOOL_PREFIX: &str = "snapshot-spool-";
/// Free space a spool leaves on its filesystem beyond twice what it holds
/// (the spool, then the installed copy of it), in bytes. A transfer that
/// would eat into it is refused; the leader tries again later.
pub const SPOOL_FREE_RESERVE_BYTES: u64 = 64 << 20;

/// The receiving end: await `recv()` on a compio task, or `try_recv()`.
pub type Inbox = mpsc::Receiver<Incoming>;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// The peer's queue is full; the message was dropped and counted.
    QueueFull,
    UnknownPeer,
    TooLarge {
        len: usize,
    },
    /// The transport thread is gone.
    Stopped,
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::QueueFull => f.write_str("peer queue full; message dropped"),
            SendError::UnknownPeer => f.write_str("unknown peer"),
            SendError::TooLarge { len } => {
                write!(f, "message of {len} bytes exceeds {FRAME_BYTES_MAX}")
            }
            SendError::Stopped => f.write_str("peer transport stopped"),
        }
    }
}

impl std::error::Error for SendError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerError {
    AlreadyKnown(u64),
    UnknownPeer(u64),
    /// The local member is not a peer of itself.
    LocalMember,
    BadUrl(String),
    Stopped,
}

impl std::fmt::Display for PeerError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PeerError::AlreadyKnown(id) => write!(f, "peer {id:x} already added"),
            PeerError::UnknownPeer(id) => write!(f, "unknown peer {id:x}"),
            PeerError::LocalMember => f.write_str("the local member cannot be its own peer"),
            PeerError::BadUrl(why) => write!(f, "bad peer URL: {why}"),
            PeerError::Stopped => f.write_str("peer transport stopped"),
        }
    }
}

impl std::error::Error for PeerError {}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SnapshotError {
    UnknownPeer,
    TooManyInFlight,
    /// No URL of the peer accepted the connection and handshake.
    Connect(String),
    Io(String),
    /// The receiver refused the snapshot or could not deliver it.
    Rejected(String),
    TooLarge,
    Stopped,
}

impl std::fmt::Display for SnapshotError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SnapshotError::UnknownPeer => f.write_str("unknown peer"),
            SnapshotError::TooManyInFlight => {
                write!(f, "{SNAPSHOTS_IN_FLIGHT_MAX} snapshots already being sent")
            }
            SnapshotError::Connect(e) => write!(f, "cannot reach peer: {e}"),
            SnapshotError::Io(e) => write!(f, "snapshot stream failed: {e}"),
            SnapshotError::Rejected(e) => write!(f, "peer refused snapshot: {e}"),
            SnapshotError::TooLarge => write!(f, "snapshot exceeds {SNAPSHOT_BYTES_MAX} bytes"),
            SnapshotError::Stopped => f.write_str("peer transport stopped"),
        }
    }
}

impl std::error::Error for SnapshotError {}

/// A delivered snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SnapshotSent {
    pub bytes: u64,
}

/// The outcome of [`PeerTransport::send_snapshot`], as a future or polled.
pub struct SnapshotPending(oneshot::Receiver<Result<SnapshotSent, SnapshotError>>);

impl SnapshotPending {
    /// `None` while the snapshot is still being sent.
    pub fn try_result(&mut self) -> Option<Result<SnapshotSent, SnapshotError>> {
        match self.0.try_recv() {
            Ok(r) => Some(r),
            Err(oneshot::error::TryRecvError::Empty) => None,
            Err(oneshot::error::TryRecvError::Closed) => Some(Err(SnapshotError::Stopped)),
        }
    }
}

impl Future for SnapshotPending {
    type Output = Result<SnapshotSent, SnapshotError>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|r| r.unwrap_or(Err(SnapshotError::Stopped)))
    }
}

/// One remote member's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerStats {
    /// Messages written to the connection.
    pub sent: u64,
    /// Messages refused by `send` because the queue was full.
    pub dropped: u64,
    /// Messages lost with a connection that broke while writing them.
    pub failed: u64,
    /// Messages waiting in the queue.
    pub queued: usize,
    pub connected: bool,
    /// Since when the current connection is up (etcd's `ActiveSince`).
    pub connected_since: Option<Instant>,
    /// Successful handshakes so far.
    pub connects: u64,
    /// Dials or handshakes that failed, including refusals.
    pub dial_failures: u64,
    /// Handshakes the peer refused (cluster id or member id mismatch).
    pub rejected: u64,
    pub snapshots_sent: u64,
    pub snapshots_failed: u64,
}

/// The receiving side's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TransportStats {
    /// Connections that passed the handshake.
    pub accepted: u64,
    /// Handshakes refused (cluster id or member id mismatch).
    pub rejected: u64,
    /// Connections closed for a bad frame.
    pub bad_frames: u64,
    /// Messages put into the inbox.
    pub received: u64,
    /// Messages dropped because the inbox was full or closed.
    pub inbox_dropped: u64,
    pub snapshots_received: u64,
}

/// How a transport starts.
#[derive(Debug, Clone)]
pub struct TransportConfig {
    pub local_id: u64,
    pub cluster_id: u64,
    /// Addresses to accept peers on; port 0 picks a free one.
    pub listen: Vec<SocketAddr>,
    /// Remote members and their peer URLs.
    pub peers: Vec<(u64, Vec<String>)>,
    pub peer_queue_messages_max: usize,
    pub inbox_messages_max: usize,
    pub force_epoll: bool,
    /// Where received snapshots are written as they arrive (the server
    /// empties it of earlier processes' files with [`clear_spool`] once it
    /// holds the data directory's lock). `None` assembles them in memory.
    pub snapshot_spool_dir: Option<std::path::PathBuf>,
    /// See [`SPOOL_FREE_RESERVE_BYTES`].
    pub spool_free_reserve_bytes: u64,
}

impl TransportConfig {
    pub fn new(local_id: u64, cluster_id: u64, peers: Vec<(u64, Vec<String>)>) -> Self {
        TransportConfig {
            local_id,
            cluster_id,
            listen: Vec::new(),
            peers,
            peer_queue_messages_max: PEER_QUEUE_MESSAGES_MAX,
            inbox_messages_max: INBOX_MESSAGES_MAX,
            force_epoll: false,
            snapshot_spool_dir: None,
            spool_free_reserve_bytes: SPOOL_FREE_RESERVE_BYTES,
        }
    }
}

// ---------------------------------------------------------------- state

struct Outgoing {
    group: u64,
    payload: Vec<u8>,
}

#[derive(Default)]
struct Counter(AtomicU64);

impl Counter {
    fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

struct PeerState {
    id: u64,
    urls: Mutex<Vec<String>>,
    /// Wakes the peer's task: removal or new URLs.
    wake: Notify,
    stopped: AtomicBool,
    connected_since: Mutex<Option<Instant>>,
    sent: Counter,
    dropped: Counter,
    failed: Counter,
    connects: Counter,
    dial_failures: Counter,
    rejected: Counter,
    snapshots_sent: Counter,
    snapshots_failed: Counter,
}

impl PeerState {
    fn urls(&self) -> Vec<String> {
        self.urls.lock().expect("urls lock").clone()
    }
    fn has_url(&self, url: &str) -> bool {
        self.urls
            .lock()
            .expect("urls lock")
            .iter()
            .any(|u| u == url)
    }
    fn is_stopped(&self) -> bool {
        self.stopped.load(Ordering::Acquire)
    }
    fn stop(&self) {
        self.stopped.store(true, Ordering::Release);
        self.wake.notify_one();
    }
    fn set_connected(&self, up: bool) {
        *self.connected_since.lock().expect("state lock") = up.then(Instant::now);
    }
}

struct PeerEntry {
    queue: mpsc::Sender<Outgoing>,
    state: Arc<PeerState>,
}

struct Shared {
    /// 0 (with `cluster_id` 0) until a member joining a running cluster
    /// learns its ids from the first peer that dials it.
    local_id: AtomicU64,
    cluster_id: AtomicU64,
    peer_queue_messages_max: usize,
    peers: RwLock<HashMap<u64, PeerEntry>>,
    snapshots_in_flight: AtomicUsize,
    accepted: Counter,
    rejected: Counter,
    bad_frames: Counter,
    received: Counter,
    inbox_dropped: Counter,
    snapshots_received: Counter,
}

struct SnapshotJob {
    state: Arc<PeerState>,
    group: u64,
    chunks: Box<dyn Iterator<Item = Vec<u8>> + Send>,
    done: oneshot::Sender<Result<SnapshotSent, SnapshotError>>,
}

enum Control {
    Peer {
        state: Arc<PeerState>,
        queue: mpsc::Receiver<Outgoing>,
    },
    Snapshot(SnapshotJob),
}

/// State the transport thread's tasks share.
struct Ctx {
    shared: Arc<Shared>,
    inbox: mpsc::Sender<Incoming>,
    /// See [`TransportConfig::snapshot_spool_dir`].
    spool_dir: Option<std::path::PathBuf>,
    spool_free_reserve_bytes: u64,
}

impl Shared {
    fn local_id(&self) -> u64 {
        self.local_id.load(Ordering::Acquire)
    }

    fn cluster_id(&self) -> u64 {
        self.cluster_id.load(Ordering::Acquire)
    }

    /// A transport started without ids (a member joining a running
    /// cluster) takes them from the first peer that dials it: the leader
    /// dials a new member once its MemberAdd is applied, naming the new
    /// member's id and the cluster's.
    fn adopt(&self, hello: &Hello) {
        if hello.to != 0
            && hello.cluster_id != 0
            && self
                .cluster_id
                .compare_exchange(0, hello.cluster_id, Ordering::AcqRel, Ordering::Acquire)
                .is_ok()
        {
            self.local_id.store(hello.to, Ordering::Release);
            tracing::info!(
                "joined cluster {:x} as member {:x} (learned from peer {:x})",
                hello.cluster_id,
                hello.to,
                hello.from
            );
        }
    }
}

// ---------------------------------------------------------------- transport

/// The peer transport. Dropping it stops its thread and closes every
/// connection and listener.
pub struct PeerTransport {
    shared: Arc<Shared>,
    control: Option<mpsc::Sender<Control>>,
    thread: Option<std::thread::JoinHandle<()>>,
    local_addrs: Vec<SocketAddr>,
}

impl PeerTransport {
    /// Binds the listeners, starts the transport thread and dials every
    /// peer. Returns the transport and the inbox of received frames.
    pub fn start(config: TransportConfig) -> std::io::Result<(PeerTransport, Inbox)> {
        assert!(config.peer_queue_messages_max >= 1, "peer queue capacity");
        assert!(config.inbox_messages_max >= 1, "inbox capacity");
        let invalid = |e: PeerError| std::io::Error::new(std::io::ErrorKind::InvalidInput, e);
        let mut listeners = Vec::new();
        let mut local_addrs = Vec::new();
        for addr in &config.listen {
            let l = bind(*addr)?;
            local_addrs.push(l.local_addr()?);
            listeners.push(l);
        }
        let shared = Arc::new(Shared {
            local_id: AtomicU64::new(config.local_id),
            cluster_id: AtomicU64::new(config.cluster_id),
            peer_queue_messages_max: config.peer_queue_messages_max,
            peers: RwLock::new(HashMap::new()),
            snapshots_in_flight: AtomicUsize::new(0),
            accepted: Counter::default(),
            rejected: Counter::default(),
            bad_frames: Counter::default(),
            received: Counter::default(),
            inbox_dropped: Counter::default(),
            snapshots_received: Counter::default(),
        });
        let (control_tx, control_rx) = mpsc::channel(CONTROL_COMMANDS_MAX);
        let (inbox_tx, inbox_rx) = mpsc::channel(config.inbox_messages_max);
        let mut transport = PeerTransport {
            shared: shared.clone(),
            control: Some(control_tx),
            thread: None,
            local_addrs,
        };
        for (id, urls) in config.peers {
            transport.add_peer(id, urls).map_err(invalid)?;
        }
        let (ready_tx, ready_rx) = std::sync::mpsc::channel::<std::io::Result<()>>();
        let force_epoll = config.force_epoll;
        let thread = std::thread::Builder::new()
            .name("kvik-peer".into())
            .spawn(move || {
                let runtime = match rt::build_runtime(force_epoll) {
                    Ok((r, backend)) => {
                        tracing::info!("peer transport: I/O backend: {backend}");
                        r
                    }
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                runtime.block_on(transport_main(
                    Ctx {
                        shared,
                        inbox: inbox_tx,
                        spool_dir: config.snapshot_spool_dir.clone(),
                        spool_free_reserve_bytes: config.spool_free_reserve_bytes,
                    },
                    listeners,
                    control_rx,
                    ready_tx,
                ));
            })?;
        transport.thread = Some(thread);
        match ready_rx.recv() {
            Ok(Ok(())) => Ok((transport, inbox_rx)),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(std::io::Error::other("peer transport thread stopped")),
        }
    }

    pub fn local_id(&self) -> u64 {
        self.shared.local_id()
    }

    pub fn cluster_id(&self) -> u64 {
        self.shared.cluster_id()
    }

    /// The bound listen addresses, in the order of `TransportConfig::listen`.
    pub fn local_addrs(&self) -> &[SocketAddr] {
        &self.local_addrs
    }

    /// Queues one Raft message for `to`. Never blocks: a full queue drops
    /// the message, counts it and answers `QueueFull`.
    pub fn send(&self, to: u64, group: u64, payload: Vec<u8>) -> Result<(), SendError> {
        if payload.len() > FRAME_BYTES_MAX {
            return Err(SendError::TooLarge { len: payload.len() });
        }
        let peers = self.shared.peers.read().expect("peers lock");
        let entry = peers.get(&to).ok_or(SendError::UnknownPeer)?;
        match entry.queue.try_send(Outgoing { group, payload }) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => {
                entry.state.dropped.add(1);
                Err(SendError::QueueFull)
            }
            Err(mpsc::error::TrySendError::Closed(_)) => Err(SendError::Stopped),
        }
    }

    /// Starts dialling a new remote member.
    pub fn add_peer(&self, id: u64, urls: Vec<String>) -> Result<(), PeerError> {
        if id == self.shared.local_id() {
            return Err(PeerError::LocalMember);
        }
        check_urls(&urls)?;
        let control = self.control.as_ref().ok_or(PeerError::Stopped)?;
        let mut peers = self.shared.peers.write().expect("peers lock");
        if peers.contains_key(&id) {
            return Err(PeerError::AlreadyKnown(id));
        }
        let state = Arc::new(PeerState {
            id,
            urls: Mutex::new(urls),
            wake: Notify::new(),
            stopped: AtomicBool::new(false),
            connected_since: Mutex::new(None),
            sent: Counter::default(),
            dropped: Counter::default(),
            failed: Counter::default(),
            connects: Counter::default(),
            dial_failures: Counter::default(),
            rejected: Counter::default(),
            snapshots_sent: Counter::default(),
            snapshots_failed: Counter::default(),
        });
        let (tx, rx) = mpsc::channel(self.shared.peer_queue_messages_max);
        control
            .try_send(Control::Peer {
                state: state.clone(),
                queue: rx,
            })
            .map_err(|_| PeerError::Stopped)?;
        peers.insert(id, PeerEntry { queue: tx, state });
        Ok(())
    }

    /// Stops sending to a member: its queue is discarded and its
    /// connection closed.
    pub fn remove_peer(&self, id: u64) -> Result<(), PeerError> {
        let entry = self
            .shared
            .peers
            .write()
            .expect("peers lock")
            .remove(&id)
            .ok_or(PeerError::UnknownPeer(id))?;
        entry.state.stop();
        Ok(())
    }

    /// New peer URLs for a member. A connection to a URL no longer listed
    /// is closed and the member redialled at once.
    pub fn update_peer_urls(&self, id: u64, urls: Vec<String>) -> Result<(), PeerError> {
        check_urls(&urls)?;
        let peers = self.shared.peers.read().expect("peers lock");
        let entry = peers.get(&id).ok_or(PeerError::UnknownPeer(id))?;
        *entry.state.urls.lock().expect("urls lock") = urls;
        entry.state.wake.notify_one();
        Ok(())
    }

    /// Streams a snapshot to `to` on a connection of its own. `chunks` is
    /// pulled on the transport thread, so it must not block; each item may
    /// have any size and is cut into frames of [`SNAPSHOT_CHUNK_BYTES`].
    pub fn send_snapshot<I>(
        &self,
        to: u64,
        group: u64,
        chunks: I,
    ) -> Result<SnapshotPending, SnapshotError>
    where
        I: IntoIterator<Item = Vec<u8>>,
        I::IntoIter: Send + 'static,
    {
        let control = self.control.as_ref().ok_or(SnapshotError::Stopped)?;
        let state = {
            let peers = self.shared.peers.read().expect("peers lock");
            peers
                .get(&to)
                .ok_or(SnapshotError::UnknownPeer)?
                .state
                .clone()
        };
        let in_flight = &self.shared.snapshots_in_flight;
        if in_flight.fetch_add(1, Ordering::AcqRel) >= SNAPSHOTS_IN_FLIGHT_MAX {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(SnapshotError::TooManyInFlight);
        }
        let (done, rx) = oneshot::channel();
        let job = SnapshotJob {
            state,
            group,
            chunks: Box::new(chunks.into_iter()),
            done,
        };
        if control.try_send(Control::Snapshot(job)).is_err() {
            in_flight.fetch_sub(1, Ordering::AcqRel);
            return Err(SnapshotError::Stopped);
        }
        Ok(SnapshotPending(rx))
    }

    /// A member's counters, or `None` for an unknown member.
    pub fn peer_stats(&self, id: u64) -> Option<PeerStats> {
        let peers = self.shared.peers.read().expect("peers lock");
        let e = peers.get(&id)?;
        let s = &e.state;
        let connected_since = *s.connected_since.lock().expect("state lock");
        Some(PeerStats {
            sent: s.sent.get(),
            dropped: s.dropped.get(),
            failed: s.failed.get(),
            queued: e.queue.max_capacity() - e.queue.capacity(),
            connected: connected_since.is_some(),
            connected_since,
            connects: s.connects.get(),
            dial_failures: s.dial_failures.get(),
            rejected: s.rejected.get(),
            snapshots_sent: s.snapshots_sent.get(),
            snapshots_failed: s.snapshots_failed.get(),
        })
    }

    /// Ids of the members being sent to, ascending.
    pub fn peers(&self) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .shared
            .peers
            .read()
            .expect("peers lock")
            .keys()
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    pub fn stats(&self) -> TransportStats {
        let s = &self.shared;
        TransportStats {
            accepted: s.accepted.get(),
            rejected: s.rejected.get(),
            bad_frames: s.bad_frames.get(),
            received: s.received.get(),
            inbox_dropped: s.inbox_dropped.get(),
            snapshots_received: s.snapshots_received.get(),
        }
    }
}

impl Drop for PeerTransport {
    fn drop(&mut self) {
        if std::thread::panicking() {
            // compio aborts the process when a thread that is unwinding wakes
            // a task of another runtime, which every way of stopping the
            // transport thread does. Leave it running instead, so that the
            // panic is reported rather than turned into an abort.
            std::mem::forget(self.control.take());
            self.thread = None;
            return;
        }
        for (_, e) in self.shared.peers.write().expect("peers lock").drain() {
            e.state.stop();
        }
        // Closing the control channel ends the thread's main task; dropping
        // its runtime drops every task, connection and listener.
        self.control = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn bind(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// The `host:port` to dial for a peer URL.
pub fn dial_address(url: &str) -> Result<String, PeerError> {
    let url = url.trim();
    let bad = |why: &str| PeerError::BadUrl(format!("{why}: {url}"));
    let (scheme, rest) = url.split_once("://").ok_or_else(|| bad("no scheme"))?;
    match scheme.to_ascii_lowercase().as_str() {
        "http" => {}
        "https" => return Err(bad("TLS peer URLs are not supported yet")),
        _ => return Err(bad("peer URL scheme must be http")),
    }
    let authority = rest.strip_suffix('/').unwrap_or(rest);
    if authority.contains(['/', '?', '#', '@']) {
        return Err(bad("peer URL must be http://host:port"));
    }
    // The host:port rule the member set checks peer URLs with.
    match membership::split_host_port(authority) {
        Some((host, port)) if !host.is_empty() => match port.parse::<u16>() {
            Ok(_) => Ok(authority.to_string()),
            Err(_) => Err(bad("bad port")),
        },
        _ => Err(bad("peer URL needs host:port")),
    }
}

fn check_urls(urls: &[String]) -> Result<(), PeerError> {
    if urls.is_empty() {
        return Err(PeerError::BadUrl("no peer URLs".into()));
    }
    for u in urls {
        dial_address(u)?;
    }
    Ok(())
}

// ---------------------------------------------------------------- thread

async fn transport_main(
    ctx: Ctx,
    listeners: Vec<std::net::TcpListener>,
    mut control: mpsc::Receiver<Control>,
    ready: std::sync::mpsc::Sender<std::io::Result<()>>,
) {
    let ctx = Rc::new(ctx);
    for l in listeners {
        match compio::net::TcpListener::from_std(l) {
            Ok(l) => compio::runtime::spawn(accept_loop(ctx.clone(), l)).detach(),
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        }
    }
    let _ = ready.send(Ok(()));
    while let Some(cmd) = control.recv().await {
        match cmd {
            Control::Peer { state, queue } => {
                compio::runtime::spawn(run_peer(ctx.clone(), state, queue)).detach();
            }
            Control::Snapshot(job) => {
                compio::runtime::spawn(run_snapshot(ctx.clone(), job)).detach();
            }
        }
    }
}

/// splitmix64: cheap jitter, seeded per peer.
struct Jitter(u64);

impl Jitter {
    fn new(seed: u64) -> Jitter {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() as u64)
            .unwrap_or(0);
        Jitter(seed ^ nanos.rotate_left(17))
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Exponential in the number of consecutive failures, capped, then a
    /// uniform pick in [half, whole].
    fn backoff(&mut self, failures: u32) -> Duration {
        let exp = BACKOFF_INITIAL.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
        let full = exp.min(BACKOFF_MAX).as_micros() as u64;
        let half = full / 2;
        Duration::from_micros(half + self.next() % (full - half + 1))
    }
}

/// A connection that passed the handshake.
struct Conn {
    stream: TcpStream,
    reader: FrameReader,
    url: String,
}

#[derive(Debug)]
enum DialError {
    Failed(String),
    Rejected(String),
}

/// Dials the peer's URLs in turn, starting at `first`, and shakes hands.
async fn dial(ctx: &Ctx, state: &PeerState, first: usize) -> Result<Conn, DialError> {
    let urls = state.urls();
    let mut last = DialError::Failed("no peer URLs".into());
    for i in 0..urls.len() {
        let url = &urls[(first + i) % urls.len()];
        match dial_one(ctx, state.id, url).await {
            Ok(conn) => return Ok(conn),
            Err(e @ DialError::Rejected(_)) => return Err(e),
            Err(e) => last = e,
        }
    }
    Err(last)
}

async fn dial_one(ctx: &Ctx, peer: u64, url: &str) -> Result<Conn, DialError> {
    let failed =
        |what: &str, e: &dyn std::fmt::Display| DialError::Failed(format!("{what} {url}: {e}"));
    let addr = dial_address(url).map_err(|e| failed("bad URL", &e))?;
    let stream =
        match compio::time::timeout(CONNECT_TIMEOUT, TcpStream::connect(addr.as_str())).await {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => return Err(failed("dial", &e)),
            Err(_) => return Err(failed("dial", &"timed out")),
        };
    let _ = stream.set_nodelay(true);
    let hello = Hello {
        from: ctx.shared.local_id(),
        to: peer,
        cluster_id: ctx.shared.cluster_id(),
    };
    write_frame(&stream, FrameKind::Hello, 0, &hello.encode())
        .await
        .map_err(|e| failed("handshake with", &e))?;
    let mut reader = FrameReader::new();
    let reply = reader
        .expect(&stream, HANDSHAKE_TIMEOUT, "waiting for the hello")
        .await
        .map_err(|e| failed("handshake with", &e))?;
    let got = match reply.kind {
        FrameKind::Hello => Hello::decode(reply.payload),
        FrameKind::Reject => return Err(DialError::Rejected(reason_text(reply.payload))),
        other => Err(FrameError::Unexpected(other)),
    }
    .map_err(|e| failed("handshake with", &e))?;
    if got.cluster_id != ctx.shared.cluster_id() {
        return Err(DialError::Rejected(format!(
            "remote cluster ID mismatch: local {:x}, remote {:x}",
            ctx.shared.cluster_id(),
            got.cluster_id
        )));
    }
    if got.from != peer || got.to != ctx.shared.local_id() {
        return Err(DialError::Rejected(format!(
            "member ID mismatch: expected {peer:x}, reached {:x}",
            got.from
        )));
    }
    Ok(Conn {
        stream,
        reader,
        url: url.to_string(),
    })
}

enum PumpEnd {
    /// Removed from the transport, or the transport stopped.
    Stopped,
    /// The connected URL is no longer one of the peer's.
    UrlsChanged,
    Broken(String),
}

/// Keeps one member connected and drains its queue into the connection.
async fn run_peer(ctx: Rc<Ctx>, state: Arc<PeerState>, mut queue: mpsc::Receiver<Outgoing>) {
    let mut jitter = Jitter::new(ctx.shared.local_id() ^ state.id.rotate_left(32));
    let mut failures: u32 = 0;
    let mut url_index = 0usize;
    let mut last_error: Option<String> = None;
    loop {
        if state.is_stopped() {
            return;
        }
        let wake = state.wake.notified();
        let dialled = {
            let dial = pin!(dial(&ctx, &state, url_index));
            match select(dial, pin!(wake)).await {
                Either::Left((r, _)) => Some(r),
                Either::Right(_) => None, // removed or new URLs: start over
            }
        };
        match dialled {
            None => continue,
            Some(Ok(conn)) => {
                failures = 0;
                last_error = None;
                state.connects.add(1);
                state.set_connected(true);
                tracing::info!(
                    "peer {:x}: connected at {} (member {:x}, cluster {:x})",
                    state.id,
                    conn.url,
                    ctx.shared.local_id(),
                    ctx.shared.cluster_id()
                );
                let end = pump(conn, &state, &mut queue).await;
                state.set_connected(false);
                match end {
                    PumpEnd::Stopped => return,
                    PumpEnd::UrlsChanged => {
                        tracing::info!("peer {:x}: peer URLs changed; redialling", state.id);
                        continue;
                    }
                    PumpEnd::Broken(e) => {
                        tracing::warn!("peer {:x}: lost connection: {e}", state.id);
                        failures = 1;
                    }
                }
            }
            Some(Err(e)) => {
                state.dial_failures.add(1);
                failures = failures.saturating_add(1);
                url_index = url_index.wrapping_add(1);
                let (text, refused) = match e {
                    DialError::Rejected(reason) => (format!("refused: {reason}"), true),
                    DialError::Failed(e) => (e, false),
                };
                if refused {
                    state.rejected.add(1);
                }
                // Log once per distinct failure, not once per retry.
                if last_error.as_deref() != Some(text.as_str()) {
                    if refused {
                        tracing::error!("peer {:x}: {text}", state.id);
                    } else {
                        tracing::warn!("peer {:x}: cannot connect: {text}", state.id);
                    }
                    last_error = Some(text);
                }
            }
        }
        let delay = jitter.backoff(failures);
        let wake = state.wake.notified();
        let _ = select(pin!(compio::time::sleep(delay)), pin!(wake)).await;
    }
}

/// Writes queued messages to the connection in batches until it breaks,
/// the peer is removed, or its URLs change away from this connection.
async fn pump(conn: Conn, state: &PeerState, queue: &mut mpsc::Receiver<Outgoing>) -> PumpEnd {
    let Conn {
        stream,
        mut reader,
        url,
    } = conn;
    // The listener sends nothing after its hello; a read that completes
    // means the connection is gone (or the peer misbehaves).
    let watch = async {
        match reader.next(&stream).await {
            Ok(None) => "closed by peer".to_string(),
            Ok(Some(f)) => format!("unexpected {:?} frame from peer", f.kind),
            Err(e) => e.to_string(),
        }
    };
    let write = async {
        let mut batch: Vec<u8> = Vec::with_capacity(WRITE_BATCH_BYTES_MAX);
        loop {
            if state.is_stopped() {
                return PumpEnd::Stopped;
            }
            let wake = state.wake.notified();
            let first = match select(pin!(queue.recv()), pin!(wake)).await {
                Either::Left((Some(m), _)) => m,
                Either::Left((None, _)) => return PumpEnd::Stopped,
                Either::Right(_) => {
                    if state.is_stopped() {
                        return PumpEnd::Stopped;
                    }
                    if !state.has_url(&url) {
                        return PumpEnd::UrlsChanged;
                    }
                    continue;
                }
            };
            batch.clear();
            let mut n = 1u64;
            encode_frame(FrameKind::Message, first.group, &first.payload, &mut batch)
                .expect("checked by send");
            while batch.len() < WRITE_BATCH_BYTES_MAX {
                match queue.try_recv() {
                    Ok(m) => {
                        encode_frame(FrameKind::Message, m.group, &m.payload, &mut batch)
                            .expect("checked by send");
                        n += 1;
                    }
                    Err(_) => break,
                }
            }
            let (r, buf) = write_all(&stream, std::mem::take(&mut batch)).await;
            batch = buf;
            // Give back what one large message needed, as the reader does.
            if batch.capacity() > 4 * WRITE_BATCH_BYTES_MAX {
                batch = Vec::with_capacity(WRITE_BATCH_BYTES_MAX);
            }
            match r {
                Ok(()) => state.sent.add(n),
                Err(e) => {
                    state.failed.add(n);
                    return PumpEnd::Broken(e.to_string());
                }
            }
        }
    };
    let end = match select(pin!(watch), pin!(write)).await {
        Either::Left((why, _)) => PumpEnd::Broken(why),
        Either::Right((end, _)) => end,
    };
    end
}

/// Releases a snapshot slot however the sending task ends.
struct InFlightSlot(Arc<Shared>);

impl Drop for InFlightSlot {
    fn drop(&mut self) {
        self.0.snapshots_in_flight.fetch_sub(1, Ordering::AcqRel);
    }
}

async fn run_snapshot(ctx: Rc<Ctx>, job: SnapshotJob) {
    let _slot = InFlightSlot(ctx.shared.clone());
    let SnapshotJob {
        state,
        group,
        chunks,
        done,
    } = job;
    let result = stream_snapshot(&ctx, &state, group, chunks).await;
    match &result {
        Ok(sent) => {
            state.snapshots_sent.add(1);
            tracing::info!(
                "peer {:x}: sent snapshot of group {group} ({} bytes)",
                state.id,
                sent.bytes
            );
        }
        Err(e) => {
            state.snapshots_failed.add(1);
            tracing::warn!("peer {:x}: snapshot of group {group} failed: {e}", state.id);
        }
    }
    let _ = done.send(result);
}

async fn stream_snapshot(
    ctx: &Ctx,
    state: &PeerState,
    group: u64,
    chunks: Box<dyn Iterator<Item = Vec<u8>> + Send>,
) -> Result<SnapshotSent, SnapshotError> {
    let Conn {
        stream, mut reader, ..
    } = dial(ctx, state, 0).await.map_err(|e| match e {
        DialError::Failed(e) => SnapshotError::Connect(e),
        DialError::Rejected(e) => SnapshotError::Rejected(e),
    })?;
    let io = |e: ConnError| SnapshotError::Io(e.to_string());
    let mut total: u64 = 0;
    let mut crc: u32 = 0;
    let mut buf: Vec<u8> = Vec::with_capacity(FRAME_HEADER_BYTES + SNAPSHOT_CHUNK_BYTES);
    for chunk in chunks {
        for part in chunk.chunks(SNAPSHOT_CHUNK_BYTES) {
            total += part.len() as u64;
            if total > SNAPSHOT_BYTES_MAX {
                return Err(SnapshotError::TooLarge);
            }
            crc = crc32c::crc32c_append(crc, part);
            buf.clear();
            encode_frame(FrameKind::SnapshotChunk, group, part, &mut buf).expect("chunk size");
            let (r, b) = write_all(&stream, std::mem::take(&mut buf)).await;
            buf = b;
            r.map_err(io)?;
        }
        rt::yield_now().await;
    }
    let mut end = Vec::with_capacity(12);
    end.extend_from_slice(&total.to_le_bytes());
    end.extend_from_slice(&crc.to_le_bytes());
    write_frame(&stream, FrameKind::SnapshotEnd, group, &end)
        .await
        .map_err(io)?;
    let ack = reader
        .expect(&stream, SNAPSHOT_ACK_TIMEOUT, "waiting for the verdict")
        .await
        .map_err(io)?;
    match (ack.kind, ack.payload.split_first()) {
        (FrameKind::SnapshotAck, Some((0, _))) => Ok(SnapshotSent { bytes: total }),
        (FrameKind::SnapshotAck, Some((_, reason))) => {
            Err(SnapshotError::Rejected(reason_text(reason)))
        }
        (kind, _) => Err(io(FrameError::Unexpected(kind).into())),
    }
}

// ---------------------------------------------------------------- receiving

async fn accept_loop(ctx: Rc<Ctx>, listener: compio::net::TcpListener) {
    loop {
        match listener.accept().await {
            Ok((stream, addr)) => {
                compio::runtime::spawn(serve_conn(ctx.clone(), stream, addr)).detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("peer listener: accept failed: {e}");
                compio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn serve_conn(ctx: Rc<Ctx>, stream: TcpStream, addr: SocketAddr) {
    let _ = stream.set_nodelay(true);
    let mut reader = FrameReader::new();
    let shared = &ctx.shared;
    let hello = reader
        .expect(&stream, HANDSHAKE_TIMEOUT, "waiting for the hello")
        .await
        .and_then(|f| match f.kind {
            FrameKind::Hello => Ok(Hello::decode(f.payload)?),
            other => Err(FrameError::Unexpected(other).into()),
        });
    let hello = match hello {
        Ok(h) => h,
        Err(ConnError::Closed) => return,
        Err(e) => {
            if matches!(e, ConnError::Frame(_)) {
                shared.bad_frames.add(1);
            }
            tracing::warn!("peer connection from {addr}: closing: {e}");
            return;
        }
    };
    shared.adopt(&hello);
    let refusal = if hello.cluster_id != shared.cluster_id() {
        tracing::error!(
            "request cluster ID mismatch: local-member-id={:x} local-member-cluster-id={:x} \
             remote-peer-id={:x} remote-peer-cluster-id={:x} remote-addr={addr}",
            shared.local_id(),
            shared.cluster_id(),
            hello.from,
            hello.cluster_id
        );
        Some("request cluster ID mismatch")
    } else if hello.to != shared.local_id() {
        tracing::error!(
            "request member ID mismatch: local-member-id={:x} requested-member-id={:x} \
             remote-peer-id={:x} remote-addr={addr}",
            shared.local_id(),
            hello.to,
            hello.from
        );
        Some("request member ID mismatch")
    } else {
        None
    };
    if let Some(reason) = refusal {
        shared.rejected.add(1);
        let _ = write_frame(&stream, FrameKind::Reject, 0, reason.as_bytes()).await;
        return;
    }
    let reply = Hello {
        from: shared.local_id(),
        to: hello.from,
        cluster_id: shared.cluster_id(),
    };
    if write_frame(&stream, FrameKind::Hello, 0, &reply.encode())
        .await
        .is_err()
    {
        return;
    }
    shared.accepted.add(1);
    let from = hello.from;
    if let Err(e) = receive_frames(&ctx, &stream, &mut reader, from).await {
        if matches!(e, ConnError::Frame(_)) {
            shared.bad_frames.add(1);
        }
        tracing::warn!("peer {from:x} ({addr}): closing connection: {e}");
    }
}

/// A snapshot being received on one connection.
struct Assembly {
    group: u64,
    sink: Sink,
    /// Bytes received so far.
    len: u64,
    /// crc32c of the bytes, kept up as chunks arrive.
    crc: u32,
}

/// Where an assembling snapshot's bytes go.
enum Sink {
    Memory(Vec<u8>),
    File {
        file: compio::fs::File,
        path: std::path::PathBuf,
        /// Free space to leave, beyond twice what is spooled.
        reserve: u64,
    },
}

/// This process's spool file token: random, so that a later process with
/// the same process id (PID 1 in a container) does not take an earlier
/// one's leftovers for its own.
pub fn spool_token() -> &'static str {
    static TOKEN: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TOKEN.get_or_init(|| format!("{:016x}", rand::random::<u64>()))
}

/// Removes the spool files other processes left in `dir` (a process that
/// stopped mid-transfer); this process's own are kept. Call it while
/// holding the data directory's lock. The directory itself is made at the
/// first snapshot received.
pub fn clear_spool(dir: &std::path::Path) -> std::io::Result<()> {
    let own = format!("{SNAPSHOT_SPOOL_PREFIX}{}-", spool_token());
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with(SNAPSHOT_SPOOL_PREFIX) && !name.starts_with(&own) {
            std::fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

impl Assembly {
    async fn start(ctx: &Ctx, group: u64) -> std::io::Result<Assembly> {
        static SPOOLED: AtomicU64 = AtomicU64::new(0);
        let sink = match &ctx.spool_dir {
            None => Sink::Memory(Vec::new()),
            Some(dir) => {
                let n = SPOOLED.fetch_add(1, Ordering::Relaxed);
                let path = dir.join(format!("{SNAPSHOT_SPOOL_PREFIX}{}-{n}", spool_token()));
                std::fs::create_dir_all(dir)?;
                let file = compio::fs::OpenOptions::new()
                    .create(true)
                    .truncate(true)
                    .write(true)
                    .open(&path)
                    .await?;
                Sink::File {
                    file,
                    path,
                    reserve: ctx.spool_free_reserve_bytes,
                }
            }
        };
        Ok(Assembly {
            group,
            sink,
            len: 0,
            crc: 0,
        })
    }

    async fn append(&mut self, chunk: &[u8]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Memory(v) => v.extend_from_slice(chunk),
            Sink::File {
                file,
                path,
                reserve,
            } => {
                use compio::io::AsyncWriteAtExt;
                let held = self.len + chunk.len() as u64;
                let free = free_bytes(path.parent().unwrap_or(path))?;
                if free
                    < held
                        .saturating_add(chunk.len() as u64)
                        .saturating_add(*reserve)
                {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::StorageFull,
                        format!(
                            "{free} bytes free: not enough to spool and install a snapshot \
                             of {held} bytes and more"
                        ),
                    ));
                }
                let BufResult(res, _) = file.write_all_at(chunk.to_vec(), self.len).await;
                res?;
            }
        }
        self.len += chunk.len() as u64;
        self.crc = crc32c::crc32c_append(self.crc, chunk);
        Ok(())
    }

    /// The bytes, complete. A spool file needs no fsync: a crash leaves
    /// garbage the next start removes, and the install writes its own
    /// durable copies.
    fn finish(mut self) -> std::io::Result<SnapshotBytes> {
        match std::mem::replace(&mut self.sink, Sink::Memory(Vec::new())) {
            Sink::Memory(v) => Ok(v.into()),
            Sink::File { file, path, .. } if self.len == 0 => {
                // An empty file cannot be mapped.
                drop(file);
                let _ = std::fs::remove_file(&path);
                Ok(Vec::new().into())
            }
            Sink::File { file, path, .. } => {
                drop(file);
                let bytes = (|| {
                    let f = std::fs::File::open(&path)?;
                    // SAFETY: the spool file is this transport's own; nothing
                    // else writes it while it is mapped.
                    let map = unsafe { memmap2::Mmap::map(&f)? };
                    Ok(SnapshotBytes(SnapshotStore::Spooled(map)))
                })();
                // The map keeps the data; the name is no longer needed.
                let _ = std::fs::remove_file(&path);
                bytes
            }
        }
    }
}

/// Bytes available to unprivileged writers on the filesystem of `dir`.
fn free_bytes(dir: &std::path::Path) -> std::io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c = std::ffi::CString::new(dir.as_os_str().as_bytes())
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c` is a valid C string and `st` a plain struct statvfs fills.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok((st.f_bavail as u64).saturating_mul(st.f_frsize as u64))
}

/// A transfer that will not complete leaves no spool file behind.
impl Drop for Assembly {
    fn drop(&mut self) {
        if let Sink::File { path, .. } = &self.sink {
            let _ = std::fs::remove_file(path);
        }
    }
}

async fn receive_frames(
    ctx: &Ctx,
    stream: &TcpStream,
    reader: &mut FrameReader,
    from: u64,
) -> Result<(), ConnError> {
    let shared = &ctx.shared;
    let mut snapshot: Option<Assembly> = None;
    loop {
        let Some(frame) = reader.next(stream).await? else {
            if snapshot.is_some() {
                return Err(ConnError::Frame(FrameError::Truncated));
            }
            return Ok(());
        };
        match frame.kind {
            FrameKind::Message => {
                let msg = Incoming::Message {
                    from,
                    group: frame.group,
                    payload: frame.payload.to_vec(),
                };
                match ctx.inbox.try_send(msg) {
                    Ok(()) => shared.received.add(1),
                    Err(_) => shared.inbox_dropped.add(1),
                }
            }
            FrameKind::SnapshotChunk => {
                if snapshot.is_none() {
                    snapshot = Some(
                        Assembly::start(ctx, frame.group)
                            .await
                            .map_err(ConnError::Spool)?,
                    );
                }
                let a = snapshot.as_mut().expect("just started");
                if a.group != frame.group {
                    return Err(FrameError::BadSnapshot("group changed mid-snapshot").into());
                }
                if a.len + frame.payload.len() as u64 > SNAPSHOT_BYTES_MAX {
                    return Err(FrameError::BadSnapshot("too large").into());
                }
                a.append(frame.payload).await.map_err(ConnError::Spool)?;
            }
            FrameKind::SnapshotEnd => {
                let a = match snapshot.take() {
                    Some(a) => a,
                    None => Assembly::start(ctx, frame.group)
                        .await
                        .map_err(ConnError::Spool)?,
                };
                if frame.payload.len() != 12 || a.group != frame.group {
                    return Err(FrameError::BadSnapshot("malformed end").into());
                }
                let total = u64::from_le_bytes(frame.payload[..8].try_into().expect("8 bytes"));
                let crc = u32::from_le_bytes(frame.payload[8..].try_into().expect("4 bytes"));
                if total != a.len || crc != a.crc {
                    let _ = write_frame(
                        stream,
                        FrameKind::SnapshotAck,
                        a.group,
                        b"\x01checksum mismatch",
                    )
                    .await;
                    return Err(FrameError::BadSnapshot("length or checksum mismatch").into());
                }
                let group = a.group;
                let snap = Incoming::Snapshot {
                    from,
                    group,
                    data: a.finish().map_err(ConnError::Spool)?,
                };
                let verdict: &[u8] =
                    match compio::time::timeout(SNAPSHOT_DELIVER_TIMEOUT, ctx.inbox.send(snap))
                        .await
                    {
                        Ok(Ok(())) => {
                            shared.snapshots_received.add(1);
                            b"\x00"
                        }
                        Ok(Err(_)) => b"\x01receiver closed",
                        Err(_) => b"\x01receiver busy",
                    };
                write_frame(stream, FrameKind::SnapshotAck, group, verdict).await?;
            }
            other => return Err(FrameError::Unexpected(other).into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(bytes: &[u8]) -> [u8; FRAME_HEADER_BYTES] {
        bytes[..FRAME_HEADER_BYTES].try_into().unwrap()
    }

    #[test]
    fn frames_round_trip_and_bad_headers_are_typed() {
        let mut buf = Vec::new();
        encode_frame(FrameKind::Message, 7, b"hello", &mut buf).unwrap();
        assert_eq!(buf.len(), FRAME_HEADER_BYTES + 5);
        let h = decode_header(&header(&buf)).unwrap();
        assert_eq!(
            h,
            FrameHeader {
                kind: FrameKind::Message,
                group: 7,
                len: 5
            }
        );
        let mut bad = buf.clone();
        bad[0] = 9;
        assert_eq!(decode_header(&header(&bad)), Err(FrameError::BadVersion(9)));
        let mut bad = buf.clone();
        bad[1] = 0;
        assert_eq!(decode_header(&header(&bad)), Err(FrameError::BadKind(0)));
        let mut bad = buf.clone();
        bad[10..14].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            decode_header(&header(&bad)),
            Err(FrameError::TooLarge {
                len: u32::MAX as u64
            })
        );
        let hello = Hello {
            from: 1,
            to: 2,
            cluster_id: 3,
        };
        assert_eq!(Hello::decode(&hello.encode()), Ok(hello));
        assert_eq!(Hello::decode(&[0; 23]), Err(FrameError::BadHello));
    }

    #[test]
    fn transport_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<PeerTransport>();
        check::<Incoming>();
    }

    #[test]
    fn dial_addresses() {
        assert_eq!(
            dial_address("http://127.0.0.1:2380").unwrap(),
            "127.0.0.1:2380"
        );
        assert_eq!(dial_address(" HTTP://h:1/ ").unwrap(), "h:1");
        assert_eq!(dial_address("http://[::1]:2380").unwrap(), "[::1]:2380");
        for bad in [
            "https://h:1",
            "h:1",
            "http://h",
            "http://h:99999",
            "http://h:1/x",
            "http://::1:2380",
            "http://[::1]x:1",
            "http://:1",
            "unix://x",
        ] {
            assert!(dial_address(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn backoff_grows_caps_and_jitters() {
        let mut j = Jitter(42);
        for failures in 1..40 {
            let d = j.backoff(failures);
            let full = BACKOFF_INITIAL
                .saturating_mul(1 << (failures - 1).min(20))
                .min(BACKOFF_MAX);
            assert!(d >= full / 2 && d <= full, "{failures}: {d:?}");
        }
        let picks: std::collections::HashSet<Duration> = (0..16).map(|_| j.backoff(30)).collect();
        assert!(picks.len() > 1, "jitter varies");
    }
}
