//! Starting, probing and stopping a server child process.

use std::fs::File;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::pb::etcdserverpb::kv_client::KvClient;
use net::pb::etcdserverpb::maintenance_client::MaintenanceClient;
use net::pb::etcdserverpb::{RangeRequest, StatusRequest};
use tonic::transport::Endpoint;

/// How long a server may take to answer Status and a linearizable read.
const READY_DEADLINE: Duration = Duration::from_secs(120);
/// Pause between readiness probes.
const POLL_INTERVAL: Duration = Duration::from_millis(20);

/// A running server child. Dropping it kills the child and removes its
/// directory (data dir and log), also while unwinding from a panic.
pub struct Server {
    child: Child,
    dir: PathBuf,
    pub client_url: String,
    pub metrics_addr: String,
}

impl Server {
    /// Starts `bin` with etcd's single-member flags on fresh ports and a
    /// fresh data dir under `dir` (which must not exist yet).
    pub fn start(bin: &Path, dir: PathBuf) -> Result<Server, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let [client, peer, metrics] = free_ports()?;
        let data_dir = dir.join("data");
        let log = File::create(dir.join("server.log"))
            .map_err(|e| format!("create log in {}: {e}", dir.display()))?;
        let client_url = format!("http://127.0.0.1:{client}");
        let peer_url = format!("http://127.0.0.1:{peer}");
        let metrics_url = format!("http://127.0.0.1:{metrics}");
        let child = Command::new(bin)
            .arg("--name")
            .arg("b1")
            .arg("--data-dir")
            .arg(&data_dir)
            .args(["--listen-client-urls", &client_url])
            .args(["--advertise-client-urls", &client_url])
            .args(["--listen-peer-urls", &peer_url])
            .args(["--initial-advertise-peer-urls", &peer_url])
            .args(["--initial-cluster", &format!("b1={peer_url}")])
            .args(["--listen-metrics-urls", &metrics_url])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", bin.display()))?;
        Ok(Server {
            child,
            dir,
            client_url,
            metrics_addr: format!("127.0.0.1:{metrics}"),
        })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Polls Status (and then a linearizable Range, which needs a leader)
    /// until both succeed. Fails early if the child exits.
    pub async fn wait_ready(&mut self) -> Result<Duration, String> {
        let started = Instant::now();
        let mut last_err = String::from("no answer yet");
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Err(format!("server exited with {status}\n{}", self.log_tail()));
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(format!(
                    "not ready after {READY_DEADLINE:?}: {last_err}\n{}",
                    self.log_tail()
                ));
            }
            match probe(&self.client_url).await {
                Ok(()) => return Ok(started.elapsed()),
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

async fn probe(url: &str) -> Result<(), String> {
    let channel = Endpoint::from_shared(url.to_string())
        .map_err(|e| e.to_string())?
        .connect_timeout(Duration::from_secs(1))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| format!("connect: {e}"))?;
    MaintenanceClient::new(channel.clone())
        .status(StatusRequest {})
        .await
        .map_err(|e| format!("Status: {e}"))?;
    KvClient::new(channel)
        .range(RangeRequest {
            key: b"kvik-bench-probe".to_vec(),
            ..Default::default()
        })
        .await
        .map_err(|e| format!("Range: {e}"))?;
    Ok(())
}

/// Three distinct free ports (all listeners are held until all are bound).
fn free_ports() -> Result<[u16; 3], String> {
    let bind = || {
        TcpListener::bind("127.0.0.1:0")
            .and_then(|l| Ok((l.local_addr()?.port(), l)))
            .map_err(|e| format!("bind 127.0.0.1:0: {e}"))
    };
    let (a, _la) = bind()?;
    let (b, _lb) = bind()?;
    let (c, _lc) = bind()?;
    Ok([a, b, c])
}
