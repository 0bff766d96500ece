//! The narrow I/O boundary of raftlog.
//!
//! Everything raftlog persists goes through [`Storage`] (one directory) and
//! [`StorageFile`] (one file in it). The traits are deliberately small so that
//! two implementations stay easy to reason about:
//!
//! * the real one, in the `net` crate, over completion-based (io_uring) files;
//! * [`crate::sim::SimDisk`], an in-memory disk with crash and fault injection
//!   used by tests.
//!
//! Conventions shared by both:
//!
//! * Futures are not required to be `Send`: the WAL runs on one core's
//!   executor.
//! * Buffers are passed by value and handed back with the result, because
//!   completion-based I/O owns the buffer while the operation is in flight.
//!   Callers reuse the returned buffer.
//! * File names are plain names inside the directory (no separators).
//! * Durability: file contents (including size changes) are durable only after
//!   a successful [`StorageFile::sync_data`]; directory changes (`create`,
//!   `remove`) are durable only after a successful [`Storage::sync_dir`].
//!   After any error from a sync the state of the data is unknown and the
//!   caller must not retry the sync and assume success.

use std::future::Future;
use std::io;
use std::sync::Arc;

/// Read-only bytes of a sealed file, as [`Storage::map`] returns them.
pub type Mapped = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// One directory of files.
pub trait Storage {
    /// Handle to an open file of this storage.
    type File: StorageFile;

    /// Names of the files currently in the directory, in no particular order.
    fn list(&self) -> impl Future<Output = io::Result<Vec<String>>>;

    /// Opens an existing file for reading and writing.
    fn open(&self, name: &str) -> impl Future<Output = io::Result<Self::File>>;

    /// Creates a new, empty file for reading and writing. Fails with
    /// [`io::ErrorKind::AlreadyExists`] if the name exists.
    fn create(&self, name: &str) -> impl Future<Output = io::Result<Self::File>>;

    /// Removes a file. Fails with [`io::ErrorKind::NotFound`] if it is absent.
    fn remove(&self, name: &str) -> impl Future<Output = io::Result<()>>;

    /// Makes earlier `create` and `remove` calls on this directory durable.
    fn sync_dir(&self) -> impl Future<Output = io::Result<()>>;

    /// Maps a sealed file read-only (a memory map on real disks). The file
    /// must never be written or truncated again: it is only removed, which
    /// leaves existing maps valid. Never write through a map: on a full
    /// disk that would turn ENOSPC into SIGBUS.
    fn map(&self, name: &str) -> impl Future<Output = io::Result<Mapped>>;
}

/// One open file.
// `len` is an async query of the file size, not a container length.
#[allow(clippy::len_without_is_empty)]
pub trait StorageFile {
    /// Current length of the file in bytes.
    fn len(&self) -> impl Future<Output = io::Result<u64>>;

    /// Reads from `pos` into the spare capacity of `buf`
    /// (`buf.len()..buf.capacity()`), appending to it, and returns the number
    /// of bytes read together with the buffer. `Ok(0)` means end of file (or
    /// no spare capacity). A short read is allowed; callers loop.
    fn read_at(&self, buf: Vec<u8>, pos: u64)
        -> impl Future<Output = (io::Result<usize>, Vec<u8>)>;

    /// Writes all of `buf` at `pos`, extending the file if needed, and hands
    /// the buffer back. Not durable until [`StorageFile::sync_data`].
    fn write_all_at(
        &mut self,
        buf: Vec<u8>,
        pos: u64,
    ) -> impl Future<Output = (io::Result<()>, Vec<u8>)>;

    /// Makes all earlier writes and length changes of this file durable
    /// (`fdatasync`).
    fn sync_data(&mut self) -> impl Future<Output = io::Result<()>>;

    /// Truncates or extends (with zeros) the file to `len` bytes. Not durable
    /// until [`StorageFile::sync_data`].
    fn set_len(&mut self, len: u64) -> impl Future<Output = io::Result<()>>;
}

/// Reads a whole file (as long as it was when the read began).
pub async fn read_whole<F: StorageFile>(file: &F) -> io::Result<Vec<u8>> {
    let len = usize::try_from(file.len().await?)
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "file too large"))?;
    let mut buf = Vec::with_capacity(len);
    while buf.len() < len {
        let pos = buf.len() as u64;
        let (r, b) = file.read_at(buf, pos).await;
        buf = b;
        if r? == 0 {
            break;
        }
    }
    buf.truncate(len);
    Ok(buf)
}
