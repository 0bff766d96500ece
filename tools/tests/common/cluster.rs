//! Replicated clusters of real processes on loopback: `kvik`, or real etcd
//! 3.7.2 with the same topology and the same etcd flags, so that one
//! scenario can run against both. Members are started with `--name
//! --data-dir --listen-client-urls --advertise-client-urls
//! --listen-peer-urls --initial-advertise-peer-urls --initial-cluster
//! --initial-cluster-state --initial-cluster-token`, are killed on drop, and
//! every wait polls a condition with a generous deadline.

use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use net::pb::etcdserverpb as pb;

use super::{etcdctl_bin, free_port, spawn_logged, temp_dir, Kind};

/// How long a cluster may take to elect a leader, or a new one.
pub const ELECTION_DEADLINE: Duration = Duration::from_secs(60);
/// How long members may take to converge on the same state.
pub const CONVERGE_DEADLINE: Duration = Duration::from_secs(60);
/// `--initial-cluster-token` of every cluster started here.
pub const CLUSTER_TOKEN: &str = "kvik-cluster-test";

/// One member's process, ports and data directory.
pub struct Member {
    pub kind: Kind,
    pub name: String,
    pub client_port: u16,
    pub peer_port: u16,
    /// A second peer port the member listens on (`--listen-peer-urls`)
    /// without advertising it, for a MemberUpdate to move the member to.
    pub spare_peer_port: Option<u16>,
    /// The port of `--listen-metrics-urls`, if the member serves metrics.
    pub metrics_port: Option<u16>,
    /// The address the member listens on and advertises.
    pub host: String,
    /// The network namespace it runs in, if not the test's own.
    pub netns: Option<String>,
    pub dir: PathBuf,
    pub child: Option<Child>,
    pub args: Vec<String>,
}

impl Member {
    /// A member not started yet, with fresh ports and data directory.
    pub fn new(kind: Kind, name: &str) -> Member {
        let tag = match kind {
            Kind::Kvik => format!("cluster-{name}"),
            Kind::Etcd => format!("etcd-cluster-{name}"),
        };
        Member {
            kind,
            name: name.to_string(),
            client_port: free_port(),
            peer_port: free_port(),
            spare_peer_port: None,
            metrics_port: None,
            host: "127.0.0.1".to_string(),
            netns: None,
            dir: temp_dir(&tag),
            child: None,
            args: Vec::new(),
        }
    }

    /// Runs in namespace `netns`, listening on and advertising `host`.
    pub fn in_namespace(mut self, netns: &str, host: &str) -> Member {
        self.netns = Some(netns.to_string());
        self.host = host.to_string();
        self
    }

    /// Also serves `/metrics` and `/health` (`--listen-metrics-urls`).
    pub fn with_metrics_port(mut self) -> Member {
        self.metrics_port = Some(free_port());
        self
    }

    /// The metrics listener's host:port, if any.
    pub fn metrics_addr(&self) -> Option<String> {
        self.metrics_port.map(|p| format!("{}:{p}", self.host))
    }

    /// Also listens on a second peer port, not advertised.
    pub fn with_spare_peer_port(mut self) -> Member {
        self.spare_peer_port = Some(free_port());
        self
    }

    pub fn endpoint(&self) -> String {
        format!("http://{}:{}", self.host, self.client_port)
    }

    pub fn peer_url(&self) -> String {
        format!("http://{}:{}", self.host, self.peer_port)
    }

    pub fn spare_peer_url(&self) -> Option<String> {
        self.spare_peer_port
            .map(|p| format!("http://{}:{p}", self.host))
    }

    /// This member's `name=peer-url` entry of `--initial-cluster`.
    pub fn initial_cluster_entry(&self) -> String {
        format!("{}={}", self.name, self.peer_url())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default()
    }

    /// Sets the command line: etcd's flags for this member, then `extra`.
    /// kvik also gets `--kvik-cores 2`.
    pub fn configure(&mut self, initial_cluster: &str, state: &str, extra: &[&str]) {
        let c = self.endpoint();
        let p = self.peer_url();
        let listen_peer = match self.spare_peer_url() {
            Some(spare) => format!("{p},{spare}"),
            None => p.clone(),
        };
        let data = self.dir.join("data").display().to_string();
        let mut args: Vec<String> = [
            "--name",
            &self.name,
            "--data-dir",
            &data,
            "--listen-client-urls",
            &c,
            "--advertise-client-urls",
            &c,
            "--listen-peer-urls",
            &listen_peer,
            "--initial-advertise-peer-urls",
            &p,
            "--initial-cluster",
            initial_cluster,
            "--initial-cluster-state",
            state,
            "--initial-cluster-token",
            CLUSTER_TOKEN,
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        if let Some(addr) = self.metrics_addr() {
            args.extend([
                "--listen-metrics-urls".to_string(),
                format!("http://{addr}"),
            ]);
        }
        if self.kind == Kind::Kvik {
            args.extend(["--kvik-cores".to_string(), "2".to_string()]);
        }
        args.extend(extra.iter().map(|s| s.to_string()));
        self.args = args;
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        // `ip netns exec` execs the server in place, so the child is the
        // server itself and kill9 reaches it.
        let mut cmd = match &self.netns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(self.kind.bin());
                c
            }
            None => Command::new(self.kind.bin()),
        };
        cmd.args(&self.args);
        let child = spawn_logged(&mut cmd, &self.dir.join("server.log"))
            .unwrap_or_else(|e| panic!("start {:?} member {}: {e}", self.kind, self.name));
        self.child = Some(child);
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Whether the process is running (false once it exited by itself).
    pub fn alive(&mut self) -> bool {
        match self.child.as_mut() {
            Some(c) => matches!(c.try_wait(), Ok(None)),
            None => false,
        }
    }
}

