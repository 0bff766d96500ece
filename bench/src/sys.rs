//! Machine facts, process CPU time and Prometheus scraping.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The metric both servers expose; its delta is the number of WAL fsyncs.
pub const FSYNC_METRIC: &str = "etcd_disk_wal_fsync_duration_seconds_count";

/// What the report says about the machine and the code under test.
#[derive(Clone, Debug)]
pub struct MachineInfo {
    pub nproc: usize,
    pub cpu_model: String,
    pub kernel: String,
    pub dir_fs: String,
    pub commit: String,
}

pub fn machine_info(dir: &Path) -> MachineInfo {
    let nproc = std::thread::available_parallelism().map_or(1, |n| n.get());
    let cpu_model = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_string())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .or_else(|_| output("uname", &["-r"]).ok_or(()))
        .unwrap_or_else(|_| "unknown".into());
    let dir_fs = dir
        .to_str()
        .and_then(|d| output("df", &["-T", d]))
        .and_then(|s| {
            let line = s.lines().nth(1)?.to_string();
            let cols: Vec<&str> = line.split_whitespace().collect();
            Some(format!("{} (mounted on {})", cols.get(1)?, cols.last()?))
        })
        .unwrap_or_else(|| "unknown".into());
    let commit = match output("git", &["rev-parse", "--short", "HEAD"]) {
        Some(c) if !c.is_empty() => {
            let dirty = output("git", &["status", "--porcelain", "--untracked-files=no"])
                .is_some_and(|s| !s.trim().is_empty());
            if dirty {
                format!("{c} (working tree modified)")
            } else {
                c
            }
        }
        _ => "unknown".into(),
    };
    MachineInfo {
        nproc,
        cpu_model,
        kernel,
        dir_fs,
        commit,
    }
}

fn output(cmd: &str, args: &[&str]) -> Option<String> {
    let out = Command::new(cmd).args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_string())
}

/// Clock ticks per second for `/proc/<pid>/stat` times.
pub fn clock_ticks() -> f64 {
    output("getconf", &["CLK_TCK"])
        .and_then(|s| s.parse::<f64>().ok())
        .filter(|t| *t > 0.0)
        .unwrap_or(100.0)
}

/// utime + stime of a process (all its threads), in clock ticks.
pub fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // `rest` starts at field 3 (state); utime and stime are fields 14 and 15.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some(utime + stime)
}

/// Busy CPU time of the whole machine (all CPUs, idle and iowait
/// excluded), in clock ticks: used to see how much CPU other processes took
/// during a run.
pub fn machine_busy_ticks() -> Option<u64> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let line = stat.lines().find(|l| l.starts_with("cpu "))?;
    let f: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // user nice system idle iowait irq softirq steal (guest is within user).
    Some(f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?)
}

/// This process's CPU time and the whole machine's busy time at one
/// moment, in clock ticks: two marks tell how much CPU other processes used
/// between them.
#[derive(Clone, Copy, Debug)]
pub struct CpuMark {
    pub machine: Option<u64>,
    /// utime + stime of this process (the load generator).
    pub me: Option<u64>,
}

impl CpuMark {
    pub fn now() -> CpuMark {
        CpuMark {
            machine: machine_busy_ticks(),
            me: cpu_ticks(std::process::id()),
        }
    }

    /// Cores used between `self` and `later` by every process other than
    /// this one and the server, which used `server_ticks` in that span, over
    /// `seconds` of wall time. `ticks` is [`clock_ticks`].
    pub fn other_cores(
        &self,
        later: &CpuMark,
        server_ticks: u64,
        ticks: f64,
        seconds: f64,
    ) -> Option<f64> {
        let all = later.machine?.saturating_sub(self.machine?);
        let me = later.me?.saturating_sub(self.me?);
        let other = all.saturating_sub(me + server_ticks) as f64 / ticks;
        Some(other / seconds.max(1e-9))
    }
}

/// Reads one counter from `http://addr/metrics`. `Err` says why it is not there.
pub fn scrape_counter(addr: &str, metric: &str) -> Result<f64, String> {
    let body = http_get(addr, "/metrics")?;
    let mut total = None;
    for line in body.lines() {
        let Some(rest) = line.strip_prefix(metric) else {
            continue;
        };
        // Either `name value` or `name{labels} value`; sum across label sets.
        if !(rest.starts_with(' ') || rest.starts_with('{')) {
            continue;
        }
        let value = rest
            .rsplit_once('}')
            .map_or(rest, |(_, v)| v)
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .ok_or_else(|| format!("cannot parse metric line {line:?}"))?;
        *total.get_or_insert(0.0) += value;
    }
    total.ok_or_else(|| format!("{metric} not exposed on http://{addr}/metrics"))
}

