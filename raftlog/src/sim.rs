//! `SimDisk`: an in-memory [`Storage`] with crash and fault injection.
//!
//! Tests of raftlog and of other crates use it in place of real files. It is
//! deterministic: the only randomness is drawn from the seed passed to
//! [`SimDisk::crash`].
//!
//! # Model
//!
//! Each file has a *durable* content (as of its last successful
//! [`StorageFile::sync_data`]) and a *volatile* content (what reads see now).
//! The difference is kept as the ordered list of unsynced operations (writes
//! and length changes). The directory likewise has a durable and a volatile
//! name table plus the list of unsynced `create`/`remove` operations.
//!
//! [`SimDisk::crash`] simulates power loss and a restart. Starting from the
//! durable state, every unsynced operation is resolved independently (disks
//! reorder cached writes):
//!
//! * a directory operation persists or is lost (a file whose creation is lost
//!   disappears together with its data);
//! * a length change persists or is lost;
//! * a write is lost, persists fully, or is torn: a random byte prefix of it
//!   persists and the rest of its range keeps its old bytes (or is absent if
//!   it was beyond the end of file), or the rest of its range is filled with
//!   zeros or random garbage.
//!
//! What survives becomes the new durable and volatile state. File handles
//! from before the crash stop working.
//!
//! [`SimDisk::cut_power_after`] stops the disk at an exact operation so that
//! a test can crash anywhere inside a sequence of I/O calls, including between
//! a write and its sync: from that operation on every call fails until
//! `crash` is called. A write that hits the cut is recorded as unsynced (it
//! may persist, be lost or torn), any other operation that hits it does not
//! happen.
//!
//! Not modelled: reordering of sectors *inside* a single write (a torn write
//! always keeps a prefix), and bit rot other than explicit
//! [`SimDisk::flip_bit`].

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::pin::{pin, Pin};
use std::rc::Rc;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

use crate::storage::{Storage, StorageFile};

/// Shared handle to one simulated directory. Clones refer to the same disk.
#[derive(Clone, Default)]
pub struct SimDisk {
    inner: Rc<RefCell<Inner>>,
}

/// Operation counters of a [`SimDisk`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Mutating operations issued (create, remove, sync_dir, write, sync_data,
    /// set_len); [`SimDisk::cut_power_after`] counts these.
    pub mutations: u64,
    /// Successful `sync_data` calls.
    pub data_syncs: u64,
    /// Successful `sync_dir` calls.
    pub dir_syncs: u64,
    /// Successful writes.
    pub writes: u64,
    /// Bytes in successful writes.
    pub bytes_written: u64,
    /// Crashes simulated.
    pub crashes: u64,
}

#[derive(Default)]
struct Inner {
    files: BTreeMap<u64, FileState>,
    next_file_id: u64,
    dir: BTreeMap<String, u64>,
    durable_dir: BTreeMap<String, u64>,
    unsynced_dir: Vec<DirOp>,
    /// Bumped by every crash; handles of older generations are stale.
    generation: u64,
    /// Mutating operations still allowed before the power is cut.
    power_cut_after: Option<u64>,
    powered_off: bool,
    fail_next_sync: bool,
    fail_next_write: bool,
    lying_sync: bool,
    yield_each_op: bool,
    stats: SimStats,
}

#[derive(Default)]
struct FileState {
    durable: Vec<u8>,
    volatile: Vec<u8>,
    unsynced: Vec<FileOp>,
}

enum FileOp {
    Write { pos: u64, data: Vec<u8> },
    SetLen(u64),
}

enum DirOp {
    Create(String, u64),
    Remove(String),
}

fn power_lost() -> io::Error {
    io::Error::other("simulated power loss")
}

fn to_usize(v: u64) -> io::Result<usize> {
    usize::try_from(v).map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "offset too large"))
}

fn apply_write(content: &mut Vec<u8>, pos: usize, data: &[u8]) {
    let end = pos + data.len();
    if content.len() < end {
        content.resize(end, 0);
    }
    content[pos..end].copy_from_slice(data);
}

fn apply_op(content: &mut Vec<u8>, op: &FileOp) {
    match op {
        FileOp::Write { pos, data } => apply_write(content, *pos as usize, data),
        FileOp::SetLen(len) => content.resize(*len as usize, 0),
    }
}

impl Inner {
    fn check_powered(&self) -> io::Result<()> {
        if self.powered_off {
            Err(power_lost())
        } else {
            Ok(())
        }
    }

    /// Counts one mutating operation; returns true if the power is cut at
    /// this very operation.
    fn tick(&mut self) -> bool {
        self.stats.mutations += 1;
        match self.power_cut_after {
            Some(0) => {
                self.power_cut_after = None;
                self.powered_off = true;
                true
            }
            Some(n) => {
                self.power_cut_after = Some(n - 1);
                false
            }
            None => false,
        }
    }

