//! The real-file `raftlog::Storage`: a directory of files driven through the
//! core's compio runtime. With io_uring the writes and fsyncs are ring
//! operations; on the epoll fallback compio runs them on helper threads, so
//! an fsync never blocks the core.

use std::io;
use std::path::{Path, PathBuf};

use compio::io::{AsyncReadAt, AsyncWriteAtExt};

/// One directory of WAL segments.
#[derive(Debug, Clone)]
pub struct DirStorage {
    dir: PathBuf,
}

impl DirStorage {
    /// Opens `dir`, creating it (and making its entry durable) if needed.
    pub async fn open(dir: &Path) -> io::Result<DirStorage> {
        if !dir.exists() {
            std::fs::create_dir_all(dir)?;
            if let Some(parent) = dir.parent() {
                compio::fs::File::open(parent).await?.sync_all().await?;
            }
        }
        Ok(DirStorage {
            dir: dir.to_path_buf(),
        })
    }

    fn path(&self, name: &str) -> PathBuf {
        assert!(
            !name.contains('/') && !name.is_empty(),
            "plain file names only: {name:?}"
        );
        self.dir.join(name)
    }
}

/// A file of a `DirStorage`.
pub struct DirFile {
    file: compio::fs::File,
}

impl raftlog::Storage for DirStorage {
    type File = DirFile;

    async fn list(&self) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        names.sort();
        Ok(names)
    }

    async fn open(&self, name: &str) -> io::Result<DirFile> {
        let file = compio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.path(name))
            .await?;
        Ok(DirFile { file })
    }

    async fn create(&self, name: &str) -> io::Result<DirFile> {
        let file = compio::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(self.path(name))
            .await?;
        Ok(DirFile { file })
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        compio::fs::remove_file(self.path(name)).await
    }

    async fn sync_dir(&self) -> io::Result<()> {
        compio::fs::File::open(&self.dir).await?.sync_all().await
    }

    async fn map(&self, name: &str) -> io::Result<raftlog::Mapped> {
        let file = std::fs::File::open(self.path(name))?;
        if file.metadata()?.len() == 0 {
            // A zero-length map is refused by the kernel.
            return Ok(std::sync::Arc::new(Vec::new()));
        }
        // SAFETY: kvik maps only sealed files, which it never writes or
        // truncates again (they are only unlinked, which keeps the mapping
        // valid). The data directory is locked against other kvik
        // processes; another program changing the file would break this,
        // as it would any database's files. The checksums on every read
        // catch damaged bytes.
        let map = unsafe { memmap2::Mmap::map(&file)? };
        Ok(std::sync::Arc::new(map))
    }
}

impl raftlog::StorageFile for DirFile {
    async fn len(&self) -> io::Result<u64> {
        Ok(self.file.metadata().await?.len())
    }

    async fn read_at(&self, buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>) {
        let compio::BufResult(res, buf) = self.file.read_at(buf, pos).await;
        (res, buf)
    }

    async fn write_all_at(&mut self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        let compio::BufResult(res, buf) = self.file.write_all_at(buf, pos).await;
        (res, buf)
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data().await
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len).await
    }
}
