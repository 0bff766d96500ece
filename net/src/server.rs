//! The client-facing server: one compio runtime per core, each with its own
//! SO_REUSEPORT listener per client URL, serving etcd's gRPC services through
//! hyper's HTTP/2 server. The keyspace owner (the shard) runs as a local task
//! on core 0; every core reaches it through a bounded channel.

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tonic::codegen::Service as _;

use crate::datadir::{DataDir, Identity};
use crate::errors;
use crate::membership::MemberSet;
use crate::pb::etcdserverpb as pb;
use crate::rt::{self, Backend, LocalExec};
use crate::services::{
    ClusterService, KvService, LeaseService, MaintenanceService, Shared, WatchService,
};
use crate::shard;

/// How often the shard is told the time (lease expiry, watch catch-up,
/// progress notifications): etcd's watch sync loop runs every 100 ms too.
pub const TICK_INTERVAL: Duration = Duration::from_millis(100);

/// How long a member joining a running cluster waits for the first member
/// to dial it.
pub const JOIN_WAIT: Duration = Duration::from_secs(60);

/// gRPC's framing overhead that etcd allows on top of `--max-request-bytes`.
pub const GRPC_OVERHEAD_BYTES: usize = 512 * 1024;

/// Everything the server needs, already validated by the binary.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub name: String,
    pub data_dir: PathBuf,
    pub listen_client: Vec<SocketAddr>,
    /// `--listen-metrics-urls`: HTTP/1.1 `/metrics` and `/health`.
    pub listen_metrics: Vec<SocketAddr>,
    pub advertise_client_urls: Vec<String>,
    pub advertise_peer_urls: Vec<String>,
    pub initial_cluster_token: String,
    pub max_txn_ops: usize,
    pub max_request_bytes: usize,
    /// etcd's minimum lease TTL: ceil(1.5 × election timeout), in seconds.
    pub lease_ttl_min_secs: i64,
    /// `--watch-progress-notify-interval`.
    pub progress_notify_interval: Duration,
    pub force_epoll: bool,
    pub cores: usize,
    /// `--snapshot-count` and `--kvik-checkpoint-bytes`.
    pub checkpoint: shard::CheckpointPolicy,
    /// `--listen-peer-urls` as addresses to bind; empty starts no peer
    /// transport (a single member that never grows).
    pub listen_peer: Vec<SocketAddr>,
    /// `--initial-cluster`: member names and peer URLs.
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state existing`.
    pub join_existing: bool,
    /// `--heartbeat-interval`: one Raft tick.
    pub heartbeat_interval: Duration,
    /// `--election-timeout`.
    pub election_timeout: Duration,
    /// `--snapshot-catchup-entries`.
    pub snapshot_catchup_entries: u64,
    /// `--strict-reconfig-check`.
    pub strict_reconfig: bool,
}

/// Called once every core is listening (tests and the binary log it).
pub struct Started {
    pub backend: Backend,
    pub client_addrs: Vec<SocketAddr>,
}

/// Runs the server until a fatal error. Blocks the calling thread.
pub fn run(
    config: ServerConfig,
    on_started: impl FnOnce(&Started) + Send + 'static,
) -> Result<(), String> {
    assert!(config.cores >= 1, "at least one core");
    assert!(!config.listen_client.is_empty(), "at least one client URL");
    let founders = MemberSet::bootstrap(&config.initial_cluster_token, &config.initial_cluster)
        .map_err(|e| format!("--initial-cluster: {e}"))?;
    let initialized = DataDir::is_initialized(&config.data_dir);
    let start_transport = |identity: Identity| -> Result<_, String> {
        let mut tc =
            crate::peer::TransportConfig::new(identity.member_id, identity.cluster_id, Vec::new());
        tc.listen = config.listen_peer.clone();
        tc.force_epoll = config.force_epoll;
        // Received snapshots go to disk as they arrive, never whole into
        // memory.
        tc.snapshot_spool_dir = Some(config.data_dir.join(SNAPSHOT_SPOOL_DIR));
        // A peer port held by a process that just died is released
        // asynchronously (as a client port is), and a short-lived outgoing
        // connection may hold it as its local port for a moment: retry.
        let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
        let (t, inbox) = loop {
            match crate::peer::PeerTransport::start(tc.clone()) {
                Ok(started) => break started,
                Err(e)
                    if e.kind() == std::io::ErrorKind::AddrInUse
                        && std::time::Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => return Err(format!("starting the peer transport: {e}")),
            }
        };
        for (addr, bound) in config.listen_peer.iter().zip(t.local_addrs()) {
            tracing::info!("listening for peers on {addr} ({bound})");
        }
        Ok((t, inbox))
    };
    let unknown = Identity {
        cluster_id: 0,
        member_id: 0,
    };
    let mut transport = None;
    let fresh = if config.join_existing {
        if initialized {
            unknown
        } else {
            // etcd asks the running members for the cluster; kvik learns its
            // ids from the first member that dials it, which the leader
            // does once this member's MemberAdd is applied.
            if config.listen_peer.is_empty() {
                return Err("joining a running cluster needs --listen-peer-urls".into());
            }
            let (t, inbox) = start_transport(unknown)?;
            tracing::info!(
                "waiting up to {JOIN_WAIT:?} for a member of the running cluster to dial this one"
            );
            let deadline = std::time::Instant::now() + JOIN_WAIT;
            while t.cluster_id() == 0 {
                if std::time::Instant::now() >= deadline {
                    return Err(format!(
                        "no member of the running cluster reached this member within \
                         {JOIN_WAIT:?}: add it with MemberAdd first"
                    ));
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            let id = Identity {
                cluster_id: t.cluster_id(),
                member_id: t.local_id(),
            };
            // The log names every member, but this member must answer the
            // leader before it can read the log: reach the founding members
            // of --initial-cluster (their ids follow from the token) now.
            // Members added later are learned from the log.
            for m in founders.members() {
                if m.id != id.member_id && m.name != config.name {
                    let _ = t.add_peer(m.id, m.peer_urls.clone());
                }
            }
            transport = Some((t, inbox));
            id
        }
    } else {
        match founders.member_by_name(&config.name) {
            Some(m) => Identity {
                cluster_id: founders.cluster_id(),
                member_id: m.id,
            },
            None if initialized => unknown,
            None => {
                return Err(format!(
                    "couldn't find local name {:?} in the initial cluster configuration",
                    config.name
                ))
            }
        }
    };
    let data_dir = DataDir::open(&config.data_dir, fresh).map_err(|e| e.to_string())?;
    // Spool files a stopped process left, removed under the lock.
    crate::peer::clear_spool(&config.data_dir.join(SNAPSHOT_SPOOL_DIR))
        .map_err(|e| format!("clearing {SNAPSHOT_SPOOL_DIR}: {e}"))?;
    let identity = data_dir.identity();
    tracing::info!(
        "member {:x} of cluster {:x}",
        identity.member_id,
        identity.cluster_id
    );
    if transport.is_none() && !config.listen_peer.is_empty() {
        transport = Some(start_transport(identity)?);
    }
    let tick_ms = config.heartbeat_interval.as_millis().max(1);
    let raft_options = shard::RaftOptions {
        member_id: identity.member_id,
        cluster_id: identity.cluster_id,
        bootstrap: (!config.join_existing).then_some(founders),
        election_ticks: u32::try_from(config.election_timeout.as_millis() / tick_ms)
            .unwrap_or(u32::MAX)
            .max(2),
        tick_interval: config.heartbeat_interval,
        catchup_entries: config.snapshot_catchup_entries,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.clone(),
        transport,
        strict_reconfig: config.strict_reconfig,
        seed: {
            use std::hash::{BuildHasher, Hasher};
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_u64(identity.member_id);
            h.finish()
        },
    };
    let mut raft_options = Some(raft_options);

    // Bind every listener up front so that address errors are reported
    // before any thread starts; each core gets its own socket on the same
    // address (SO_REUSEPORT).
    let mut per_core_listeners: Vec<Vec<std::net::TcpListener>> = Vec::new();
    let mut bound: Vec<SocketAddr> = Vec::new();
    for core in 0..config.cores {
        let mut listeners = Vec::new();
        for (i, addr) in config.listen_client.iter().enumerate() {
            // Port 0 is resolved by the first core; the others reuse it.
            let addr = if core == 0 { *addr } else { bound[i] };
            if core == 0 {
                ensure_port_free(addr).map_err(|e| format!("listen tcp {addr}: bind: {e}"))?;
            }
            let l = bind_reuseport(addr).map_err(|e| format!("listen on {addr}: {e}"))?;
            if core == 0 {
                bound.push(l.local_addr().map_err(|e| e.to_string())?);
            }
            listeners.push(l);
        }
        per_core_listeners.push(listeners);
    }

    let mut metrics_listeners = Vec::new();
    for addr in &config.listen_metrics {
        ensure_port_free(*addr).map_err(|e| format!("listen tcp {addr}: bind: {e}"))?;
        let l = bind_reuseport(*addr).map_err(|e| format!("listen on {addr}: {e}"))?;
        metrics_listeners.push(l);
    }
    let mut metrics_listeners = Some(metrics_listeners);

    let (handle, inbox) = shard::channel();
    let shared = Arc::new(Shared {
        shard: handle,
        identity,
        name: config.name.clone(),
        client_urls: config.advertise_client_urls.clone(),
        peer_urls: config.advertise_peer_urls.clone(),
        max_txn_ops: config.max_txn_ops,
        max_request_bytes: config.max_request_bytes,
        lease_ttl_min_secs: config.lease_ttl_min_secs,
        election_timeout: config.election_timeout,
    });

    let mut on_started = Some(on_started);
    // Each core reports once: its backend when it listens, or why it could
    // not start.
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<Backend, String>>();
    let mut inbox = Some(inbox);
    let mut data_dir = Some(data_dir);
    let mut threads = Vec::new();
    for (core, listeners) in per_core_listeners.into_iter().enumerate() {
        let shared = shared.clone();
        let inbox = if core == 0 { inbox.take() } else { None };
        let data_dir = if core == 0 { data_dir.take() } else { None };
        let raft_options = if core == 0 { raft_options.take() } else { None };
        let metrics_listeners = if core == 0 {
            metrics_listeners.take().unwrap_or_default()
        } else {
            Vec::new()
        };
        let force_epoll = config.force_epoll;
        let progress_notify_interval = config.progress_notify_interval;
        let checkpoint = config.checkpoint;
        let ready_tx = ready_tx.clone();
        let t = std::thread::Builder::new()
            .name(format!("kvik-core-{core}"))
            .spawn(move || {
                let (runtime, backend) = match rt::build_runtime(force_epoll) {
                    Ok(r) => r,
                    Err(e) => {
                        let _ =
                            ready_tx.send(Err(format!("core {core}: cannot build runtime: {e}")));
                        return;
                    }
                };
                // Logged before this core listens, so a client that reached
                // the server can already read which backend serves it.
                tracing::info!("core {core}: I/O backend: {backend}");
                runtime.block_on(async move {
                    if let (Some(inbox), Some(data_dir), Some(raft_options)) =
                        (inbox, data_dir, raft_options)
                    {
                        // The shard must be running (WAL replayed) before
                        // anyone is told the server is up.
                        let mut shard = match shard::Shard::open_dir(
                            data_dir,
                            shared.max_txn_ops,
                            raft_options,
                        )
                        .await
                        {
                            Ok(s) => s,
                            Err(e) => {
                                let _ =
                                    ready_tx.send(Err(format!("cannot open the keyspace: {e}")));
                                return;
                            }
                        };
                        shard.set_progress_notify_interval(progress_notify_interval);
                        shard.set_checkpoint_policy(checkpoint);
                        let ticker = shared.shard.clone();
                        compio::runtime::spawn(async move {
                            loop {
                                compio::time::sleep(TICK_INTERVAL).await;
                                ticker.tick(std::time::Instant::now());
                            }
                        })
                        .detach();
                        compio::runtime::spawn(async move {
                            if let Err(e) = shard.run(inbox).await {
                                tracing::error!("fatal: {e}; stopping");
                                eprintln!("kvik: fatal: {e}");
                                std::process::exit(2);
                            }
                        })
                        .detach();
                    }
                    for l in metrics_listeners {
                        let l = compio::net::TcpListener::from_std(l).expect("register listener");
                        compio::runtime::spawn(crate::metrics::serve(l)).detach();
                    }
                    let router = Router::new(shared.clone());
                    for l in listeners {
                        let l = compio::net::TcpListener::from_std(l).expect("register listener");
                        compio::runtime::spawn(accept_loop(l, router.clone())).detach();
                    }
                    let _ = ready_tx.send(Ok(backend));
                    // Park this task forever; the spawned tasks do the work.
                    std::future::pending::<()>().await;
                });
            })
            .map_err(|e| e.to_string())?;
        threads.push(t);
    }
    drop(ready_tx);
    let mut backend = None;
    for _ in 0..config.cores {
        match ready_rx.recv() {
            Ok(Ok(b)) => backend = Some(b),
            Ok(Err(e)) => return Err(e),
            Err(_) => return Err("a core stopped during start-up".into()),
        }
    }
    let backend = backend.expect("at least one core reported");
    if let Some(f) = on_started.take() {
        f(&Started {
            backend,
            client_addrs: bound,
        });
    }
    for t in threads {
        let _ = t.join();
    }
    Err("all cores stopped".into())
}

/// How long start-up waits for a client port held by a process that just
/// died (io_uring tears its sockets down asynchronously).
pub const PORT_RELEASE_WAIT: Duration = Duration::from_secs(5);

/// Fails if another process listens on `addr`. The per-core listeners share
/// their port through SO_REUSEPORT, which would also let a second server
/// join them and split the clients; a probe bound without it refuses to
/// share, as etcd's plain bind does.
fn ensure_port_free(addr: SocketAddr) -> std::io::Result<()> {
    if addr.port() == 0 {
        return Ok(());
    }
    let deadline = std::time::Instant::now() + PORT_RELEASE_WAIT;
    loop {
        match std::net::TcpListener::bind(addr) {
            Ok(probe) => {
                drop(probe);
                return Ok(());
            }
            Err(e)
                if e.kind() == std::io::ErrorKind::AddrInUse
                    && std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn bind_reuseport(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

async fn accept_loop(listener: compio::net::TcpListener, router: Router) {
    loop {
        match listener.accept().await {
            Ok((stream, _peer)) => {
                let _ = stream.set_nodelay(true);
                let router = router.clone();
                compio::runtime::spawn(async move {
                    let io = cyper_core::HyperStream::new_plain(stream);
                    let mut builder = hyper::server::conn::http2::Builder::new(LocalExec);
                    builder
                        .timer(cyper_core::CompioTimer)
                        // etcd's --max-concurrent-streams default: 2^32-1.
                        .max_concurrent_streams(u32::MAX)
                        .keep_alive_interval(Some(Duration::from_secs(7200)))
                        .keep_alive_timeout(Duration::from_secs(20));
                    if let Err(e) = builder.serve_connection(io, router).await {
                        tracing::debug!("connection ended: {e}");
                    }
                })
                .detach();
            }
            Err(e) => {
                // EMFILE and friends: back off instead of spinning.
                tracing::warn!("accept failed: {e}");
                compio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

type BoxResponse = Pin<Box<dyn Future<Output = Result<Response<tonic::body::Body>, Infallible>>>>;

/// Routes each HTTP/2 request to its gRPC service by path prefix; unknown
/// paths answer `unimplemented`.
#[derive(Clone)]
pub struct Router {
    shared: Arc<Shared>,
    kv: pb::kv_server::KvServer<KvService>,
    maintenance: pb::maintenance_server::MaintenanceServer<MaintenanceService>,
    cluster: pb::cluster_server::ClusterServer<ClusterService>,
    watch: pb::watch_server::WatchServer<WatchService>,
    lease: pb::lease_server::LeaseServer<LeaseService>,
    lock: crate::pb::v3lockpb::lock_server::LockServer<crate::concurrency::LockService>,
    election: crate::pb::v3electionpb::election_server::ElectionServer<
        crate::concurrency::ElectionService,
    >,
}

impl Router {
    pub fn new(shared: Arc<Shared>) -> Router {
        // etcd's gRPC receive limit is --max-request-bytes plus 512 KiB; its
        // send limit is effectively unbounded.
        let recv_max = shared.max_request_bytes + GRPC_OVERHEAD_BYTES;
        Router {
            shared: shared.clone(),
            kv: pb::kv_server::KvServer::new(KvService::new(shared.clone()))
                .max_decoding_message_size(recv_max)
                .max_encoding_message_size(usize::MAX),
            maintenance: pb::maintenance_server::MaintenanceServer::new(MaintenanceService::new(
                shared.clone(),
            ))
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(usize::MAX),
            cluster: pb::cluster_server::ClusterServer::new(ClusterService::new(shared.clone()))
                .max_decoding_message_size(recv_max)
                .max_encoding_message_size(usize::MAX),
            watch: pb::watch_server::WatchServer::new(WatchService::new(shared.clone()))
                .max_decoding_message_size(recv_max)
                .max_encoding_message_size(usize::MAX),
            lease: pb::lease_server::LeaseServer::new(LeaseService::new(shared.clone()))
                .max_decoding_message_size(recv_max)
                .max_encoding_message_size(usize::MAX),
            lock: crate::pb::v3lockpb::lock_server::LockServer::new(
                crate::concurrency::LockService::new(shared.clone()),
            )
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(usize::MAX),
            election: crate::pb::v3electionpb::election_server::ElectionServer::new(
                crate::concurrency::ElectionService::new(shared),
            )
            .max_decoding_message_size(recv_max)
            .max_encoding_message_size(usize::MAX),
        }
    }
}

impl hyper::service::Service<Request<Incoming>> for Router {
    type Response = Response<tonic::body::Body>;
    type Error = Infallible;
    type Future = BoxResponse;

    fn call(&self, req: Request<Incoming>) -> Self::Future {
        let deadline = grpc_timeout(&req);
        let require_leader = req
            .headers()
            .get(REQUIRE_LEADER_KEY)
            .is_some_and(|v| v.as_bytes() == REQUIRE_LEADER_VALUE.as_bytes());
        let path = req.uri().path();
        // Unknown methods never reach etcd's interceptors.
        if require_leader
            && !self.shared.shard.has_leader()
            && SERVICE_PREFIXES.iter().any(|p| path.starts_with(p))
        {
            return Box::pin(async { Ok(errors::NO_LEADER.status().into_http()) });
        }
        let watched = require_leader && STREAMING_PATHS.contains(&path);
        let fut: BoxResponse = if path.starts_with("/etcdserverpb.KV/") {
            let mut s = self.kv.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/etcdserverpb.Maintenance/") {
            let mut s = self.maintenance.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/etcdserverpb.Cluster/") {
            let mut s = self.cluster.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/etcdserverpb.Watch/") {
            let mut s = self.watch.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/etcdserverpb.Lease/") {
            let mut s = self.lease.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/v3lockpb.Lock/") {
            let mut s = self.lock.clone();
            Box::pin(async move { s.call(req).await })
        } else if path.starts_with("/v3electionpb.Election/") {
            let mut s = self.election.clone();
            Box::pin(async move { s.call(req).await })
        } else {
            let status =
                tonic::Status::unimplemented(format!("unknown service {}", service_of(path)));
            return Box::pin(async move { Ok(status.into_http()) });
        };
        let fut: BoxResponse = Box::pin(async move { fut.await.map(go_grpc_wording) });
        let fut: BoxResponse = if watched {
            let leader = self.shared.shard.leader_flag();
            let every = self.shared.election_timeout;
            Box::pin(async move {
                fut.await.map(|resp| {
                    resp.map(|body| tonic::body::Body::new(RequireLeader::new(body, leader, every)))
                })
            })
        } else {
            fut
        };
        match deadline {
            None => fut,
            Some(d) => Box::pin(async move {
                match compio::time::timeout(d, fut).await {
                    Ok(r) => r,
                    Err(_) => Ok(errors::CONTEXT_DEADLINE_EXCEEDED.status().into_http()),
                }
            }),
        }
    }
}

/// The data directory's folder for snapshots being received.
pub const SNAPSHOT_SPOOL_DIR: &str = "snapshot-spool";

/// The metadata key and value of etcd's clientv3 `WithRequireLeader`.
pub const REQUIRE_LEADER_KEY: &str = "hasleader";
pub const REQUIRE_LEADER_VALUE: &str = "true";
/// A stream that requires a leader ends with "no leader" once none was
/// known at this many checks in a row, one election timeout apart (etcd's
/// `maxNoLeaderCnt`: reconnecting a stream costs more than refusing a new
/// request, so existing streams get this long).
pub const NO_LEADER_CHECKS_MAX: u32 = 3;
/// The services the router serves, by path prefix.
const SERVICE_PREFIXES: [&str; 7] = [
    "/etcdserverpb.KV/",
    "/etcdserverpb.Maintenance/",
    "/etcdserverpb.Cluster/",
    "/etcdserverpb.Watch/",
    "/etcdserverpb.Lease/",
    "/v3lockpb.Lock/",
    "/v3electionpb.Election/",
];
/// The streaming methods, whose responses are watched for leader loss.
const STREAMING_PATHS: [&str; 4] = [
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseKeepAlive",
    "/etcdserverpb.Maintenance/Snapshot",
    "/v3electionpb.Election/Observe",
];

/// A streaming response whose client requires a leader (etcd's
/// `monitorLeader`): every election timeout the member's leader is checked,
/// and after [`NO_LEADER_CHECKS_MAX`] checks in a row without one the
/// stream ends with "etcdserver: no leader", so that the client moves to a
/// member that has one. The checks run in a task of the core; the body only
/// reads the verdict, so it stays `Send`.
struct RequireLeader {
    inner: tonic::body::Body,
    verdict: Arc<NoLeaderVerdict>,
    ended: bool,
}

/// What a stream's leader checks found, and the body to wake when the
/// stream must end.
#[derive(Default)]
struct NoLeaderVerdict {
    no_leader: std::sync::atomic::AtomicBool,
    waker: futures_util::task::AtomicWaker,
}

impl RequireLeader {
    fn new(inner: tonic::body::Body, leader: shard::LeaderFlag, every: Duration) -> Self {
        let verdict = Arc::new(NoLeaderVerdict::default());
        let watched = Arc::downgrade(&verdict);
        compio::runtime::spawn(async move {
            let mut misses = 0;
            loop {
                compio::time::sleep(every).await;
                // The stream is gone: nothing left to check for.
                let Some(verdict) = watched.upgrade() else {
                    return;
                };
                misses = if leader.has_leader() { 0 } else { misses + 1 };
                if misses >= NO_LEADER_CHECKS_MAX {
                    verdict
                        .no_leader
                        .store(true, std::sync::atomic::Ordering::Release);
                    verdict.waker.wake();
                    return;
                }
            }
        })
        .detach();
        RequireLeader {
            inner,
            verdict,
            ended: false,
        }
    }
}

impl http_body::Body for RequireLeader {
    type Data = tonic::codegen::Bytes;
    type Error = tonic::Status;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<http_body::Frame<Self::Data>, Self::Error>>> {
        use std::task::Poll;
        let this = self.get_mut();
        if this.ended {
            return Poll::Ready(None);
        }
        this.verdict.waker.register(cx.waker());
        if this
            .verdict
            .no_leader
            .load(std::sync::atomic::Ordering::Acquire)
        {
            this.ended = true;
            // A trailers-only answer's headers are the status's trailers.
            let mut trailers = errors::NO_LEADER
                .status()
                .into_http::<tonic::body::Body>()
                .headers()
                .clone();
            trailers.remove(http::header::CONTENT_TYPE);
            return Poll::Ready(Some(Ok(http_body::Frame::trailers(trailers))));
        }
        Pin::new(&mut this.inner).poll_frame(cx)
    }

    fn is_end_stream(&self) -> bool {
        self.ended || self.inner.is_end_stream()
    }
}

/// Rewrites the receive-limit refusal of the gRPC library into the words of
/// Go's gRPC, which etcd's clients and tools see from etcd:
/// "grpc: received message larger than max (N vs. M)".
fn go_grpc_wording(resp: Response<tonic::body::Body>) -> Response<tonic::body::Body> {
    let Some(status) = tonic::Status::from_header_map(resp.headers()) else {
        return resp;
    };
    if status.code() != tonic::Code::OutOfRange && status.code() != tonic::Code::ResourceExhausted {
        return resp;
    }
    let msg = status.message();
    let Some(rest) = msg.strip_prefix("Error, decoded message length too large: found ") else {
        return resp;
    };
    let mut numbers = rest
        .split(|c: char| !c.is_ascii_digit())
        .filter(|p| !p.is_empty());
    let (Some(found), Some(limit)) = (numbers.next(), numbers.next()) else {
        return resp;
    };
    tonic::Status::resource_exhausted(format!(
        "grpc: received message larger than max ({found} vs. {limit})"
    ))
    .into_http()
}

fn service_of(path: &str) -> &str {
    path.trim_start_matches('/').split('/').next().unwrap_or("")
}

/// Parses gRPC's `grpc-timeout` header ("100m", "5S", ...). The generated
/// services ignore it, so the router enforces it.
fn grpc_timeout<B>(req: &Request<B>) -> Option<Duration> {
    let v = req.headers().get("grpc-timeout")?.to_str().ok()?;
    if v.len() < 2 || v.len() > 9 {
        return None;
    }
    let (digits, unit) = v.split_at(v.len() - 1);
    let n: u64 = digits.parse().ok()?;
    Some(match unit {
        "H" => Duration::from_secs(n.saturating_mul(3600)),
        "M" => Duration::from_secs(n.saturating_mul(60)),
        "S" => Duration::from_secs(n),
        "m" => Duration::from_millis(n),
        "u" => Duration::from_micros(n),
        "n" => Duration::from_nanos(n),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_grpc_timeout() {
        let mk = |v: &str| {
            Request::builder()
                .header("grpc-timeout", v)
                .body(())
                .unwrap()
        };
        assert_eq!(grpc_timeout(&mk("100m")), Some(Duration::from_millis(100)));
        assert_eq!(grpc_timeout(&mk("2S")), Some(Duration::from_secs(2)));
        assert_eq!(grpc_timeout(&mk("1H")), Some(Duration::from_secs(3600)));
        assert_eq!(grpc_timeout(&mk("5x")), None);
        assert_eq!(grpc_timeout(&mk("m")), None);
        assert_eq!(grpc_timeout(&Request::builder().body(()).unwrap()), None);
    }
}