    fn file_id(&self, name: &str) -> io::Result<u64> {
        self.dir
            .get(name)
            .copied()
            .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no file {name:?}")))
    }
}

impl SimDisk {
    /// An empty disk.
    pub fn new() -> SimDisk {
        SimDisk::default()
    }

    /// Simulates power loss followed by a restart (see the module doc). All
    /// randomness comes from `rng_seed`. Clears [`SimDisk::cut_power_after`],
    /// `fail_next_*` and the powered-off state; keeps `set_lying_sync`.
    pub fn crash(&self, rng_seed: u64) {
        let mut inner = self.inner.borrow_mut();
        let mut rng = SplitMix64::new(rng_seed);
        let inner = &mut *inner;

        let mut dir = inner.durable_dir.clone();
        for op in inner.unsynced_dir.drain(..) {
            if rng.below(2) == 0 {
                continue; // lost
            }
            match op {
                DirOp::Create(name, id) => {
                    dir.insert(name, id);
                }
                DirOp::Remove(name) => {
                    dir.remove(&name);
                }
            }
        }

        let mut files = BTreeMap::new();
        for &id in dir.values() {
            let Some(state) = inner.files.get(&id) else {
                continue;
            };
            let mut content = state.durable.clone();
            for op in &state.unsynced {
                match op {
                    FileOp::SetLen(_) => {
                        if rng.below(2) == 1 {
                            apply_op(&mut content, op);
                        }
                    }
                    FileOp::Write { pos, data } => {
                        let pos = *pos as usize;
                        match rng.below(4) {
                            0 => {} // lost
                            1 => apply_write(&mut content, pos, data),
                            2 => {
                                let keep = rng.below(data.len() as u64 + 1) as usize;
                                apply_write(&mut content, pos, &data[..keep]);
                            }
                            _ => {
                                let keep = rng.below(data.len() as u64 + 1) as usize;
                                let mut torn = data[..keep].to_vec();
                                if rng.below(2) == 0 {
                                    torn.resize(data.len(), 0);
                                } else {
                                    while torn.len() < data.len() {
                                        torn.push(rng.next() as u8);
                                    }
                                }
                                apply_write(&mut content, pos, &torn);
                            }
                        }
                    }
                }
            }
            files.insert(
                id,
                FileState {
                    durable: content.clone(),
                    volatile: content,
                    unsynced: Vec::new(),
                },
            );
        }

        inner.files = files;
        inner.durable_dir = dir.clone();
        inner.dir = dir;
        inner.generation += 1;
        inner.power_cut_after = None;
        inner.powered_off = false;
        inner.fail_next_sync = false;
        inner.fail_next_write = false;
        inner.stats.crashes += 1;
    }

    /// Lets `ops` more mutating operations succeed, then cuts the power at
    /// the next one: it and every later call fail until [`SimDisk::crash`].
    pub fn cut_power_after(&self, ops: u64) {
        self.inner.borrow_mut().power_cut_after = Some(ops);
    }

    /// True once a power cut armed by [`SimDisk::cut_power_after`] has hit.
    pub fn is_powered_off(&self) -> bool {
        self.inner.borrow().powered_off
    }

    /// The next `sync_data` fails with an I/O error and makes nothing
    /// durable (the unsynced data may still persist or be lost at a crash).
    pub fn fail_next_sync(&self) {
        self.inner.borrow_mut().fail_next_sync = true;
    }

    /// The next write fails with an I/O error and changes nothing.
    pub fn fail_next_write(&self) {
        self.inner.borrow_mut().fail_next_write = true;
    }

    /// A deliberately broken disk for testing test oracles: while set,
    /// `sync_data` reports success but makes nothing durable.
    pub fn set_lying_sync(&self, lying: bool) {
        self.inner.borrow_mut().lying_sync = lying;
    }

    /// While set, every storage call returns `Pending` once (waking itself)
    /// before doing its work, so tests can drop futures part-way through.
    pub fn set_yield_each_op(&self, on: bool) {
        self.inner.borrow_mut().yield_each_op = on;
    }

    /// Flips one bit of a file, in both its durable and volatile content
    /// (media corruption). Panics if the file or offset does not exist.
    pub fn flip_bit(&self, name: &str, offset: u64, bit: u8) {
        assert!(bit < 8, "bit {bit} out of range");
        let mut inner = self.inner.borrow_mut();
        let id = inner.file_id(name).expect("flip_bit: no such file");
        let state = inner.files.get_mut(&id).expect("file state");
        let offset = offset as usize;
        assert!(
            offset < state.volatile.len(),
            "flip_bit: offset {offset} beyond end of {name} ({} bytes)",
            state.volatile.len()
        );
        state.volatile[offset] ^= 1 << bit;
        if offset < state.durable.len() {
            state.durable[offset] ^= 1 << bit;
        }
    }

