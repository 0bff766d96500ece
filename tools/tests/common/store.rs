//! Helpers for tests of kvik's revision store: `/metrics` scrapes, the
//! files of the store and WAL directories, the manifest slots, and the
//! offsets a refusal names.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use engine::segment::{parse_segment_name, Manifest, MANIFEST_SLOTS};

use super::free_port;

/// A `--listen-metrics-urls` on a free port: (flag value, address).
pub fn metrics_listener() -> (String, String) {
    let addr = format!("127.0.0.1:{}", free_port());
    (format!("http://{addr}"), addr)
}

/// `GET path` at `addr` (host:port): the status line and the body.
pub fn http_get(addr: &str, path: &str) -> Result<(String, String), String> {
    let mut s = std::net::TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: kvik\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| format!("GET {path} from {addr}: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("GET {path} from {addr}: {e}"))?;
    let text = String::from_utf8_lossy(&resp).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("GET {path} from {addr}: no header end in {text:?}"))?;
    let status = head.lines().next().unwrap_or_default().to_string();
    Ok((status, body.to_string()))
}

/// The body of `GET /metrics` at `addr` (host:port).
pub fn scrape(addr: &str) -> Result<String, String> {
    let (status, body) = http_get(addr, "/metrics")?;
    if !status.starts_with("HTTP/1.1 200") {
        return Err(format!("GET /metrics from {addr}: {status}"));
    }
    Ok(body)
}

/// The value of the unlabelled sample `name` in a Prometheus text body.
pub fn metric_in(body: &str, name: &str) -> Option<f64> {
    body.lines().filter(|l| !l.starts_with('#')).find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok())?
    })
}

/// Scrapes `addr` for `name`; fails the test if it is not exposed.
pub fn metric(addr: &str, name: &str) -> u64 {
    let body = scrape(addr).unwrap_or_else(|e| panic!("{e}"));
    metric_in(&body, name)
        .unwrap_or_else(|| panic!("{name} is not exposed at http://{addr}/metrics:\n{body}"))
        as u64
}

/// Polls `name` at `addr` until `ok` holds for it; returns the value.
/// Fails the test with the last value and `what` after `deadline`.
pub fn poll_metric(
    addr: &str,
    name: &str,
    deadline: Duration,
    what: &str,
    ok: impl Fn(u64) -> bool,
) -> u64 {
    let until = Instant::now() + deadline;
    loop {
        let v = metric(addr, name);
        if ok(v) {
            return v;
        }
        assert!(
            Instant::now() < until,
            "{what}: {name} is {v} after {deadline:?}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `<data-dir>/store` of a test server's directory (see `Server::args`).
pub fn store_dir(server_dir: &Path) -> PathBuf {
    server_dir.join("data").join("store")
}

/// `<data-dir>/wal` of a test server's directory.
pub fn wal_dir(server_dir: &Path) -> PathBuf {
    server_dir.join("data").join("wal")
}

/// The segment files of a store directory.
#[derive(Debug, Clone, Default)]
pub struct SegmentFiles {
    /// (id, path, length), ascending by id.
    pub files: Vec<(u64, PathBuf, u64)>,
}

impl SegmentFiles {
    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.2).sum()
    }

    pub fn max_id(&self) -> u64 {
        self.files.iter().map(|f| f.0).max().unwrap_or(0)
    }

    pub fn path_of(&self, id: u64) -> Option<&Path> {
        self.files.iter().find(|f| f.0 == id).map(|f| f.1.as_path())
    }
}

pub fn segment_files(store: &Path) -> SegmentFiles {
    let mut files = Vec::new();
    let Ok(rd) = std::fs::read_dir(store) else {
        return SegmentFiles::default();
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if let Some(id) = parse_segment_name(&name) {
            // A file removed since the listing is simply not counted.
            if let Ok(m) = e.metadata() {
                files.push((id, e.path(), m.len()));
            }
        }
    }
    files.sort();
    SegmentFiles { files }
}

/// Total bytes of the regular files directly in `dir`, and their count.
pub fn dir_bytes(dir: &Path) -> (u64, usize) {
    let mut total = 0;
    let mut n = 0;
    for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        if let Ok(m) = e.metadata() {
            if m.is_file() {
                total += m.len();
                n += 1;
            }
        }
    }
    (total, n)
}

/// The WAL's segment files.
pub fn wal_segments(server_dir: &Path) -> Vec<PathBuf> {
    let mut segs: Vec<PathBuf> = std::fs::read_dir(wal_dir(server_dir))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "wal"))
        .collect();
    segs.sort();
    segs
}

/// Each manifest slot that decodes whole: (slot file name, manifest).
pub fn manifests(store: &Path) -> Vec<(&'static str, Manifest)> {
    MANIFEST_SLOTS
        .iter()
        .filter_map(|slot| {
            let b = std::fs::read(store.join(slot)).ok()?;
            Some((*slot, Manifest::decode(&b)?))
        })
        .collect()
}

/// The manifest a restart would use: the intact slot with the highest
/// sequence number.
pub fn newest_manifest(store: &Path) -> Option<(&'static str, Manifest)> {
    manifests(store).into_iter().max_by_key(|(_, m)| m.seq)
}

/// All offsets printed after the word "offset" in `text`.
pub fn offsets_named(text: &str) -> Vec<u64> {
    text.match_indices("offset")
        .filter_map(|(i, w)| {
            let rest = text[i + w.len()..].trim_start_matches([' ', '=', ':']);
            let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
            digits.parse().ok()
        })
        .collect()
}

/// Copies the regular files of `from` into `to` (created), one level deep
/// per directory, recursively.
pub fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        let p = e.path();
        let m = e.metadata().unwrap();
        let dest = to.join(e.file_name());
        if m.is_dir() {
            copy_tree(&p, &dest);
        } else if m.is_file() {
            std::fs::copy(&p, &dest).unwrap();
        }
    }
}

/// Position of the only occurrence of `needle` in `hay`; `None` if absent,
/// and a failed test if it occurs more than once.
pub fn find_once(hay: &[u8], needle: &[u8]) -> Option<usize> {
    let mut found = hay
        .windows(needle.len())
        .enumerate()
        .filter(|(_, w)| *w == needle)
        .map(|(i, _)| i);
    let first = found.next()?;
    assert!(
        found.next().is_none(),
        "{:?} occurs more than once",
        String::from_utf8_lossy(needle)
    );
    Some(first)
}
