//! Per-core runtime plumbing: building a compio runtime with the right
//! driver, a local executor for hyper, a cooperative yield, and deadlines.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use compio::driver::{DriverType, ProactorBuilder};
use compio::runtime::{Runtime, RuntimeBuilder};

/// Tasks another core may wake at once before the waker spins: the shard
/// answers up to a whole batch of clients on other cores in one go (compio's
/// default is 64).
pub const REMOTE_WAKE_QUEUE_TASKS: usize = 8192;

/// Which I/O driver a core's runtime ended up with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    IoUring,
    Epoll,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Backend::IoUring => f.write_str("io_uring"),
            Backend::Epoll => f.write_str("epoll (fsync on helper threads)"),
        }
    }
}

/// Builds one core's runtime. Without `force_epoll` the driver probes
/// io_uring and falls back to epoll when it is unavailable or blocked by a
/// seccomp profile; with it, epoll is used unconditionally.
pub fn build_runtime(force_epoll: bool) -> std::io::Result<(Runtime, Backend)> {
    let mut proactor = ProactorBuilder::new();
    if force_epoll {
        proactor.driver_type(DriverType::Poll);
    }
    let runtime = RuntimeBuilder::new()
        .with_proactor(proactor)
        .sync_queue_size(REMOTE_WAKE_QUEUE_TASKS)
        .build()?;
    let backend = if runtime.driver_type().is_iouring() {
        Backend::IoUring
    } else {
        Backend::Epoll
    };
    Ok((runtime, backend))
}

/// hyper's executor, spawning on the current core's compio runtime. Unlike
/// cyper-core's executor it does not demand `Send` futures.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future<Output = ()> + 'static,
{
    fn execute(&self, fut: F) {
        compio::runtime::spawn(fut).detach();
    }
}

/// Yields to the executor once. compio has no cooperative budget, so long
/// loops that always find work must call this themselves.
pub fn yield_now() -> impl Future<Output = ()> {
    struct YieldNow(bool);
    impl Future for YieldNow {
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
    YieldNow(false)
}