    /// Names of the files in the directory now, sorted.
    pub fn file_names(&self) -> Vec<String> {
        self.inner.borrow().dir.keys().cloned().collect()
    }

    /// Current (volatile) content of a file.
    pub fn file_bytes(&self, name: &str) -> Option<Vec<u8>> {
        let inner = self.inner.borrow();
        let id = inner.dir.get(name)?;
        Some(inner.files[id].volatile.clone())
    }

    /// Creates or replaces a file with `bytes`, durably (content and
    /// directory entry), without counting as operations. For building test
    /// fixtures.
    pub fn put_file(&self, name: &str, bytes: &[u8]) {
        let mut inner = self.inner.borrow_mut();
        let id = match inner.dir.get(name) {
            Some(&id) => id,
            None => {
                let id = inner.next_file_id;
                inner.next_file_id += 1;
                id
            }
        };
        inner.files.insert(
            id,
            FileState {
                durable: bytes.to_vec(),
                volatile: bytes.to_vec(),
                unsynced: Vec::new(),
            },
        );
        inner.dir.insert(name.to_string(), id);
        inner.durable_dir.insert(name.to_string(), id);
    }

    /// Operation counters.
    pub fn stats(&self) -> SimStats {
        self.inner.borrow().stats
    }
}

impl fmt::Debug for SimDisk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let inner = self.inner.borrow();
        f.debug_struct("SimDisk")
            .field("files", &inner.dir.keys().collect::<Vec<_>>())
            .field("powered_off", &inner.powered_off)
            .field("stats", &inner.stats)
            .finish()
    }
}

/// An open file of a [`SimDisk`].
pub struct SimFile {
    disk: Rc<RefCell<Inner>>,
    id: u64,
    generation: u64,
}

impl fmt::Debug for SimFile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimFile").field("id", &self.id).finish()
    }
}

impl SimFile {
    fn check(&self, inner: &Inner) -> io::Result<()> {
        inner.check_powered()?;
        if inner.generation != self.generation {
            return Err(io::Error::other(
                "file handle from before a simulated crash",
            ));
        }
        Ok(())
    }
}

impl Storage for SimDisk {
    type File = SimFile;

    async fn list(&self) -> io::Result<Vec<String>> {
        maybe_yield(&self.inner).await;
        let inner = self.inner.borrow();
        inner.check_powered()?;
        Ok(inner.dir.keys().cloned().collect())
    }

    async fn open(&self, name: &str) -> io::Result<SimFile> {
        maybe_yield(&self.inner).await;
        let inner = self.inner.borrow();
        inner.check_powered()?;
        let id = inner.file_id(name)?;
        Ok(SimFile {
            disk: self.inner.clone(),
            id,
            generation: inner.generation,
        })
    }

    async fn create(&self, name: &str) -> io::Result<SimFile> {
        maybe_yield(&self.inner).await;
        let mut inner = self.inner.borrow_mut();
        inner.check_powered()?;
        if inner.tick() {
            return Err(power_lost());
        }
        if inner.dir.contains_key(name) {
            return Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("file {name:?} exists"),
            ));
        }
        let id = inner.next_file_id;
        inner.next_file_id += 1;
        inner.files.insert(id, FileState::default());
        inner.dir.insert(name.to_string(), id);
        inner.unsynced_dir.push(DirOp::Create(name.to_string(), id));
        Ok(SimFile {
            disk: self.inner.clone(),
            id,
            generation: inner.generation,
        })
    }

    async fn remove(&self, name: &str) -> io::Result<()> {
        maybe_yield(&self.inner).await;
        let mut inner = self.inner.borrow_mut();
        inner.check_powered()?;
        if inner.tick() {
            return Err(power_lost());
        }
        inner.file_id(name)?;
        inner.dir.remove(name);
        inner.unsynced_dir.push(DirOp::Remove(name.to_string()));
        Ok(())
    }

    async fn map(&self, name: &str) -> io::Result<crate::storage::Mapped> {
        maybe_yield(&self.inner).await;
        let inner = self.inner.borrow();
        inner.check_powered()?;
        let id = inner.file_id(name)?;
        // The page-cache view: what was written, synced or not.
        Ok(Arc::new(inner.files[&id].volatile.clone()))
    }

    async fn sync_dir(&self) -> io::Result<()> {
        maybe_yield(&self.inner).await;
        let mut inner = self.inner.borrow_mut();
        inner.check_powered()?;
        if inner.tick() {
            return Err(power_lost());
        }
        inner.durable_dir = inner.dir.clone();
        inner.unsynced_dir.clear();
        inner.stats.dir_syncs += 1;
        Ok(())
    }
}

