//! Damaged and foreign data directories.
//!
//! - A flipped bit in a WAL record that is not the last one: start-up is
//!   refused, naming the segment file and the damaged record's offset, and
//!   the file is left as it was.
//! - A torn last record (cut mid-way, garbage or zeros appended): kvik
//!   starts, serves every write before the tail, says it truncated, and
//!   later writes survive another crash.
//! - A second kvik on a data directory in use: refused ("locked"); on a
//!   client URL another kvik serves: refused ("address in use").
//! - A data directory holding etcd's files, planted or written by a real
//!   etcd 3.7.2: refused, naming etcd's files, which are left untouched.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use common::store::offsets_named;
use common::{Kind, Raw, Server};
use net::pb::etcdserverpb as pb;

/// WAL format: a 32-byte segment header, then records made of a 25-byte
/// header {len u32, crc32c u32, type u8, term u64, index u64} and `len`
/// payload bytes.
const SEGMENT_HEADER: usize = 32;
const RECORD_HEADER: usize = 25;

/// A refusal must come well within this; a kvik that starts instead of
/// refusing is killed and the test fails.
const REFUSAL_DEADLINE: Duration = Duration::from_secs(10);

/// One record of a segment file.
#[derive(Debug, Clone, Copy)]
struct Record {
    offset: usize,
    /// Header and payload.
    len: usize,
    index: u64,
}

impl Record {
    fn payload<'a>(&self, segment: &'a [u8]) -> &'a [u8] {
        &segment[self.offset + RECORD_HEADER..self.offset + self.len]
    }

    /// Whether this record's entry carries `needle` (a put of that key).
    fn holds(&self, segment: &[u8], needle: &[u8]) -> bool {
        self.payload(segment)
            .windows(needle.len())
            .any(|w| w == needle)
    }
}

fn records(bytes: &[u8]) -> Vec<Record> {
    let mut out = Vec::new();
    let mut off = SEGMENT_HEADER;
    while off + RECORD_HEADER <= bytes.len() {
        let len = u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) as usize;
        if off + RECORD_HEADER + len > bytes.len() {
            break;
        }
        let index = u64::from_le_bytes(bytes[off + 17..off + 25].try_into().unwrap());
        out.push(Record {
            offset: off,
            len: RECORD_HEADER + len,
            index,
        });
        off += RECORD_HEADER + len;
    }
    assert_eq!(off, bytes.len(), "the segment ends with a whole record");
    out
}

