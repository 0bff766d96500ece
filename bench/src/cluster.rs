//! The servers of one run: a single node, or `--members` members of one
//! server bootstrapped together on loopback with etcd's flags.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::server::{self, Ports, Server, POLL_INTERVAL, READY_DEADLINE};

/// The members of one run. Dropping it kills every member and removes
/// their directories, also while unwinding or when a start fails halfway.
pub struct Cluster {
    members: Vec<Server>,
    dir: PathBuf,
}

/// When a cluster first served.
#[derive(Clone, Copy, Debug)]
pub struct Ready {
    /// From the first spawn until every member served a linearizable
    /// Range and they all named the same leader.
    pub elapsed: Duration,
    /// Index of the leader in [`Cluster::members`].
    pub leader: usize,
}

impl Cluster {
    /// Starts `n` members of `bin` under `dir` (which must not exist yet).
    /// One member gets [`Server::start`]'s flags. More get etcd's bootstrap
    /// flags: `--initial-cluster` naming every member,
    /// `--initial-cluster-state new` and `--initial-cluster-token token`.
    /// `extra` goes to every member, last.
    pub fn start(
        bin: &Path,
        dir: PathBuf,
        n: usize,
        token: &str,
        extra: &[String],
    ) -> Result<Cluster, String> {
        std::fs::create_dir_all(&dir).map_err(|e| format!("create {}: {e}", dir.display()))?;
        let mut c = Cluster {
            members: Vec::with_capacity(n),
            dir,
        };
        if n == 1 {
            c.members.push(Server::start(bin, c.dir.join("b1"), extra)?);
            return Ok(c);
        }
        let ports = Ports::free(n)?;
        let names: Vec<String> = (1..=n).map(|i| format!("b{i}")).collect();
        let initial_cluster = names
            .iter()
            .zip(&ports)
            .map(|(name, p)| format!("{name}={}", p.peer_url()))
            .collect::<Vec<_>>()
            .join(",");
        let mut flags: Vec<String> = [
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            token,
        ]
        .map(String::from)
        .to_vec();
        flags.extend(extra.iter().cloned());
        for (name, p) in names.iter().zip(ports) {
            let dir = c.dir.join(name);
            let m = Server::start_member(bin, dir, name, p, &initial_cluster, &flags)?;
            c.members.push(m);
        }
        Ok(c)
    }

    pub fn members(&self) -> &[Server] {
        &self.members
    }

    /// Waits until every member answers Status and a linearizable Range
    /// and, with more than one member, until every member's Status names
    /// the same leader. Fails early if a member exits, and after
    /// [`READY_DEADLINE`].
    pub async fn wait_ready(&mut self) -> Result<Ready, String> {
        let started = Instant::now();
        for m in &mut self.members {
            let name = m.name.clone();
            m.wait_ready_from(started)
                .await
                .map_err(|e| format!("{name}: {e}"))?;
        }
        if self.members.len() == 1 {
            return Ok(Ready {
                elapsed: started.elapsed(),
                leader: 0,
            });
        }
        loop {
            let last_err = match self.leader().await {
                Ok(leader) => {
                    return Ok(Ready {
                        elapsed: started.elapsed(),
                        leader,
                    })
                }
                Err(e) => e,
            };
            for m in &mut self.members {
                let name = m.name.clone();
                m.check_running().map_err(|e| format!("{name}: {e}"))?;
            }
            if started.elapsed() > READY_DEADLINE {
                return Err(format!(
                    "the members did not agree on a leader within {READY_DEADLINE:?}: {last_err}"
                ));
            }
            tokio::time::sleep(POLL_INTERVAL).await;
        }
    }

    /// The index of the member that every member's Status names as
    /// leader. `Err` says what they answered instead.
    pub async fn leader(&self) -> Result<usize, String> {
        let mut ids = Vec::with_capacity(self.members.len());
        let mut leaders = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let s = server::status(&m.client_url)
                .await
                .map_err(|e| format!("{}: {e}", m.name))?;
            ids.push(s.header.map_or(0, |h| h.member_id));
            leaders.push(s.leader);
        }
        let said = || {
            self.members
                .iter()
                .zip(&leaders)
                .map(|(m, l)| format!("{} says {l:x}", m.name))
                .collect::<Vec<_>>()
                .join(", ")
        };
        let first = leaders[0];
        if first == 0 || leaders.iter().any(|l| *l != first) {
            return Err(format!("no common leader ({})", said()));
        }
        ids.iter()
            .position(|id| *id == first)
            .ok_or_else(|| format!("the leader is no member's id ({})", said()))
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        // Each member kills its process and removes its own directory.
        self.members.clear();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