impl StorageFile for SimFile {
    async fn len(&self) -> io::Result<u64> {
        maybe_yield(&self.disk).await;
        let inner = self.disk.borrow();
        self.check(&inner)?;
        Ok(inner.files[&self.id].volatile.len() as u64)
    }

    async fn read_at(&self, mut buf: Vec<u8>, pos: u64) -> (io::Result<usize>, Vec<u8>) {
        maybe_yield(&self.disk).await;
        let inner = self.disk.borrow();
        if let Err(e) = self.check(&inner) {
            return (Err(e), buf);
        }
        let content = &inner.files[&self.id].volatile;
        let pos = match to_usize(pos) {
            Ok(p) => p.min(content.len()),
            Err(e) => return (Err(e), buf),
        };
        let n = (buf.capacity() - buf.len()).min(content.len() - pos);
        buf.extend_from_slice(&content[pos..pos + n]);
        (Ok(n), buf)
    }

    async fn write_all_at(&mut self, buf: Vec<u8>, pos: u64) -> (io::Result<()>, Vec<u8>) {
        maybe_yield(&self.disk).await;
        let mut inner = self.disk.borrow_mut();
        if let Err(e) = self.check(&inner) {
            return (Err(e), buf);
        }
        if let Err(e) = to_usize(pos).and_then(|p| to_usize(p as u64 + buf.len() as u64)) {
            return (Err(e), buf);
        }
        if inner.fail_next_write {
            inner.fail_next_write = false;
            return (Err(io::Error::other("injected write error")), buf);
        }
        let cut = inner.tick();
        let state = inner.files.get_mut(&self.id).expect("file state");
        apply_write(&mut state.volatile, pos as usize, &buf);
        state.unsynced.push(FileOp::Write {
            pos,
            data: buf.clone(),
        });
        if cut {
            return (Err(power_lost()), buf);
        }
        inner.stats.writes += 1;
        inner.stats.bytes_written += buf.len() as u64;
        (Ok(()), buf)
    }

    async fn sync_data(&mut self) -> io::Result<()> {
        maybe_yield(&self.disk).await;
        let mut inner = self.disk.borrow_mut();
        self.check(&inner)?;
        if inner.tick() {
            return Err(power_lost());
        }
        if inner.fail_next_sync {
            inner.fail_next_sync = false;
            return Err(io::Error::other("injected fsync error"));
        }
        if inner.lying_sync {
            return Ok(());
        }
        let state = inner.files.get_mut(&self.id).expect("file state");
        for op in state.unsynced.drain(..) {
            apply_op(&mut state.durable, &op);
        }
        debug_assert!(state.durable == state.volatile);
        inner.stats.data_syncs += 1;
        Ok(())
    }

    async fn set_len(&mut self, len: u64) -> io::Result<()> {
        maybe_yield(&self.disk).await;
        let mut inner = self.disk.borrow_mut();
        self.check(&inner)?;
        to_usize(len)?;
        if inner.tick() {
            return Err(power_lost());
        }
        let state = inner.files.get_mut(&self.id).expect("file state");
        let op = FileOp::SetLen(len);
        apply_op(&mut state.volatile, &op);
        state.unsynced.push(op);
        Ok(())
    }
}

async fn maybe_yield(inner: &Rc<RefCell<Inner>>) {
    if inner.borrow().yield_each_op {
        YieldOnce(false).await;
    }
}

struct YieldOnce(bool);

impl Future for YieldOnce {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    }
}

struct ThreadWaker(Thread);

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.0.unpark();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.unpark();
    }
}

/// Runs a future to completion on the current thread. Enough for tests over
/// [`SimDisk`], whose operations never wait on anything external; it is not
/// an executor for production use.
pub fn block_on<F: Future>(fut: F) -> F::Output {
    let mut fut = pin!(fut);
    let waker = Waker::from(Arc::new(ThreadWaker(thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(v) = fut.as_mut().poll(&mut cx) {
            return v;
        }
        thread::park();
    }
}

/// Small deterministic generator (SplitMix64), so the simulation does not
/// depend on an external crate's stream stability.
struct SplitMix64(u64);

impl SplitMix64 {
    fn new(seed: u64) -> SplitMix64 {
        SplitMix64(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform-ish value in `0..n` (`n > 0`).
    fn below(&mut self, n: u64) -> u64 {
        debug_assert!(n > 0);
        self.next() % n
    }
}