fn http_get(addr: &str, path: &str) -> Result<String, String> {
    let err = |e: std::io::Error| format!("GET http://{addr}{path}: {e}");
    let mut s = TcpStream::connect(addr).map_err(err)?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(err)?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n"
    )
    .map_err(err)?;
    // Read until EOF, or until the body is complete (in case the server
    // keeps the connection open despite `Connection: close`).
    let mut raw = Vec::new();
    let mut buf = [0u8; 64 * 1024];
    loop {
        let n = s.read(&mut buf).map_err(err)?;
        if n == 0 {
            break;
        }
        raw.extend_from_slice(&buf[..n]);
        if response_complete(&raw) {
            break;
        }
    }
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(|| format!("GET http://{addr}{path}: malformed response"))?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let body = &raw[split + 4..];
    let status = head.lines().next().unwrap_or("");
    if status.split_whitespace().nth(1) != Some("200") {
        return Err(format!("GET http://{addr}{path}: {status}"));
    }
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let body = if chunked {
        dechunk(body)
    } else {
        body.to_vec()
    };
    Ok(String::from_utf8_lossy(&body).into_owned())
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(split) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..split]).to_ascii_lowercase();
    let body = &raw[split + 4..];
    for line in head.lines() {
        if let Some(v) = line.strip_prefix("content-length:") {
            return v.trim().parse::<usize>().is_ok_and(|n| body.len() >= n);
        }
        if line.starts_with("transfer-encoding:") && line.contains("chunked") {
            return body.ends_with(b"\r\n0\r\n\r\n") || body == b"0\r\n\r\n";
        }
    }
    false
}

fn dechunk(mut body: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(eol) = body.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&body[..eol])
            .ok()
            .and_then(|l| usize::from_str_radix(l.split(';').next()?.trim(), 16).ok());
        let rest = &body[eol + 2..];
        match size {
            Some(n) if n > 0 && rest.len() >= n => {
                out.extend_from_slice(&rest[..n]);
                body = rest[n..].strip_prefix(b"\r\n").unwrap_or(&rest[n..]);
            }
            _ => break,
        }
    }
    out
}

/// A process's memory, from `/proc/<pid>/status`, in bytes.
#[derive(Clone, Copy, Debug, Default)]
pub struct Memory {
    /// Resident now (anonymous plus file-backed, which includes mapped
    /// segment pages that the kernel may drop at any time).
    pub rss: u64,
    /// The peak of `rss` since the process started.
    pub hwm: u64,
    /// Resident anonymous memory: heap and stacks.
    pub anon: u64,
    /// Resident file-backed pages (mapped files).
    pub file: u64,
}

impl Memory {
    /// The larger of each figure.
    pub fn max(self, o: Memory) -> Memory {
        Memory {
            rss: self.rss.max(o.rss),
            hwm: self.hwm.max(o.hwm),
            anon: self.anon.max(o.anon),
            file: self.file.max(o.file),
        }
    }
}

pub fn memory(pid: u32) -> Option<Memory> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .ok()?;
        Some(kb * 1024)
    };
    Some(Memory {
        rss: field("VmRSS:")?,
        hwm: field("VmHWM:")?,
        anon: field("RssAnon:").unwrap_or(0),
        file: field("RssFile:").unwrap_or(0),
    })
}

/// The 1-minute load average.
pub fn load_avg() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Apparent and allocated bytes of every file under `path`.
pub fn dir_bytes(path: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut apparent = 0;
    let mut allocated = 0;
    let Ok(entries) = std::fs::read_dir(path) else {
        return (0, 0);
    };
    for e in entries.flatten() {
        let Ok(md) = e.metadata() else { continue };
        if md.is_dir() {
            let (a, b) = dir_bytes(&e.path());
            apparent += a;
            allocated += b;
        } else {
            apparent += md.len();
            allocated += md.blocks() * 512;
        }
    }
    (apparent, allocated)
}

/// Every file under `path`.
pub fn files_under(path: &Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(path) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(files_under(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Drops every file under `path` from the page cache (`dd iflag=nocache
/// count=0`, which is `posix_fadvise(DONTNEED)` on the whole file; the
/// files' pages are clean once the server has synced them). Returns the
/// files it could not evict.
pub fn evict_page_cache(path: &Path) -> Vec<String> {
    let mut failed = Vec::new();
    for f in files_under(path) {
        let ok = Command::new("dd")
            .arg(format!("if={}", f.display()))
            .args(["iflag=nocache", "count=0", "status=none"])
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            failed.push(f.display().to_string());
        }
    }
    failed
}