impl Drop for Member {
    fn drop(&mut self) {
        self.kill9();
        if !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Members started together with `--initial-cluster-state new`, and a
/// runtime for the test's client calls.
pub struct Cluster {
    pub kind: Kind,
    pub members: Vec<Member>,
    pub rt: tokio::runtime::Runtime,
}

impl Cluster {
    /// `n` kvik members named m1..mn, each given `extra` flags too.
    pub fn start(n: usize, extra: &[&str]) -> Cluster {
        Cluster::start_with(Kind::Kvik, n, extra, false)
    }

    /// `n` members of `kind` named m1..mn, each given `extra` flags too;
    /// with `spare_peer_ports` each also listens on a second peer port.
    pub fn start_with(kind: Kind, n: usize, extra: &[&str], spare_peer_ports: bool) -> Cluster {
        let members: Vec<Member> = (1..=n)
            .map(|i| {
                let m = Member::new(kind, &format!("m{i}"));
                if spare_peer_ports {
                    m.with_spare_peer_port()
                } else {
                    m
                }
            })
            .collect();
        Cluster::start_members(kind, members, extra)
    }

    /// One member of `kind` in each of `net`'s namespaces, named m1..mn,
    /// each given `extra` flags too.
    pub fn start_in_net(kind: Kind, net: &super::netns::Net, n: usize, extra: &[&str]) -> Cluster {
        let members: Vec<Member> = (0..n)
            .map(|i| {
                Member::new(kind, &format!("m{}", i + 1))
                    .in_namespace(net.namespace(i), &net.host(i))
            })
            .collect();
        Cluster::start_members(kind, members, extra)
    }

    /// Starts `members`, not started yet, as a new cluster; each gets
    /// `extra` flags too.
    pub fn start_members(kind: Kind, mut members: Vec<Member>, extra: &[&str]) -> Cluster {
        let initial: Vec<String> = members.iter().map(Member::initial_cluster_entry).collect();
        let initial = initial.join(",");
        for m in &mut members {
            m.configure(&initial, "new", extra);
            m.spawn();
        }
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        Cluster { kind, members, rt }
    }

    /// `--initial-cluster` naming every member in `members`.
    pub fn initial_cluster(&self) -> String {
        self.members
            .iter()
            .map(Member::initial_cluster_entry)
            .collect::<Vec<_>>()
            .join(",")
    }

    pub fn logs(&self) -> String {
        self.members
            .iter()
            .map(|m| format!("===== {} =====\n{}", m.name, m.log()))
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Member `i`'s Maintenance.Status, or `None` if it does not answer.
    pub fn status(&self, i: usize) -> Option<pb::StatusResponse> {
        let ep = self.members[i].endpoint();
        self.rt.block_on(async {
            let ch = tonic::transport::Endpoint::from_shared(ep)
                .ok()?
                .connect_timeout(Duration::from_secs(1))
                .timeout(Duration::from_secs(2))
                .connect()
                .await
                .ok()?;
            let mut c = pb::maintenance_client::MaintenanceClient::new(ch);
            c.status(pb::StatusRequest {})
                .await
                .ok()
                .map(|r| r.into_inner())
        })
    }

    /// Adds `m` to the members and starts it joining the running cluster,
    /// which must already have admitted it (MemberAdd): `--initial-cluster`
    /// names every member, `m` included, `--initial-cluster-state` is
    /// `existing`, then `extra` flags. Returns its index.
    pub fn join(&mut self, m: Member, extra: &[&str]) -> usize {
        self.members.push(m);
        let initial = self.initial_cluster();
        let i = self.members.len() - 1;
        let m = &mut self.members[i];
        m.configure(&initial, "existing", extra);
        m.spawn();
        i
    }

    /// Polls member `i`'s Maintenance.Status until it answers one that
    /// `done` accepts, and returns that answer. Fails the test, naming
    /// `what`, if the member exits or no such answer comes within
    /// [`CONVERGE_DEADLINE`].
    pub fn wait_status(
        &mut self,
        i: usize,
        what: &str,
        done: impl Fn(&pb::StatusResponse) -> bool,
    ) -> pb::StatusResponse {
        let d = Deadline::after(CONVERGE_DEADLINE);
        loop {
            assert!(
                self.members[i].alive(),
                "{} exited while waiting for {what}:\n{}",
                self.members[i].name,
                self.logs()
            );
            let s = self.status(i);
            if let Some(s) = s.as_ref().filter(|s| done(s)) {
                return s.clone();
            }
            d.tick(|| {
                format!(
                    "{}: {what}; last Status {s:?}\n{}",
                    self.members[i].name,
                    self.logs()
                )
            });
        }
    }

    /// Polls until every running member names the same leader, one of the
    /// running members; returns its index.
    pub fn wait_leader(&mut self, alive: &[usize]) -> usize {
        let deadline = Instant::now() + ELECTION_DEADLINE;
        loop {
            for &i in alive {
                assert!(
                    self.members[i].alive(),
                    "{} exited:\n{}",
                    self.members[i].name,
                    self.logs()
                );
            }
            let statuses: Vec<Option<pb::StatusResponse>> =
                alive.iter().map(|&i| self.status(i)).collect();
            let leaders: Vec<u64> = statuses
                .iter()
                .map(|s| s.as_ref().map_or(0, |s| s.leader))
                .collect();
            if leaders[0] != 0 && leaders.iter().all(|l| *l == leaders[0]) {
                let found = alive.iter().copied().find(|&i| {
                    statuses[alive.iter().position(|&a| a == i).unwrap()]
                        .as_ref()
                        .and_then(|s| s.header.as_ref())
                        .is_some_and(|h| h.member_id == leaders[0])
                });
                if let Some(i) = found {
                    return i;
                }
            }
            assert!(
                Instant::now() < deadline,
                "no agreed leader within {ELECTION_DEADLINE:?}: {leaders:x?}\n{}",
                self.logs()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// A polling deadline: `tick` sleeps one interval between two probes of a
/// condition, and fails the test once the deadline has passed.
pub struct Deadline {
    until: Instant,
    limit: Duration,
}

impl Deadline {
    /// Probes every 200 ms.
    pub const EVERY: Duration = Duration::from_millis(200);

    pub fn after(limit: Duration) -> Deadline {
        Deadline {
            until: Instant::now() + limit,
            limit,
        }
    }

    /// Fails the test with `what()` if the deadline has passed, else waits
    /// one interval.
    pub fn tick(&self, what: impl FnOnce() -> String) {
        if Instant::now() >= self.until {
            panic!("not within {:?}: {}", self.limit, what());
        }
        std::thread::sleep(Deadline::EVERY);
    }
}

/// Runs etcdctl 3.4 against `endpoints` (comma-separated): whether it
/// succeeded, and its stdout and stderr together.
pub fn etcdctl(endpoints: &str, args: &[&str]) -> (bool, String) {
    let out = Command::new(etcdctl_bin())
        .env("ETCDCTL_API", "3")
        .arg(format!("--endpoints={endpoints}"))
        .arg("--dial-timeout=5s")
        .arg("--command-timeout=10s")
        .args(args)
        .output()
        .expect("run etcdctl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// Runs etcdctl again while it answers "etcdserver: unhealthy cluster": as
/// etcd does, kvik refuses membership changes until the member asked has
/// been connected to the voters for five seconds (strict reconfiguration
/// check), so a change right after a member (re)starts has to be retried.
pub fn etcdctl_settled(endpoints: &str, args: &[&str]) -> (bool, String) {
    let d = Deadline::after(CONVERGE_DEADLINE);
    loop {
        let (ok, text) = etcdctl(endpoints, args);
        if ok || !text.contains("etcdserver: unhealthy cluster") {
            return (ok, text);
        }
        d.tick(|| format!("etcdctl {args:?}: the cluster stayed unhealthy: {text}"));
    }
}

/// `etcdctl member add <name> --peer-urls=<peer_url> --learner` through
/// `endpoint`, retried while the cluster is unhealthy; fails the test
/// unless it succeeds. Returns the new member's id (hex) as etcdctl prints
/// it.
pub fn etcdctl_add_learner(endpoint: &str, name: &str, peer_url: &str) -> String {
    let urls = format!("--peer-urls={peer_url}");
    let (ok, text) = etcdctl_settled(endpoint, &["member", "add", name, &urls, "--learner"]);
    assert!(ok, "member add --learner: {text}");
    text.split_whitespace()
        .nth(1)
        .filter(|_| text.starts_with("Member "))
        .unwrap_or_else(|| panic!("member add output: {text}"))
        .to_string()
}
