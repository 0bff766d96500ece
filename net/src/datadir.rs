//! The data directory: its lock, the member's persistent identity, and the
//! refusal to start on a directory that holds etcd's own files.
//!
//! Layout:
//! - `LOCK`: held with `flock` for the life of the process;
//! - `member.id`: cluster and member ids, written once, atomically;
//! - `wal/`: the write-ahead log segments.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};

/// The ids a member reports in every response header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Identity {
    pub cluster_id: u64,
    pub member_id: u64,
}

#[derive(Debug)]
pub enum DataDirError {
    Io { path: PathBuf, err: std::io::Error },
    Locked { path: PathBuf },
    EtcdData { path: PathBuf },
    BadIdentity { path: PathBuf, reason: String },
}

impl std::fmt::Display for DataDirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DataDirError::Io { path, err } => write!(f, "data dir {}: {err}", path.display()),
            DataDirError::Locked { path } => write!(
                f,
                "data dir {} is locked by another running process; refusing to start",
                path.display()
            ),
            DataDirError::EtcdData { path } => write!(
                f,
                "data dir holds etcd's files ({}): kvik cannot read etcd's WAL or bbolt database; \
                 refusing to start rather than serve an empty cluster. Migrate with a snapshot \
                 restore, or point --data-dir at a new directory",
                path.display()
            ),
            DataDirError::BadIdentity { path, reason } => {
                write!(
                    f,
                    "{}: unreadable member identity ({reason}); refusing to start",
                    path.display()
                )
            }
        }
    }
}

impl std::error::Error for DataDirError {}

/// An open, locked data directory.
#[derive(Debug)]
pub struct DataDir {
    path: PathBuf,
    identity: Identity,
    _lock: File,
}

const IDENTITY_FILE: &str = "member.id";
const IDENTITY_MAGIC: &str = "kvik-member v1";

impl DataDir {
    /// Opens (creating if needed) and locks `path`. A new directory records
    /// `fresh` as its identity (etcd's member and cluster ids, derived from
    /// the bootstrap flags by the caller); an existing one keeps its own.
    pub fn open(path: &Path, fresh: Identity) -> Result<DataDir, DataDirError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |err| DataDirError::Io { path: p, err }
        };
        for etcd_file in ["member/wal", "member/snap/db"] {
            let p = path.join(etcd_file);
            if p.exists() {
                return Err(DataDirError::EtcdData { path: p });
            }
        }
        std::fs::create_dir_all(path).map_err(io(path))?;
        let lock_path = path.join("LOCK");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        // SAFETY: flock on a valid, owned descriptor.
        let rc = unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc != 0 {
            return Err(DataDirError::Locked {
                path: path.to_path_buf(),
            });
        }
        let id_path = path.join(IDENTITY_FILE);
        let identity = match std::fs::read_to_string(&id_path) {
            Ok(text) => parse_identity(&text).map_err(|reason| DataDirError::BadIdentity {
                path: id_path.clone(),
                reason,
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let identity = fresh;
                write_atomically(path, IDENTITY_FILE, render_identity(identity).as_bytes())
                    .map_err(io(&id_path))?;
                identity
            }
            Err(e) => {
                return Err(DataDirError::Io {
                    path: id_path,
                    err: e,
                })
            }
        };
        Ok(DataDir {
            path: path.to_path_buf(),
            identity,
            _lock: lock,
        })
    }

    /// Whether `path` already holds a member (its identity was written).
    pub fn is_initialized(path: &Path) -> bool {
        path.join(IDENTITY_FILE).exists()
    }

    pub fn identity(&self) -> Identity {
        self.identity
    }

    pub fn wal_dir(&self) -> PathBuf {
        self.path.join("wal")
    }

    /// The revision store: segments and manifests.
    pub fn store_dir(&self) -> PathBuf {
        self.path.join("store")
    }
}

fn render_identity(id: Identity) -> String {
    format!(
        "{IDENTITY_MAGIC}\ncluster_id={:016x}\nmember_id={:016x}\n",
        id.cluster_id, id.member_id
    )
}

fn parse_identity(text: &str) -> Result<Identity, String> {
    let mut lines = text.lines();
    if lines.next() != Some(IDENTITY_MAGIC) {
        return Err("bad header".into());
    }
    let mut field = |name: &str| -> Result<u64, String> {
        let line = lines.next().ok_or_else(|| format!("missing {name}"))?;
        let v = line
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('='))
            .ok_or_else(|| format!("bad {name} line"))?;
        u64::from_str_radix(v, 16).map_err(|e| format!("bad {name}: {e}"))
    };
    let cluster_id = field("cluster_id")?;
    let member_id = field("member_id")?;
    Ok(Identity {
        cluster_id,
        member_id,
    })
}

/// Writes `dir/name` so that a crash leaves either the old or the new file.
fn write_atomically(dir: &Path, name: &str, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(format!("{name}.tmp"));
    {
        let mut f = File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, dir.join(name))?;
    File::open(dir)?.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::hash::{BuildHasher, Hasher};

    const ID: Identity = Identity {
        cluster_id: 7,
        member_id: 9,
    };

    #[test]
    fn identity_persists_and_lock_excludes() {
        let dir = tempdir();
        let a = DataDir::open(&dir, ID).unwrap();
        let id = a.identity();
        assert!(matches!(
            DataDir::open(&dir, ID),
            Err(DataDirError::Locked { .. })
        ));
        drop(a);
        let b = DataDir::open(&dir, ID).unwrap();
        assert_eq!(b.identity(), id);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn refuses_etcd_data() {
        let dir = tempdir();
        std::fs::create_dir_all(dir.join("member/wal")).unwrap();
        let err = DataDir::open(&dir, ID).unwrap_err();
        assert!(matches!(err, DataDirError::EtcdData { .. }));
        assert!(err.to_string().contains("member/wal"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn corrupt_identity_refused() {
        let dir = tempdir();
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(IDENTITY_FILE), "garbage").unwrap();
        assert!(matches!(
            DataDir::open(&dir, ID),
            Err(DataDirError::BadIdentity { .. })
        ));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    fn tempdir() -> PathBuf {
        let n: u64 = std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish();
        std::env::temp_dir().join(format!("kvik-datadir-test-{n:x}"))
    }
}
