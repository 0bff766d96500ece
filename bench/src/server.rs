//! Starting, probing and stopping a server child process.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::pb::etcdserverpb::kv_client::KvClient;
use net::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use net::pb::etcdserverpb::{RangeRequest, StatusRequest, StatusResponse};
use tonic::transport::{Channel, Endpoint};

/// How long a server may take to answer Status and a linearizable read.
pub const READY_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between readiness probes.
pub const POLL_INTERVAL: Duration = Duration::from_millis(5);

/// A running server child. Dropping it kills the child and removes its
/// directory (data dir and log), also while unwinding from a panic.
pub struct Server {
    child: Child,
    dir: PathBuf,
    /// The command line, kept so that a restart uses the same one.
    bin: PathBuf,
    args: Vec<String>,
    /// The member name (`--name`).
    pub name: String,
    pub client_url: String,
    pub metrics_addr: String,
}

/// When a (re)started server first answered, counted from its spawn.
#[derive(Clone, Copy, Debug)]
pub struct Readiness {
    /// First successful Maintenance.Status.
    pub status: Duration,
    /// First successful linearizable Range (after a Status): serving.
    pub range: Duration,
}

impl Server {
    /// Starts `bin` with etcd's single-member flags, then `extra`, on fresh
    /// ports and a fresh data dir under `dir` (which must not exist yet).
    pub fn start(bin: &Path, dir: PathBuf, extra: &[String]) -> Result<Server, String> {
        let ports = Ports::free(1)?[0];
        let initial_cluster = format!("b1={}", ports.peer_url());
        Server::start_member(bin, dir, "b1", ports, &initial_cluster, extra)
    }

