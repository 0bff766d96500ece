//! Real-process test harness: starts `kvik` and real etcd 3.7.2 with
//! temporary data directories and ports found by binding to :0, waits for
//! them by polling, and kills them on drop.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use net::pb::etcdserverpb as pb;

pub mod cluster;
pub mod netns;
pub mod store;

/// How long a server may take to start before the test fails.
pub const START_DEADLINE: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Kvik,
    Etcd,
}

pub struct Server {
    pub kind: Kind,
    pub child: Option<Child>,
    pub data_dir: PathBuf,
    pub client_port: u16,
    pub peer_port: u16,
    pub extra_args: Vec<String>,
    owns_dir: bool,
}

/// A port that was free a moment ago and that this test process has not
/// handed out before. The listener is dropped before the port is used, so the
/// kernel may offer the same port again on the next bind; the process-wide set
/// of issued ports keeps two members of one cluster off the same port.
pub fn free_port() -> u16 {
    static ISSUED: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut issued = ISSUED.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        if !issued.contains(&port) {
            issued.push(port);
            return port;
        }
    }
}

pub fn temp_dir(tag: &str) -> PathBuf {
    let n: u64 = rand::random();
    let dir = std::env::temp_dir().join(format!("kvik-test-{tag}-{n:016x}"));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

impl Kind {
    /// The server binary of this kind.
    pub fn bin(self) -> PathBuf {
        match self {
            Kind::Kvik => kvik_bin(),
            Kind::Etcd => etcd_bin(),
        }
    }
}

/// Starts `cmd` with stdin closed and stdout and stderr appended to `log`.
pub fn spawn_logged(cmd: &mut Command, log: &Path) -> std::io::Result<Child> {
    let out = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)?;
    cmd.stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

pub fn kvik_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_kvik"))
}

pub fn etcd_bin() -> PathBuf {
    etcd_bin_vendored::etcd_bin_path()
        .expect("etcd 3.7.2 binary for this platform")
        .to_path_buf()
}

/// etcdctl 3.4 from Debian's `etcd-client` package. A missing tool fails the
/// test, naming the install command.
pub fn etcdctl_bin() -> PathBuf {
    match Command::new("etcdctl").arg("version").env("ETCDCTL_API", "3").output() {
        Ok(out) if out.status.success() => PathBuf::from("etcdctl"),
        _ => panic!("etcdctl is missing: install it with `apt-get install etcd-client` (or run ./tools/test.sh)"),
    }
}

impl Server {
    pub fn start(kind: Kind) -> Server {
        Server::start_in(
            kind,
            temp_dir(match kind {
                Kind::Kvik => "kvik",
                Kind::Etcd => "etcd",
            }),
            true,
            &[],
        )
    }

    pub fn start_with(kind: Kind, extra_args: &[&str]) -> Server {
        let dir = temp_dir("kvik");
        Server::start_in(kind, dir, true, extra_args)
    }

    pub fn start_in(kind: Kind, data_dir: PathBuf, owns_dir: bool, extra_args: &[&str]) -> Server {
        let mut s = Server {
            kind,
            child: None,
            data_dir,
            client_port: free_port(),
            peer_port: free_port(),
            extra_args: extra_args.iter().map(|s| s.to_string()).collect(),
            owns_dir,
        };
        s.spawn();
        s.wait_ready();
        s
    }

    /// The command line the checks give etcd, given to either binary.
    pub fn args(&self) -> Vec<String> {
        let c = format!("http://127.0.0.1:{}", self.client_port);
        let p = format!("http://127.0.0.1:{}", self.peer_port);
        let mut args = vec![
            "--name".into(),
            "n1".into(),
            "--data-dir".into(),
            self.data_dir.join("data").display().to_string(),
            "--listen-client-urls".into(),
            c.clone(),
            "--advertise-client-urls".into(),
            c,
            "--listen-peer-urls".into(),
            p.clone(),
            "--initial-advertise-peer-urls".into(),
            p.clone(),
            "--initial-cluster".into(),
            format!("n1={p}"),
            "--initial-cluster-state".into(),
            "new".into(),
            "--quota-backend-bytes".into(),
            "8589934592".into(),
        ];
        args.extend(self.extra_args.iter().cloned());
        args
    }