fn segments(server_dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(server_dir.join("data").join("wal"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs
}

fn only_segment(server_dir: &Path) -> PathBuf {
    let segs = segments(server_dir);
    assert_eq!(segs.len(), 1, "one WAL segment: {segs:?}");
    segs[0].clone()
}

fn file_name(p: &Path) -> String {
    p.file_name().unwrap().to_string_lossy().into_owned()
}

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn key(i: usize) -> Vec<u8> {
    format!("corrupt/k{i:03}").into_bytes()
}

fn value(i: usize) -> Vec<u8> {
    format!("value {i} {}", "x".repeat(i % 40)).into_bytes()
}

/// Puts keys `0..n` one by one (entry `i + 1` of the log is the put of key
/// `i`, at revision `i + 2`).
fn put_keys(server: &Server, n: usize) {
    rt().block_on(async {
        let mut raw = Raw::connect(server.endpoint()).await;
        for i in 0..n {
            let r = raw
                .kv
                .put(pb::PutRequest {
                    key: key(i),
                    value: value(i),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(r.header.unwrap().revision, i as i64 + 2);
        }
    });
}

/// Asserts keys `0..n` read back with their values and revisions, keys
/// `n..upto` are absent, and the store is at revision `n + 1`.
fn assert_keys(server: &Server, n: usize, upto: usize) {
    rt().block_on(async {
        let mut raw = Raw::connect(server.endpoint()).await;
        for i in 0..upto {
            let r = raw
                .kv
                .range(pb::RangeRequest {
                    key: key(i),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            if i < n {
                assert_eq!(r.kvs.len(), 1, "key {i} is served");
                assert_eq!(r.kvs[0].value, value(i), "key {i}");
                assert_eq!(r.kvs[0].mod_revision, i as i64 + 2, "key {i}");
            } else {
                assert!(
                    r.kvs.is_empty(),
                    "key {i} was cut off with the torn tail but is served: {:?}",
                    r.kvs
                );
            }
            assert_eq!(r.header.unwrap().revision, n as i64 + 1, "store revision");
        }
    });
}

/// Runs kvik on `dir` with the usual arguments plus `extra`; it must exit
/// on its own (a refusal) within [`REFUSAL_DEADLINE`].
fn run_expecting_exit(dir: &Path, extra: &[&str]) -> (i32, String) {
    Server::run_expecting_exit(dir, extra, REFUSAL_DEADLINE)
}

/// Every file under `dir` with its length, for "left untouched" checks.
fn listing(dir: &Path) -> Vec<(PathBuf, u64)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap().flatten() {
            let p = e.path();
            let m = e.metadata().unwrap();
            if m.is_dir() {
                out.push((p.clone(), 0));
                stack.push(p);
            } else {
                out.push((p, m.len()));
            }
        }
    }
    out.sort();
    out
}

// ---------------------------------------------------------------------------

#[test]
fn flipped_bit_in_an_early_record_refuses_start() {
    let dir = common::temp_dir("corrupt-bitflip");
    let mut server = Server::start_in(Kind::Kvik, dir.clone(), false, &[]);
    put_keys(&server, 300);
    server.kill9();
    let seg = only_segment(&dir);
    let name = file_name(&seg);
    let original = std::fs::read(&seg).unwrap();
    let recs = records(&original);
    assert!(
        recs.len() >= 300,
        "a record per put: {} records",
        recs.len()
    );
    // The put of key 10: early, and far from the last record. (Entries
    // that are not puts, e.g. one per start, may come first.)
    let target = *recs
        .iter()
        .find(|r| r.holds(&original, &key(10)))
        .expect("a record holds the put of key 10");
    assert!(target.index < 20, "{target:?}");

    // Damage in the payload, and in each header field the checksum covers
    // or that frames the record.
    let cases: [(&str, usize); 5] = [
        (
            "payload",
            target.offset + RECORD_HEADER + (target.len - RECORD_HEADER) / 2,
        ),
        ("checksum", target.offset + 5),
        ("type", target.offset + 8),
        ("term", target.offset + 9),
        ("index", target.offset + 17),
    ];
    for (what, byte) in cases {
        let mut damaged = original.clone();
        damaged[byte] ^= 0x08;
        std::fs::write(&seg, &damaged).unwrap();
        let (code, out) = run_expecting_exit(&dir, &[]);
        assert_ne!(
            code, 0,
            "{what}: kvik started on a WAL with a flipped bit in entry {} at offset {}:\n{out}",
            target.index, target.offset
        );
        assert!(
            out.contains(&name),
            "{what}: the refusal names the segment file {name}:\n{out}"
        );
        assert!(
            offsets_named(&out).contains(&(target.offset as u64)),
            "{what}: the refusal names the damaged record's offset {}:\n{out}",
            target.offset
        );
        assert_eq!(
            std::fs::read(&seg).unwrap(),
            damaged,
            "{what}: the refusal leaves the segment as it was"
        );
        eprintln!(
            "{what} bit flip at byte {byte}: refused with exit code {code}: {}",
            out.trim().lines().last().unwrap_or("")
        );
    }

    // Restored, the same directory serves everything again.
    std::fs::write(&seg, &original).unwrap();
    let server = Server::start_in(Kind::Kvik, dir.clone(), true, &[]);
    assert_keys(&server, 300, 300);
}

#[test]
fn torn_last_record_is_truncated_and_earlier_writes_served() {
    const N: usize = 200;
    let dir = common::temp_dir("corrupt-torn");
    let mut server = Server::start_in(Kind::Kvik, dir.clone(), false, &[]);
    put_keys(&server, N);
    server.kill9();
    let seg = only_segment(&dir);
    let name = file_name(&seg);
    let original = std::fs::read(&seg).unwrap();
    let recs = records(&original);
    let last = *recs.last().unwrap();
    assert!(
        last.holds(&original, &key(N - 1)),
        "the last record is the last put"
    );

    // (tail, keys served afterwards)
    let mut garbage = vec![0u8; 300];
    let mut x: u32 = 0x9e37_79b9;
    for b in garbage.iter_mut() {
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        *b = x as u8;
    }
    let cases: Vec<(&str, Vec<u8>, usize)> = vec![
        (
            "last record cut mid-way",
            original[..last.offset + last.len / 2].to_vec(),
            N - 1,
        ),
        (
            "last record cut inside its header",
            original[..last.offset + 10].to_vec(),
            N - 1,
        ),
        ("garbage appended", [original.clone(), garbage].concat(), N),
        (
            "zeros appended",
            [original.clone(), vec![0u8; 4096]].concat(),
            N,
        ),
    ];
    for (what, bytes, served) in cases {
        server.kill9();
        std::fs::write(&seg, &bytes).unwrap();
        let log_before = server.log().len();
        server.spawn();
        server.wait_ready();
        let log = server.log()[log_before..].to_string();
        assert!(
            log.to_lowercase().contains("truncat"),
            "{what}: the log mentions the truncation:\n{log}"
        );
        assert!(
            log.contains(&name),
            "{what}: the log names the segment:\n{log}"
        );
        let cut_at = if served == N {
            original.len()
        } else {
            last.offset
        };
        assert!(
            offsets_named(&log).contains(&(cut_at as u64)),
            "{what}: the log names the offset {cut_at} it cut at:\n{log}"
        );
        assert_keys(&server, served, N);
        eprintln!(
            "{what}: served {served} keys; {}",
            log.lines()
                .find(|l| l.to_lowercase().contains("truncat"))
                .unwrap_or("")
        );

        // A write after the cut survives another crash.
        rt().block_on(async {
            let mut raw = Raw::connect(server.endpoint()).await;
            let r = raw
                .kv
                .put(pb::PutRequest {
                    key: key(served),
                    value: value(served),
                    ..Default::default()
                })
                .await
                .unwrap()
                .into_inner();
            assert_eq!(
                r.header.unwrap().revision,
                served as i64 + 2,
                "{what}: first write after the cut"
            );
        });
        // The segment is its whole records before the cut, then whole new
        // records: the damaged tail is gone.
        let now = std::fs::read(&seg).unwrap();
        assert_eq!(
            now[..cut_at],
            original[..cut_at],
            "{what}: the records before the cut are kept as they were"
        );
        let after: Vec<Record> = records(&now)
            .into_iter()
            .filter(|r| r.offset >= cut_at)
            .collect();
        assert!(
            after.first().is_some_and(|r| r.offset == cut_at),
            "{what}: new records start exactly at the cut, {cut_at}: {after:?}"
        );
        assert!(
            after.iter().any(|r| r.holds(&now, &key(served))),
            "{what}: the new write is logged after the cut"
        );
        server.kill9();
        server.spawn();
        server.wait_ready();
        assert_keys(&server, served + 1, served + 1);
        server.kill9();
        std::fs::write(&seg, &original).unwrap();
    }
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn second_kvik_on_the_same_data_dir_refuses() {
    let server = Server::start(Kind::Kvik);
    put_keys(&server, 3);
    let (code, out) = run_expecting_exit(&server.data_dir, &[]);
    assert_ne!(
        code, 0,
        "a second kvik started on a data dir in use:\n{out}"
    );
    assert!(
        out.to_lowercase().contains("locked"),
        "the refusal says the data dir is locked:\n{out}"
    );
    // The first one is unaffected.
    assert_keys(&server, 3, 4);
    rt().block_on(async {
        let mut raw = Raw::connect(server.endpoint()).await;
        raw.kv
            .put(pb::PutRequest {
                key: key(3),
                value: value(3),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    assert_keys(&server, 4, 4);
}

#[test]
fn second_kvik_on_a_client_url_in_use_refuses() {
    // A different data dir, so the data dir lock does not apply: only the
    // address is shared. etcd refuses with "bind: address already in use";
    // a server that joins the listening port instead splits clients between
    // two unrelated keyspaces.
    let first = Server::start(Kind::Kvik);
    put_keys(&first, 3);
    let url = first.endpoint();
    let other = common::temp_dir("corrupt-port");
    let (code, out) = run_expecting_exit(
        &other,
        &[
            "--listen-client-urls",
            &url,
            "--advertise-client-urls",
            &url,
        ],
    );
    assert_ne!(
        code, 0,
        "a second kvik started on {url}, which the first one serves:\n{out}"
    );
    assert!(
        out.to_lowercase().contains("in use"),
        "the refusal says the address is in use:\n{out}"
    );
    assert_keys(&first, 3, 3);
    std::fs::remove_dir_all(&other).unwrap();
}

#[test]
fn data_dir_with_etcd_files_refuses() {
    for (what, etcd_path) in [
        ("member/wal/", "member/wal"),
        ("member/snap/db", "member/snap/db"),
    ] {
        let dir = common::temp_dir("corrupt-etcdfiles");
        let data = dir.join("data");
        if what.ends_with('/') {
            std::fs::create_dir_all(data.join(etcd_path)).unwrap();
        } else {
            std::fs::create_dir_all(data.join(etcd_path).parent().unwrap()).unwrap();
            std::fs::write(
                data.join(etcd_path),
                b"not a bbolt file, but etcd's name for one",
            )
            .unwrap();
        }
        let before = listing(&data);
        let (code, out) = run_expecting_exit(&dir, &[]);
        assert_ne!(
            code, 0,
            "{what}: kvik started on a data dir holding etcd's files:\n{out}"
        );
        assert!(
            out.contains("etcd"),
            "{what}: the refusal says the files are etcd's:\n{out}"
        );
        assert!(
            out.contains(etcd_path),
            "{what}: the refusal names {etcd_path}:\n{out}"
        );
        assert_eq!(
            listing(&data),
            before,
            "{what}: kvik wrote into a data dir it refused"
        );
        eprintln!("{what}: refused with exit code {code}: {}", out.trim());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}

#[test]
fn data_dir_written_by_etcd_refuses() {
    let mut etcd = Server::start(Kind::Etcd);
    rt().block_on(async {
        let mut raw = Raw::connect(etcd.endpoint()).await;
        raw.kv
            .put(pb::PutRequest {
                key: b"written-by".to_vec(),
                value: b"etcd".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap();
    });
    etcd.kill9();
    let data = etcd.data_dir.join("data");
    assert!(
        data.join("member").join("wal").is_dir(),
        "etcd wrote member/wal"
    );
    let before = listing(&data);
    let (code, out) = run_expecting_exit(&etcd.data_dir, &[]);
    assert_ne!(code, 0, "kvik started on etcd's data dir:\n{out}");
    assert!(
        out.contains("etcd"),
        "the refusal says the files are etcd's:\n{out}"
    );
    assert!(
        out.contains("member/wal") || out.contains("member/snap/db"),
        "the refusal names etcd's files:\n{out}"
    );
    assert_eq!(listing(&data), before, "kvik changed etcd's data dir");
    eprintln!(
        "etcd 3.7.2 data dir: refused with exit code {code}: {}",
        out.trim()
    );

    // etcd still starts on it and has its key.
    let started = Instant::now();
    etcd.spawn();
    etcd.wait_ready();
    rt().block_on(async {
        let mut raw = Raw::connect(etcd.endpoint()).await;
        let r = raw
            .kv
            .range(pb::RangeRequest {
                key: b"written-by".to_vec(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner();
        assert_eq!(r.kvs.len(), 1);
        assert_eq!(r.kvs[0].value, b"etcd");
    });
    eprintln!("etcd restarted on its data dir in {:?}", started.elapsed());
}