    /// Starts member `name` of the cluster `initial_cluster` (etcd's
    /// `name=peer-url,...`) on `ports`, with a fresh data dir under `dir`
    /// (which must not exist yet). `extra` follows the member's own flags.
    pub fn start_member(
        bin: &Path,
        dir: PathBuf,
        name: &str,
        ports: Ports,
        initial_cluster: &str,
        extra: &[String],
    ) -> Result<Server, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let data_dir = dir.join("data");
        let client_url = format!("http://127.0.0.1:{}", ports.client);
        let peer_url = ports.peer_url();
        let metrics_url = format!("http://127.0.0.1:{}", ports.metrics);
        let mut args: Vec<String> = vec!["--name".into(), name.into(), "--data-dir".into()];
        args.push(data_dir.to_string_lossy().into_owned());
        for (flag, value) in [
            ("--listen-client-urls", &client_url),
            ("--advertise-client-urls", &client_url),
            ("--listen-peer-urls", &peer_url),
            ("--initial-advertise-peer-urls", &peer_url),
            ("--initial-cluster", &initial_cluster.to_string()),
            ("--listen-metrics-urls", &metrics_url),
        ] {
            args.push(flag.into());
            args.push(value.clone());
        }
        args.extend(extra.iter().cloned());
        let child = spawn(bin, &args, &dir)?;
        Ok(Server {
            child,
            dir,
            bin: bin.to_path_buf(),
            args,
            name: name.to_string(),
            client_url,
            metrics_addr: format!("127.0.0.1:{}", ports.metrics),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The server's data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.join("data")
    }

    /// Stops the server with SIGKILL (nothing is flushed or closed).
    pub fn kill9(&mut self) -> Result<(), String> {
        self.child.kill().map_err(|e| format!("kill: {e}"))?;
        self.child.wait().map_err(|e| format!("wait: {e}"))?;
        Ok(())
    }

    /// Stops the server with SIGTERM and waits for it to exit; returns how
    /// long that took. Falls back to SIGKILL after `deadline`.
    pub async fn terminate(&mut self, deadline: Duration) -> Result<Duration, String> {
        let started = Instant::now();
        let ok = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status()
            .map_err(|e| format!("kill -TERM: {e}"))?;
        if !ok.success() {
            return Err(format!("kill -TERM {} failed: {ok}", self.pid()));
        }
        loop {
            if let Ok(Some(_)) = self.child.try_wait() {
                return Ok(started.elapsed());
            }
            if started.elapsed() > deadline {
                self.kill9()?;
                return Err(format!("did not exit within {deadline:?} of SIGTERM"));
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Starts the server again on the same data directory, ports and flags
    /// (after [`Server::kill9`] or [`Server::terminate`]).
    pub fn respawn(&mut self) -> Result<(), String> {
        if let Ok(None) = self.child.try_wait() {
            return Err("respawn: the server is still running".into());
        }
        self.child = spawn(&self.bin, &self.args, &self.dir)?;
        Ok(())
    }

    /// `Err` with the log's tail if the child has exited.
    pub fn check_running(&mut self) -> Result<(), String> {
        match self.child.try_wait() {
            Ok(Some(status)) => Err(format!("server exited with {status}\n{}", self.log_tail())),
            _ => Ok(()),
        }
    }

    /// Polls Status (and then a linearizable Range, which needs a leader)
    /// until both succeed. Fails early if the child exits.
    pub async fn wait_ready(&mut self) -> Result<Duration, String> {
        Ok(self.wait_ready_from(Instant::now()).await?.range)
    }

    /// [`Server::wait_ready`], timed from `started` (the spawn), with the
    /// first Status and the first linearizable Range timed separately.
    pub async fn wait_ready_from(&mut self, started: Instant) -> Result<Readiness, String> {
        let mut last_err = String::from("no answer yet");
        let mut status = None;
        loop {
            self.check_running()?;
            if started.elapsed() > READY_DEADLINE {
                return Err(format!(
                    "not ready after {READY_DEADLINE:?}: {last_err}\n{}",
                    self.log_tail()
                ));
            }
            match probe(&self.client_url, status.is_none()).await {
                Ok(Probe::Serving) => {
                    let range = started.elapsed();
                    return Ok(Readiness {
                        status: status.unwrap_or(range),
                        range,
                    });
                }
                Ok(Probe::StatusOnly(e)) => {
                    status.get_or_insert_with(|| started.elapsed());
                    last_err = e;
                }
                Err(e) => last_err = e,
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The last lines of the server's log, for error messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.dir.join("server.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        let tail = lines[lines.len().saturating_sub(20)..].join("\n");
        format!("--- last lines of the server log ---\n{tail}")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn spawn(bin: &Path, args: &[String], dir: &Path) -> Result<Child, String> {
    let log = File::options()
        .create(true)
        .append(true)
        .open(dir.join("server.log"))
        .map_err(|e| format!("open log in {}: {e}", dir.display()))?;
    Command::new(bin)
        .args(args)
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| e.to_string())?)
        .stderr(log)
        .spawn()
        .map_err(|e| format!("spawn {}: {e}", bin.display()))
}

enum Probe {
    /// Status and a linearizable Range both answered.
    Serving,
    /// Status answered, the Range did not (the error).
    StatusOnly(String),
}

/// A channel to `url` for one probe.
async fn probe_channel(url: &str) -> Result<Channel, String> {
    Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))
}

/// One Maintenance.Status of the server at `url`.
pub async fn status(url: &str) -> Result<StatusResponse, String> {
    let channel = probe_channel(url).await?;
    MaintenanceClient::new(channel)
        .status(StatusRequest {})
        .await
        .map(tonic::Response::into_inner)
        .map_err(|e| format!("Status: {e}"))
}

/// Status (skipped once it has answered, unless `status`), then a
/// linearizable Range, which needs a leader.
async fn probe(url: &str, status: bool) -> Result<Probe, String> {
    let channel = probe_channel(url).await?;
    if status {
        MaintenanceClient::new(channel.clone())
            .status(StatusRequest {})
            .await
            .map_err(|e| format!("Status: {e}"))?;
    }
    match KvClient::new(channel)
        .range(RangeRequest {
            key: b"kvik-bench-probe".to_vec(),
            ..Default::default()
        })
        .await
    {
        Ok(_) => Ok(Probe::Serving),
        Err(e) => Ok(Probe::StatusOnly(format!("Range: {e}"))),
    }
}

/// The loopback ports of one member.
#[derive(Clone, Copy, Debug)]
pub struct Ports {
    pub client: u16,
    pub peer: u16,
    pub metrics: u16,
}

impl Ports {
    /// Free ports for `members` members, all distinct: every listener is
    /// held until all are bound.
    pub fn free(members: usize) -> Result<Vec<Ports>, String> {
        let mut held = Vec::with_capacity(3 * members);
        let mut port = || {
            let l =
                TcpListener::bind("127.0.0.1:0").map_err(|e| format!("bind 127.0.0.1:0: {e}"))?;
            let p = l
                .local_addr()
                .map_err(|e| format!("local_addr: {e}"))?
                .port();
            held.push(l);
            Ok::<_, String>(p)
        };
        (0..members)
            .map(|_| {
                Ok(Ports {
                    client: port()?,
                    peer: port()?,
                    metrics: port()?,
                })
            })
            .collect()
    }

    pub fn peer_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.peer)
    }
}