    pub fn spawn(&mut self) {
        assert!(self.child.is_none(), "already running");
        let mut cmd = Command::new(self.kind.bin());
        cmd.args(self.args());
        let child =
            spawn_logged(&mut cmd, &self.data_dir.join("server.log")).expect("start server");
        self.child = Some(child);
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.client_port)
    }

    pub fn endpoint_host(&self) -> String {
        format!("127.0.0.1:{}", self.client_port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.data_dir.join("server.log")).unwrap_or_default()
    }

    /// Polls a Status call until it answers, or fails the test with the log.
    pub fn wait_ready(&mut self) {
        let deadline = Instant::now() + START_DEADLINE;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        loop {
            if let Some(child) = self.child.as_mut() {
                if let Ok(Some(status)) = child.try_wait() {
                    panic!(
                        "{:?} exited during start-up ({status}):\n{}",
                        self.kind,
                        self.log()
                    );
                }
            }
            let ok = rt.block_on(async {
                let Ok(ep) = tonic::transport::Endpoint::from_shared(self.endpoint()) else {
                    return false;
                };
                let Ok(ch) = ep.connect().await else {
                    return false;
                };
                let mut c = pb::maintenance_client::MaintenanceClient::new(ch);
                c.status(pb::StatusRequest {}).await.is_ok()
            });
            if ok {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{:?} did not start within {START_DEADLINE:?}:\n{}",
                self.kind,
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn kill9(&mut self) {
        if let Some(mut child) = self.child.take() {
            // SAFETY: plain kill(2) on our own child.
            unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
            let _ = child.wait();
        }
    }

    /// Runs kvik on `data_dir` with the usual arguments plus `extra`; it
    /// must exit by itself within `deadline` (a start-up refusal). Returns
    /// the exit code and everything it printed. A kvik still running at the
    /// deadline is killed and the test fails.
    pub fn run_expecting_exit(
        data_dir: &Path,
        extra: &[&str],
        deadline: Duration,
    ) -> (i32, String) {
        let s = Server {
            kind: Kind::Kvik,
            child: None,
            data_dir: data_dir.to_path_buf(),
            client_port: free_port(),
            peer_port: free_port(),
            extra_args: extra.iter().map(|s| s.to_string()).collect(),
            owns_dir: false,
        };
        let out_path = data_dir.join(format!("refusal-{:016x}.log", rand::random::<u64>()));
        let out = std::fs::File::create(&out_path).unwrap();
        let mut child = Command::new(kvik_bin())
            .args(s.args())
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .expect("start kvik");
        let until = Instant::now() + deadline;
        let status = loop {
            if let Some(st) = child.try_wait().unwrap() {
                break st;
            }
            if Instant::now() >= until {
                // SAFETY: plain kill(2) on our own child.
                unsafe { libc::kill(child.id() as i32, libc::SIGKILL) };
                let _ = child.wait();
                let text = std::fs::read_to_string(&out_path).unwrap_or_default();
                panic!(
                    "kvik did not exit within {deadline:?}: it started instead of refusing {}:\n{text}",
                    data_dir.display()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        };
        let text = std::fs::read_to_string(&out_path).unwrap_or_default();
        let _ = std::fs::remove_file(&out_path);
        (status.code().unwrap_or(-1), text)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
        if self.owns_dir && !std::thread::panicking() {
            let _ = std::fs::remove_dir_all(&self.data_dir);
        }
    }
}

/// Raw generated clients, for requests with every field under control.
pub struct Raw {
    pub kv: pb::kv_client::KvClient<tonic::transport::Channel>,
    pub maintenance: pb::maintenance_client::MaintenanceClient<tonic::transport::Channel>,
    pub cluster: pb::cluster_client::ClusterClient<tonic::transport::Channel>,
}

impl Raw {
    pub async fn connect(endpoint: String) -> Raw {
        let ch = tonic::transport::Endpoint::from_shared(endpoint)
            .unwrap()
            .connect()
            .await
            .expect("connect");
        Raw {
            kv: pb::kv_client::KvClient::new(ch.clone()).max_decoding_message_size(usize::MAX),
            maintenance: pb::maintenance_client::MaintenanceClient::new(ch.clone()),
            cluster: pb::cluster_client::ClusterClient::new(ch),
        }
    }
}

/// Appends every difference between two JSON documents to `diffs`: values,
/// array lengths, and fields present on one side only.
pub fn diff_json(
    path: &str,
    etcd: &serde_json::Value,
    kvik: &serde_json::Value,
    diffs: &mut Vec<String>,
) {
    match (etcd, kvik) {
        (serde_json::Value::Object(e), serde_json::Value::Object(k)) => {
            for (name, ev) in e {
                match k.get(name) {
                    Some(kv) => diff_json(&format!("{path}.{name}"), ev, kv, diffs),
                    None => diffs.push(format!(
                        "{path}.{name}: present in etcd ({ev}), missing in kvik"
                    )),
                }
            }
            for (name, kv) in k {
                if !e.contains_key(name) {
                    diffs.push(format!(
                        "{path}.{name}: missing in etcd, present in kvik ({kv})"
                    ));
                }
            }
        }
        (serde_json::Value::Array(e), serde_json::Value::Array(k)) => {
            if e.len() != k.len() {
                diffs.push(format!(
                    "{path}: etcd has {} elements, kvik {}",
                    e.len(),
                    k.len()
                ));
            }
            for (i, (ev, kv)) in e.iter().zip(k).enumerate() {
                diff_json(&format!("{path}[{i}]"), ev, kv, diffs);
            }
        }
        _ if etcd != kvik => diffs.push(format!("{path}: etcd {etcd}, kvik {kvik}")),
        _ => {}
    }
}
