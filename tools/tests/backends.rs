//! Both I/O backends serve and recover: io_uring when the kernel allows it,
//! and the epoll fallback (forced with `--kvik-force-epoll`), which is what
//! kvik runs on under Docker's or containerd's default seccomp profile.

mod common;

use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;

fn io_uring_allowed_by_sysctl() -> bool {
    // 0: enabled; 1: only for a privileged group; 2: disabled. Missing on
    // kernels that predate the switch (enabled).
    std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .map(|s| s.trim() == "0")
        .unwrap_or(true)
}

/// Writes through `server`, restarts it on the same data dir, and checks
/// the writes were replayed from the WAL by the same backend.
fn write_restart_read(extra: &[&str], expect_backend: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut s = Server::start_with(Kind::Kvik, extra);
    assert!(
        s.log().contains(&format!("I/O backend: {expect_backend}")),
        "expected the {expect_backend} backend to be logged:\n{}",
        s.log()
    );
    let rev = rt.block_on(async {
        let mut c = Raw::connect(s.endpoint()).await;
        let mut rev = 0;
        for i in 0..50 {
            let r =
                c.kv.put(pb::PutRequest {
                    key: format!("k{i}").into_bytes(),
                    value: vec![b'v'; i],
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            rev = r.header.unwrap().revision;
        }
        rev
    });
    assert_eq!(rev, 51);
    s.kill9();
    s.spawn();
    s.wait_ready();
    rt.block_on(async {
        let mut c = Raw::connect(s.endpoint()).await;
        let r =
            c.kv.range(pb::RangeRequest {
                key: b"k".to_vec(),
                range_end: b"l".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.count, 50);
        assert_eq!(r.header.unwrap().revision, 51);
    });
}

#[test]
fn forced_epoll_serves_and_recovers() {
    write_restart_read(&["--kvik-force-epoll"], "epoll");
}

#[test]
fn default_backend_is_probed_and_logged() {
    // Where the kernel permits io_uring, kvik must use it; where it does
    // not, it must fall back rather than fail.
    let expect = if io_uring_allowed_by_sysctl() && io_uring_works() {
        "io_uring"
    } else {
        "epoll"
    };
    write_restart_read(&[], expect);
}

/// A direct probe, independent of kvik: can this process set up a ring?
fn io_uring_works() -> bool {
    // SAFETY: io_uring_setup with a zeroed params struct; the fd is closed.
    unsafe {
        let mut params = [0u8; 120];
        let fd = libc::syscall(libc::SYS_io_uring_setup, 2u32, params.as_mut_ptr());
        if fd >= 0 {
            libc::close(fd as i32);
            true
        } else {
            false
        }
    }
}
