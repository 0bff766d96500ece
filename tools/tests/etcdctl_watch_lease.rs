//! etcdctl 3.4's `watch`, `lease`, `lock` and `elect` commands against one
//! kvik and one etcd 3.7.2, side by side.
//!
//! Each test starts a fresh kvik and a fresh etcd and runs the same scenario
//! against each, etcd first. Every step is recorded: its title, its exit
//! code and its stdout and stderr lines. Long-running commands (`watch`,
//! `lease keep-alive`, `lock`, `elect`) are child processes whose output the
//! test reads line by line until what it waits for has appeared (deadline
//! [`LINE_DEADLINE`]); writes come from separate etcdctl runs. No step waits
//! a fixed time: every wait is for a condition, under a deadline.
//!
//! The two transcripts are then normalised and compared step by step. The
//! normalisations are exactly these:
//! - JSON fields `cluster_id`, `member_id` and `raft_term`, at any depth
//!   (IDs are random per cluster, the term is a raft detail), and `ts`,
//!   `target` (etcdctl's own client log lines on stderr);
//! - lease IDs: every lease the scenario learns (from `lease grant`, or from
//!   the lease part of a lock or election key) becomes `<lease-N>`, N its
//!   order of learning, in text (`%016x` and `%x`) and in the JSON fields
//!   `ID`, `id` and `lease`;
//! - a lease's remaining TTL (`remaining(Ns)`, JSON `ttl` beside
//!   `granted-ttl`), which depends on timing: it must lie in 0..=granted TTL
//!   and becomes a placeholder;
//! - a lease's attached keys (`attached keys([...])`, JSON `keys` beside
//!   `granted-ttl`) are sorted: etcd lists them in Go map order, which
//!   varies from run to run.
//!
//! Everything else compares exactly: revisions, events, their grouping into
//! watch responses, keys, values, error texts and exit codes.
//!
//! Watch output is made deterministic without waiting for time to pass:
//! - a watcher's output ends with a *fence*: after its writes, the scenario
//!   writes one more key in the watched range and reads until that event is
//!   printed, so every earlier event has been printed too (events arrive in
//!   revision order) and nothing is missed or cut off;
//! - a non-interactive watcher starts at an explicit `--rev`, so a write made
//!   before the watcher has registered is replayed, not lost;
//! - `-w json` prints one line per watch response, and responses group
//!   events differently when they are replayed than when they are live. So
//!   a JSON watcher either replays history written before it started (one
//!   response, read before the live fence is written), or is an interactive
//!   watcher made live by its own `progress` answer (the server answers a
//!   progress request after it has created the watches sent before it on
//!   the stream).
//!
//! Besides the comparison, each scenario checks etcd's semantics (lock
//! exclusion and hand-over order, DELETE events of revoked and expired
//! leases, `lease list` order, ...) on both servers; a check etcd fails is a
//! bug in this test. All problems of a test are reported together at the end.
//! `KVIK_WATCH_LEASE_TRACE=1` prints both normalised transcripts.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, TryRecvError};
use std::time::{Duration, Instant};

use common::{diff_json, Kind, Server};
use serde_json::{Map, Value};

/// How long a child may take to print a line the test waits for.
const LINE_DEADLINE: Duration = Duration::from_secs(20);
/// How long a command that ends by itself may take to exit.
const EXIT_DEADLINE: Duration = Duration::from_secs(30);
/// How long a polled condition (a key gone, a waiter queued) may take.
const POLL_DEADLINE: Duration = Duration::from_secs(20);
/// Pause between two polls of a condition, so that polling does not starve
/// the servers of the machine's cores.
const POLL_PAUSE: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------- child processes

/// Lines of one output stream of a child, read by a thread as they come.
struct Lines {
    rx: mpsc::Receiver<String>,
    /// Every line received so far, without its newline.
    seen: Vec<String>,
    eof: bool,
}

impl Lines {
    fn read_from(r: impl Read + Send + 'static) -> Lines {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(r);
            let mut buf = Vec::new();
            loop {
                buf.clear();
                match r.read_until(b'\n', &mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {
                        if buf.last() == Some(&b'\n') {
                            buf.pop();
                        }
                        if tx.send(String::from_utf8_lossy(&buf).into_owned()).is_err() {
                            break;
                        }
                    }
                }
            }
        });
        Lines {
            rx,
            seen: Vec::new(),
            eof: false,
        }
    }

    /// Takes the lines that have already arrived, without waiting.
    fn drain(&mut self) {
        loop {
            match self.rx.try_recv() {
                Ok(line) => self.seen.push(line),
                Err(TryRecvError::Empty) => return,
                Err(TryRecvError::Disconnected) => {
                    self.eof = true;
                    return;
                }
            }
        }
    }

    /// Receives lines until `cond` holds of all lines seen; false when the
    /// stream ends or the deadline passes first.
    fn wait(&mut self, deadline: Instant, cond: impl Fn(&[String]) -> bool) -> bool {
        loop {
            if cond(&self.seen) {
                return true;
            }
            if self.eof {
                return false;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            match self.rx.recv_timeout(left) {
                Ok(line) => self.seen.push(line),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => self.eof = true,
            }
        }
    }

    /// Reads to the end of the stream; false if it is still open at the
    /// deadline.
    fn wait_eof(&mut self, deadline: Instant) -> bool {
        self.wait(deadline, |_| false);
        self.eof
    }
}

/// A running etcdctl.
struct Proc {
    what: String,
    child: Child,
    stdin: Option<ChildStdin>,
    out: Lines,
    err: Lines,
    /// The exit code once it has exited (128 + signal when killed).
    code: Option<i32>,
}

impl Proc {
    fn show(&self) -> String {
        format!(
            "`{}`\n      stdout so far: {:?}\n      stderr so far: {:?}",
            self.what, self.out.seen, self.err.seen
        )
    }

    fn send(&mut self, text: &str) -> Result<(), String> {
        let pipe = self.stdin.as_mut().ok_or("stdin is closed")?;
        pipe.write_all(text.as_bytes())
            .and_then(|_| pipe.flush())
            .map_err(|e| format!("writing {text:?} to {}: {e}", self.what))
    }

    /// Waits until stdout satisfies `cond`; `waited_for` names it in the error.
    fn wait_out(
        &mut self,
        waited_for: &str,
        cond: impl Fn(&[String]) -> bool,
    ) -> Result<(), String> {
        if self.out.wait(Instant::now() + LINE_DEADLINE, cond) {
            return Ok(());
        }
        self.err.drain();
        Err(format!(
            "waited {LINE_DEADLINE:?} for {waited_for} from {}",
            self.show()
        ))
    }

    fn wait_out_count(&mut self, n: usize) -> Result<(), String> {
        self.wait_out(&format!("{n} stdout lines"), |l| l.len() >= n)
    }

    fn wait_err_count(&mut self, n: usize) -> Result<(), String> {
        if self
            .err
            .wait(Instant::now() + LINE_DEADLINE, |l| l.len() >= n)
        {
            return Ok(());
        }
        self.out.drain();
        Err(format!(
            "waited {LINE_DEADLINE:?} for {n} stderr lines from {}",
            self.show()
        ))
    }

    fn signal(&self, sig: i32) {
        // SAFETY: kill(2) on our own child, which has not been reaped yet
        // (`code` is None until `wait` returns).
        if self.code.is_none() {
            unsafe { libc::kill(self.child.id() as i32, sig) };
        }
    }

    /// Reads both streams to their end and reaps the child.
    fn wait_exit(&mut self) -> Result<i32, String> {
        drop(self.stdin.take());
        let deadline = Instant::now() + EXIT_DEADLINE;
        if !(self.out.wait_eof(deadline) && self.err.wait_eof(deadline)) {
            return Err(format!(
                "{} did not exit within {EXIT_DEADLINE:?}",
                self.show()
            ));
        }
        let status = self
            .child
            .wait()
            .map_err(|e| format!("waiting for {}: {e}", self.what))?;
        let code = status
            .code()
            .unwrap_or_else(|| 128 + status.signal().unwrap_or(0));
        self.code = Some(code);
        Ok(code)
    }

    /// SIGKILL, then reap; keeps the lines that had arrived.
    fn kill(&mut self) {
        if self.code.is_none() {
            self.signal(libc::SIGKILL);
            let _ = self.child.wait();
            self.code = Some(128 + libc::SIGKILL);
        }
        self.out.drain();
        self.err.drain();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.kill();
    }
}

fn spawn_etcdctl(ctl: &Path, endpoint: &str, args: &[&str], stdin: bool, what: String) -> Proc {
    let mut cmd = Command::new(ctl);
    for (k, _) in std::env::vars_os() {
        if k.to_string_lossy().starts_with("ETCDCTL_") {
            cmd.env_remove(k);
        }
    }
    cmd.env("ETCDCTL_API", "3")
        .arg("--endpoints")
        .arg(endpoint)
        .args(args)
        .stdin(if stdin { Stdio::piped() } else { Stdio::null() })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start etcdctl");
    let out = Lines::read_from(child.stdout.take().unwrap());
    let err = Lines::read_from(child.stderr.take().unwrap());
    let stdin = child.stdin.take();
    Proc {
        what,
        child,
        stdin,
        out,
        err,
        code: None,
    }
}

/// What a command that ran to its end printed.
struct Out {
    code: i32,
    stdout: Vec<String>,
    stderr: Vec<String>,
}

// ---------------------------------------------------------------- one server's run

/// One recorded step: `lines` are `code: N` (absent when the test stopped
/// the command), `out: LINE` and `err: LINE`.
struct Step {
    title: String,
    cmd: String,
    lines: Vec<String>,
}

/// The run of one scenario against one server.
struct Side<'a> {
    name: &'static str,
    server: &'a Server,
    ctl: PathBuf,
    /// A directory for the marker files of lock holders.
    scratch: PathBuf,
    steps: Vec<Step>,
    /// Leases in the order the scenario learnt them.
    leases: Vec<i64>,
    problems: Vec<String>,
    fences: u32,
}

/// Shell quoting for a path in an `sh -c` script.
fn shq(p: &Path) -> String {
    format!("'{}'", p.display())
}

fn standard_base64(bytes: &[u8]) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut s = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | (*b as u32) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                s.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                s.push('=');
            }
        }
    }
    s
}

fn hex(id: i64) -> String {
    format!("{id:016x}")
}

/// How a watcher prints events, for recognising the fence.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Fmt {
    /// Type, key, value lines (`--prev-kv` adds the previous key and value).
    Simple,
    /// One JSON document per response.
    Json,
    /// Simple, each event followed by the exec command's line
    /// `exec REV "TYPE" "KEY" "VALUE"`.
    Exec,
}

impl<'a> Side<'a> {
    fn new(name: &'static str, server: &'a Server, ctl: PathBuf, scratch: PathBuf) -> Side<'a> {
        Side {
            name,
            server,
            ctl,
            scratch,
            steps: Vec::new(),
            leases: Vec::new(),
            problems: Vec::new(),
            fences: 0,
        }
    }

    fn describe(&self, args: &[&str]) -> String {
        let scratch = self.scratch.display().to_string();
        let mut s = "etcdctl".to_string();
        for a in args {
            let a = a.replace(&scratch, "<scratch>");
            if a.is_empty()
                || a.chars()
                    .any(|c| c.is_whitespace() || "\"'\\$;".contains(c))
            {
                s.push_str(&format!(" {a:?}"));
            } else {
                s.push(' ');
                s.push_str(&a);
            }
        }
        s
    }

    fn spawn(&self, args: &[&str], stdin: bool) -> Proc {
        spawn_etcdctl(
            &self.ctl,
            &self.server.endpoint_host(),
            args,
            stdin,
            self.describe(args),
        )
    }

    /// Runs a command to its end, unrecorded.
    fn run(&self, args: &[&str]) -> Result<Out, String> {
        let mut p = self.spawn(args, false);
        let code = p.wait_exit()?;
        Ok(Out {
            code,
            stdout: std::mem::take(&mut p.out.seen),
            stderr: std::mem::take(&mut p.err.seen),
        })
    }

    fn record(
        &mut self,
        title: &str,
        cmd: String,
        code: Option<i32>,
        stdout: &[String],
        stderr: &[String],
    ) {
        let mut lines = Vec::new();
        if let Some(code) = code {
            lines.push(format!("code: {code}"));
        }
        lines.extend(stdout.iter().map(|l| format!("out: {l}")));
        lines.extend(stderr.iter().map(|l| format!("err: {l}")));
        self.steps.push(Step {
            title: title.to_string(),
            cmd,
            lines,
        });
    }

    fn record_out(&mut self, title: &str, args: &[&str], out: &Out) {
        self.record(
            title,
            self.describe(args),
            Some(out.code),
            &out.stdout,
            &out.stderr,
        );
    }

    /// Records what a child printed; its exit code too when it ended by
    /// itself or on a signal the scenario sent to test its handling.
    fn record_proc(&mut self, title: &str, p: &Proc, with_code: bool) {
        let code = if with_code { p.code } else { None };
        self.record(title, p.what.clone(), code, &p.out.seen, &p.err.seen);
    }

    /// Runs a command to its end and records it.
    fn ctl(&mut self, title: &str, args: &[&str]) -> Result<Out, String> {
        let out = self.run(args)?;
        self.record_out(title, args, &out);
        Ok(out)
    }

    /// Like [`Side::ctl`], and checks the exit code.
    fn ctl_ok(&mut self, title: &str, args: &[&str]) -> Result<Out, String> {
        let out = self.ctl(title, args)?;
        self.check(
            out.code == 0,
            format!(
                "`{}` failed: {:?} {:?}",
                self.describe(args),
                out.stdout,
                out.stderr
            ),
        );
        Ok(out)
    }

    fn check(&mut self, ok: bool, what: impl Into<String>) {
        if !ok {
            self.problems.push(what.into());
        }
    }

    /// The store's current revision.
    fn rev(&self) -> Result<i64, String> {
        let out = self.run(&["get", "kvik-test-revision-probe", "-w", "json"])?;
        out.stdout
            .first()
            .and_then(|l| serde_json::from_str::<Value>(l).ok())
            .and_then(|v| v["header"]["revision"].as_i64())
            .ok_or_else(|| format!("no revision in {:?} {:?}", out.stdout, out.stderr))
    }

    /// Runs a command until its output satisfies `cond`; returns that output.
    fn poll(&self, what: &str, args: &[&str], cond: impl Fn(&Out) -> bool) -> Result<Out, String> {
        let deadline = Instant::now() + POLL_DEADLINE;
        loop {
            let out = self.run(args)?;
            if cond(&out) {
                return Ok(out);
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "waited {POLL_DEADLINE:?} for {what}; `{}` last printed {:?} {:?}",
                    self.describe(args),
                    out.stdout,
                    out.stderr
                ));
            }
            std::thread::sleep(POLL_PAUSE);
        }
    }

    fn learn(&mut self, id: i64) {
        if !self.leases.contains(&id) {
            self.leases.push(id);
        }
    }

    /// Learns the lease of a lock or election key `NAME/HEX` found in `text`
    /// (after `prefix`); returns it.
    fn learn_key(&mut self, text: &str, prefix: &str) -> Result<i64, String> {
        let rest = text
            .find(prefix)
            .map(|i| &text[i + prefix.len()..])
            .ok_or(format!("no {prefix:?} key in {text:?}"))?;
        let digits: String = rest.chars().take_while(|c| c.is_ascii_hexdigit()).collect();
        let id = i64::from_str_radix(&digits, 16).map_err(|e| format!("lease in {text:?}: {e}"))?;
        self.learn(id);
        Ok(id)
    }

    /// `lease grant`, simple or JSON output; records it and learns the lease.
    fn grant(&mut self, title: &str, args: &[&str]) -> Result<i64, String> {
        let out = self.ctl(title, args)?;
        let id = parse_grant(&out).ok_or_else(|| {
            format!(
                "`{}` granted nothing: {:?} {:?}",
                self.describe(args),
                out.stdout,
                out.stderr
            )
        })?;
        self.learn(id);
        Ok(id)
    }

    /// Starts a watcher, waits for `ready` stdout lines (replayed history),
    /// runs `writes`, then writes the fence `put FENCE_KEY fence-N` and reads
    /// until the fence event is printed; records the watcher's output and
    /// returns its stdout lines.
    fn watch_fenced(
        &mut self,
        title: &str,
        args: &[&str],
        ready: usize,
        writes: &[&[&str]],
        fence_key: &str,
        fmt: Fmt,
    ) -> Result<Vec<String>, String> {
        let mut w = self.spawn(args, false);
        w.wait_out_count(ready)?;
        for write in writes {
            self.ctl_ok(&format!("{title}: write"), write)?;
        }
        self.fences += 1;
        let fence = format!("fence-{}", self.fences);
        self.ctl_ok(&format!("{title}: fence"), &["put", fence_key, &fence])?;
        let json_value = format!("\"value\":\"{}\"", standard_base64(fence.as_bytes()));
        let exec_tail = format!("\"{fence}\"");
        w.wait_out(&format!("the fence event {fence}"), |lines| {
            lines.iter().any(|l| match fmt {
                Fmt::Simple => *l == fence,
                Fmt::Json => l.contains(&json_value),
                Fmt::Exec => l.starts_with("exec ") && l.ends_with(&exec_tail),
            })
        })?;
        w.kill();
        self.record_proc(title, &w, false);
        Ok(w.out.seen.clone())
    }
}

fn parse_grant(out: &Out) -> Option<i64> {
    let line = out.stdout.first()?;
    if let Some(rest) = line.strip_prefix("lease ") {
        return i64::from_str_radix(rest.split(' ').next()?, 16).ok();
    }
    serde_json::from_str::<Value>(line).ok()?["ID"].as_i64()
}

/// The keys a `get --keys-only` printed (each key is followed by an empty
/// line).
fn keys_of(out: &Out) -> Vec<String> {
    out.stdout
        .iter()
        .filter(|l| !l.is_empty())
        .cloned()
        .collect()
}

fn read_events(path: &Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

// ---------------------------------------------------------------- normalisation

#[derive(Clone, Debug, PartialEq)]
enum Line {
    Json { prefix: String, value: Value },
    Text(String),
}

impl std::fmt::Display for Line {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Line::Json { prefix, value } => write!(f, "{prefix}{value}"),
            Line::Text(t) => write!(f, "{t}"),
        }
    }
}

struct Normaliser<'a> {
    leases: &'a [i64],
    side: &'static str,
    problems: Vec<String>,
}

impl Normaliser<'_> {
    fn lease_placeholder(&self, id: i64) -> Option<String> {
        self.leases
            .iter()
            .position(|l| *l == id)
            .map(|i| format!("<lease-{}>", i + 1))
    }

    fn text(&mut self, s: &str) -> String {
        let mut out = s.to_string();
        for (i, id) in self.leases.iter().enumerate() {
            out = out.replace(&format!("{id:016x}"), &format!("<lease-{}>", i + 1));
            out = out.replace(&format!("{id:x}"), &format!("<lease-{}>", i + 1));
        }
        // `..., attached keys([K1 K2])`: etcd lists them in Go map order.
        if let Some(i) = out.find("attached keys([") {
            let from = i + "attached keys([".len();
            if let Some(len) = out[from..].find("])") {
                let mut keys: Vec<&str> = out[from..from + len].split(' ').collect();
                keys.sort();
                let sorted = keys.join(" ");
                out.replace_range(from..from + len, &sorted);
            }
        }
        // `... granted with TTL(Gs), remaining(Rs)`.
        if let (Some(g), Some(r)) = (out.find("TTL("), out.find("remaining(")) {
            let num = |from: usize| {
                out[from..]
                    .chars()
                    .take_while(char::is_ascii_digit)
                    .collect::<String>()
                    .parse::<i64>()
                    .ok()
            };
            let (granted, remaining) = (num(g + 4), num(r + 10));
            match (granted, remaining) {
                (Some(g), Some(rem)) if (0..=g).contains(&rem) => {
                    let end = r + 10 + rem.to_string().len();
                    out.replace_range(r + 10..end, "<remaining>");
                }
                _ => self.problems.push(format!(
                    "{}: remaining TTL out of range in {s:?}",
                    self.side
                )),
            }
        }
        out
    }

    fn json(&mut self, key: &str, v: &Value, parent: Option<&Map<String, Value>>) -> Value {
        match (key, v) {
            ("cluster_id", Value::Number(_)) => return Value::String("<cluster-id>".into()),
            ("member_id", Value::Number(_)) => return Value::String("<member-id>".into()),
            ("raft_term", Value::Number(_)) => return Value::String("<raft-term>".into()),
            ("ts", _) => return Value::String("<timestamp>".into()),
            ("target", _) => return Value::String("<grpc-target>".into()),
            ("ID" | "id" | "lease", Value::Number(n)) => {
                if let Some(p) = n.as_i64().and_then(|id| self.lease_placeholder(id)) {
                    return Value::String(p);
                }
            }
            ("ttl", Value::Number(n)) => {
                if let Some(granted) = parent
                    .and_then(|p| p.get("granted-ttl"))
                    .and_then(Value::as_i64)
                {
                    let ttl = n.as_i64().unwrap_or(i64::MIN);
                    if (0..=granted).contains(&ttl) {
                        return Value::String("<remaining>".into());
                    }
                    if ttl != -1 {
                        self.problems.push(format!(
                            "{}: remaining TTL {ttl} out of range (granted {granted})",
                            self.side
                        ));
                    }
                }
            }
            ("keys", Value::Array(keys))
                if parent.is_some_and(|p| p.contains_key("granted-ttl")) =>
            {
                // Attached keys, in Go map order in etcd.
                let mut keys = keys.clone();
                keys.sort_by_key(Value::to_string);
                return Value::Array(keys);
            }
            _ => {}
        }
        match v {
            Value::Object(m) => Value::Object(
                m.iter()
                    .map(|(k, c)| (k.clone(), self.json(k, c, Some(m))))
                    .collect(),
            ),
            Value::Array(a) => Value::Array(a.iter().map(|c| self.json("", c, None)).collect()),
            Value::String(s) => Value::String(self.text(s)),
            other => other.clone(),
        }
    }

    fn line(&mut self, raw: &str) -> Line {
        for prefix in ["out: ", "err: "] {
            if let Some(rest) = raw.strip_prefix(prefix) {
                if rest.starts_with('{') {
                    if let Ok(v @ Value::Object(_)) = serde_json::from_str::<Value>(rest) {
                        return Line::Json {
                            prefix: prefix.to_string(),
                            value: self.json("", &v, None),
                        };
                    }
                }
                return Line::Text(format!("{prefix}{}", self.text(rest)));
            }
        }
        Line::Text(self.text(raw))
    }
}

fn normalise(side: &Side) -> (Vec<Vec<Line>>, Vec<String>) {
    let mut n = Normaliser {
        leases: &side.leases,
        side: side.name,
        problems: Vec::new(),
    };
    let steps = side
        .steps
        .iter()
        .map(|s| s.lines.iter().map(|l| n.line(l)).collect())
        .collect();
    (steps, n.problems)
}

fn compare_lines(etcd: &[Line], kvik: &[Line]) -> Vec<String> {
    let mut diffs = Vec::new();
    if etcd.len() != kvik.len() {
        diffs.push(format!(
            "etcd has {} lines, kvik {}",
            etcd.len(),
            kvik.len()
        ));
    }
    for (i, (e, k)) in etcd.iter().zip(kvik).enumerate() {
        match (e, k) {
            (
                Line::Json {
                    prefix: pe,
                    value: ve,
                },
                Line::Json {
                    prefix: pk,
                    value: vk,
                },
            ) if pe == pk => diff_json(&format!("line {}: {pe}$", i + 1), ve, vk, &mut diffs),
            _ if e != k => diffs.push(format!(
                "line {}: etcd {:?}, kvik {:?}",
                i + 1,
                e.to_string(),
                k.to_string()
            )),
            _ => {}
        }
    }
    diffs
}

fn show_lines(lines: &[Line]) -> String {
    lines.iter().map(|l| format!("\n        {l}")).collect()
}

/// Compares the two runs and fails the test with every problem found.
fn finish(test: &str, etcd: &Side, kvik: &Side) {
    let (etcd_steps, etcd_norm_problems) = normalise(etcd);
    let (kvik_steps, kvik_norm_problems) = normalise(kvik);
    let mut report = Vec::new();
    for (side, norm) in [(etcd, &etcd_norm_problems), (kvik, &kvik_norm_problems)] {
        for p in side.problems.iter().chain(norm.iter()) {
            report.push(format!("[{}] {p}", side.name));
        }
    }
    if std::env::var_os("KVIK_WATCH_LEASE_TRACE").is_some() {
        for (side, steps) in [(etcd, &etcd_steps), (kvik, &kvik_steps)] {
            for (s, lines) in side.steps.iter().zip(steps) {
                eprintln!(
                    "[{test} {}] {} — $ {}{}",
                    side.name,
                    s.title,
                    s.cmd,
                    show_lines(lines)
                );
            }
        }
    }
    let n = etcd.steps.len().max(kvik.steps.len());
    for i in 0..n {
        let (Some(es), Some(ks)) = (etcd.steps.get(i), kvik.steps.get(i)) else {
            let (which, s) = if i < etcd.steps.len() {
                ("kvik", &etcd.steps[i])
            } else {
                ("etcd", &kvik.steps[i])
            };
            report.push(format!(
                "step {}: {which} stopped before step {:?}",
                i + 1,
                s.title
            ));
            break;
        };
        if es.title != ks.title {
            report.push(format!(
                "step {}: etcd ran {:?}, kvik {:?}; stopping the comparison",
                i + 1,
                es.title,
                ks.title
            ));
            break;
        }
        let diffs = compare_lines(&etcd_steps[i], &kvik_steps[i]);
        if !diffs.is_empty() {
            report.push(format!(
                "step {} {:?} differs\n    $ {}\n    {}\n    etcd (normalised):{}\n    kvik (normalised):{}",
                i + 1,
                es.title,
                ks.cmd,
                diffs.join("\n    "),
                show_lines(&etcd_steps[i]),
                show_lines(&kvik_steps[i])
            ));
        }
    }
    if report.is_empty() {
        eprintln!("{test}: {} steps, kvik matches etcd", etcd.steps.len());
        return;
    }
    panic!(
        "{test}: {} problem(s):\n\n{}\n",
        report.len(),
        report.join("\n\n")
    );
}

/// Starts both servers and runs `scenario` against each, etcd first.
fn side_by_side(test: &str, scenario: fn(&mut Side) -> Result<(), String>) {
    let ctl = common::etcdctl_bin();
    let (etcd, kvik) = std::thread::scope(|sc| {
        let etcd = sc.spawn(|| Server::start(Kind::Etcd));
        let kvik = Server::start(Kind::Kvik);
        (etcd.join().expect("etcd start-up"), kvik)
    });
    let scratch = common::temp_dir(test);
    let mut sides = Vec::new();
    for (name, server) in [("etcd", &etcd), ("kvik", &kvik)] {
        let dir = scratch.join(name);
        std::fs::create_dir_all(&dir).unwrap();
        let mut side = Side::new(name, server, ctl.clone(), dir);
        let started = Instant::now();
        if let Err(e) = scenario(&mut side) {
            side.problems.push(format!("scenario stopped: {e}"));
        }
        eprintln!("{test}: {name} scenario took {:?}", started.elapsed());
        sides.push(side);
    }
    finish(test, &sides[0], &sides[1]);
    let _ = std::fs::remove_dir_all(&scratch);
}

// ---------------------------------------------------------------- watch

fn watch_scenario(s: &mut Side) -> Result<(), String> {
    // History at revisions 2..=6.
    s.ctl_ok("put a 1", &["put", "a", "1"])?;
    s.ctl_ok("put a 2", &["put", "a", "2"])?;
    s.ctl_ok("put ab 3", &["put", "ab", "3"])?;
    s.ctl_ok("del a", &["del", "a"])?;
    s.ctl_ok("put b x", &["put", "b", "x"])?;

    // Replay of one key's history.
    let lines = s.watch_fenced(
        "watch a --rev 1",
        &["watch", "a", "--rev", "1"],
        9,
        &[],
        "a",
        Fmt::Simple,
    )?;
    let expected = [
        "PUT", "a", "1", "PUT", "a", "2", "DELETE", "a", "", "PUT", "a", "fence-1",
    ];
    s.check(
        lines == expected,
        format!("watch a --rev 1 printed {lines:?}, expected {expected:?}"),
    );

    // Prefix, with previous key-values, simple and JSON.
    s.watch_fenced(
        "watch --prefix a --rev 1 --prev-kv",
        &["watch", "--prefix", "a", "--rev", "1", "--prev-kv"],
        0,
        &[],
        "ab",
        Fmt::Simple,
    )?;
    let lines = s.watch_fenced(
        "watch --prefix a --rev 1 --prev-kv -w json",
        &[
            "watch",
            "--prefix",
            "a",
            "--rev",
            "1",
            "--prev-kv",
            "-w",
            "json",
        ],
        1,
        &[],
        "a",
        Fmt::Json,
    )?;
    // The replay is one response of six events, each PUT after the first
    // one of its key and the DELETE carrying the previous value.
    let replay = lines
        .first()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    let events = replay["Events"].as_array().cloned().unwrap_or_default();
    let revs: Vec<i64> = events
        .iter()
        .filter_map(|e| e["kv"]["mod_revision"].as_i64())
        .collect();
    s.check(
        revs == [2, 3, 4, 5, 7, 8],
        format!("prefix replay revisions {revs:?}, expected [2, 3, 4, 5, 7, 8]: {replay}"),
    );
    s.check(
        events
            .get(3)
            .is_some_and(|e| e["type"] == 1 && e["prev_kv"]["value"] == standard_base64(b"2")),
        format!("the replayed DELETE of a lacks type 1 or prev_kv a=2: {replay}"),
    );

    // A key range [a, ac).
    s.watch_fenced(
        "watch a ac --rev 2",
        &["watch", "a", "ac", "--rev", "2"],
        0,
        &[],
        "ab",
        Fmt::Simple,
    )?;

    // Live writes; the watcher starts at the next revision so that none is
    // missed whenever its watch is registered.
    let next = (s.rev()? + 1).to_string();
    s.watch_fenced(
        "watch --prefix p (live)",
        &["watch", "--prefix", "p", "--rev", &next],
        0,
        &[
            &["put", "p/1", "v1"],
            &["put", "p/2", "v2"],
            &["put", "q", "not watched"],
            &["del", "p/1"],
            &["put", "p/3", "v3"],
            &["del", "--prefix", "p/"],
        ],
        "p/",
        Fmt::Simple,
    )?;

    // Exec mode: the command runs once per event, with the event in its
    // environment; replayed events, then a live one (the fence).
    s.ctl_ok("put x 1", &["put", "x", "1"])?;
    let x_rev = s.rev()?.to_string();
    s.ctl_ok("del x", &["del", "x"])?;
    let lines = s.watch_fenced(
        "watch x -- sh -c 'echo exec ...'",
        &[
            "watch",
            "x",
            "--rev",
            &x_rev,
            "--",
            "sh",
            "-c",
            "echo exec \"$ETCD_WATCH_REVISION\" \"$ETCD_WATCH_EVENT_TYPE\" \"$ETCD_WATCH_KEY\" \"$ETCD_WATCH_VALUE\"",
        ],
        8,
        &[],
        "x",
        Fmt::Exec,
    )?;
    s.check(
        lines.iter().filter(|l| l.starts_with("exec ")).count() == 3,
        format!("exec mode ran the command {lines:?}"),
    );

    // Interactive mode, simple and JSON.
    interactive_watch(s, false)?;
    interactive_watch(s, true)?;

    // A watch from a compacted revision is cancelled by the server.
    let rev = s.rev()?.to_string();
    s.ctl_ok("compact", &["compact", &rev])?;
    let out = s.ctl(
        "watch a --rev 2 after compaction",
        &["watch", "a", "--rev", "2"],
    )?;
    s.check(
        out.code != 0
            && out
                .stderr
                .iter()
                .any(|l| l.contains("required revision has been compacted")),
        "watch from a compacted revision was not cancelled",
    );
    s.ctl(
        "watch a --rev 2 -w json after compaction",
        &["watch", "a", "--rev", "2", "-w", "json"],
    )?;
    // The compacted revision itself is still watchable.
    s.watch_fenced(
        "watch --prefix w --rev <compacted> -w json",
        &["watch", "--prefix", "w", "--rev", &rev, "-w", "json"],
        1,
        &[],
        "w",
        Fmt::Json,
    )?;
    Ok(())
}

/// `watch -i`: watches are created by stdin lines; each is live once the
/// answer to a following `progress` line has been printed.
fn interactive_watch(s: &mut Side, json: bool) -> Result<(), String> {
    let mode = if json { "watch -i -w json" } else { "watch -i" };
    let args: &[&str] = if json {
        &["watch", "-i", "-w", "json"]
    } else {
        &["watch", "-i"]
    };
    // Lines per progress answer per watcher, per single-event response.
    let (progress, event) = if json { (2, 1) } else { (1, 3) };
    let mut w = s.spawn(args, true);
    let mut n = 0;
    // Each watcher prints its own progress answer: the order of those lines
    // between watchers is the scheduling of etcdctl's goroutines, so each
    // burst is sorted.
    let wait_progress = |w: &mut Proc, n: &mut usize, watchers: usize| -> Result<(), String> {
        let from = *n;
        *n += watchers * progress;
        w.wait_out_count(*n)?;
        w.out.seen[from..*n].sort();
        Ok(())
    };
    w.send("watch w1\nprogress\n")?;
    wait_progress(&mut w, &mut n, 1)?;
    w.send("watch --prefix wp\nprogress\n")?;
    wait_progress(&mut w, &mut n, 2)?;
    w.send("bogus\n")?;
    w.wait_err_count(1)?;
    w.send("watch\n")?;
    w.wait_err_count(2)?;
    // A watch with a start revision and previous key-values: b's one event.
    w.send("watch --rev 2 --prev-kv b\n")?;
    n += event;
    w.wait_out_count(n)?;
    for (write, lines) in [
        (&["put", "w1", "x"][..], event),
        (&["put", "wp/z", "y"][..], event),
        (&["put", "wq", "not watched"][..], 0),
        // With its previous key-value: 5 lines in simple output.
        (&["put", "b", "y"][..], if json { 1 } else { 5 }),
        (&["del", "w1"][..], event),
        (&["put", "wp/fence", "f"][..], event),
    ] {
        s.ctl_ok(&format!("{mode}: write"), write)?;
        n += lines;
        w.wait_out_count(n)?;
    }
    // One progress answer per watcher.
    w.send("progress\n")?;
    wait_progress(&mut w, &mut n, 3)?;
    // End of input ends the command.
    let code = w.wait_exit()?;
    s.check(
        code != 0 && w.err.seen.last().is_some_and(|l| l.contains("EOF")),
        format!("{mode} did not end with EOF: {}", w.show()),
    );
    s.record_proc(mode, &w, true);
    Ok(())
}

// ---------------------------------------------------------------- lease

fn lease_scenario(s: &mut Side) -> Result<(), String> {
    let l1 = s.grant("grant 100", &["lease", "grant", "100"])?;
    let la = s.grant(
        "grant 300 -w json",
        &["lease", "grant", "300", "-w", "json"],
    )?;
    let lb = s.grant("grant 200", &["lease", "grant", "200"])?;
    let lc = s.grant("grant 400", &["lease", "grant", "400"])?;
    // etcd lists leases soonest expiry first.
    let out = s.ctl_ok("lease list", &["lease", "list"])?;
    let expected = [
        "found 4 leases".to_string(),
        hex(l1),
        hex(lb),
        hex(la),
        hex(lc),
    ];
    s.check(
        out.stdout == expected,
        format!(
            "lease list printed {:?}, expected expiry order {expected:?}",
            out.stdout
        ),
    );

    let h1 = hex(l1);
    s.ctl_ok("put k1 --lease", &["put", "k1", "v1", "--lease", &h1])?;
    s.ctl_ok("put k2 --lease", &["put", "k2", "v2", "--lease", &h1])?;
    s.ctl_ok("timetolive", &["lease", "timetolive", &h1])?;
    s.ctl_ok("timetolive --keys", &["lease", "timetolive", "--keys", &h1])?;
    s.ctl_ok(
        "timetolive --keys -w json",
        &["lease", "timetolive", "--keys", &h1, "-w", "json"],
    )?;
    s.ctl_ok("get k1 -w json", &["get", "k1", "-w", "json"])?;
    s.ctl_ok("keep-alive --once", &["lease", "keep-alive", "--once", &h1])?;
    s.ctl_ok(
        "keep-alive --once -w json",
        &["lease", "keep-alive", "--once", &h1, "-w", "json"],
    )?;
    // The streaming keep-alive prints its first renewal at once.
    let mut ka = s.spawn(&["lease", "keep-alive", &h1], false);
    ka.wait_out_count(1)?;
    ka.kill();
    ka.out.seen.truncate(1);
    s.record_proc("keep-alive (first renewal)", &ka, false);

    // Revoking deletes the attached keys at one revision; a watcher replays
    // both DELETE events in one response.
    let next = (s.rev()? + 1).to_string();
    s.ctl_ok("revoke", &["lease", "revoke", &h1])?;
    let lines = s.watch_fenced(
        "watch --prefix k after revoke -w json",
        &["watch", "--prefix", "k", "--rev", &next, "-w", "json"],
        1,
        &[],
        "k",
        Fmt::Json,
    )?;
    let resp = lines
        .first()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    let deleted: Vec<(String, i64)> = resp["Events"]
        .as_array()
        .map(|evs| {
            evs.iter()
                .filter(|e| e["type"] == 1)
                .map(|e| {
                    (
                        e["kv"]["key"].as_str().unwrap_or("").to_string(),
                        e["kv"]["mod_revision"].as_i64().unwrap_or(0),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let rev: i64 = next.parse().unwrap();
    s.check(
        deleted == [(standard_base64(b"k1"), rev), (standard_base64(b"k2"), rev)],
        format!("revoke: expected DELETE k1, k2 at revision {rev} in one response, got {resp}"),
    );
    let out = s.ctl_ok("get --prefix k after revoke", &["get", "--prefix", "k"])?;
    s.check(
        out.stdout == ["k", "fence-1"],
        format!("keys of a revoked lease remain: {:?}", out.stdout),
    );

    // The revoked lease and one that never existed.
    s.ctl("revoke again", &["lease", "revoke", &h1])?;
    s.ctl(
        "keep-alive --once a revoked lease",
        &["lease", "keep-alive", "--once", &h1],
    )?;
    s.ctl("keep-alive a revoked lease", &["lease", "keep-alive", &h1])?;
    s.ctl("timetolive a revoked lease", &["lease", "timetolive", &h1])?;
    s.ctl(
        "timetolive an unknown lease",
        &["lease", "timetolive", "1234"],
    )?;
    s.ctl(
        "timetolive an unknown lease -w json",
        &["lease", "timetolive", "1234", "-w", "json"],
    )?;
    s.ctl(
        "put --lease an unknown lease",
        &["put", "k3", "v", "--lease", "1234"],
    )?;

    // TTL bounds: 9e9 s is the largest etcd grants.
    s.ctl("grant 9000000001", &["lease", "grant", "9000000001"])?;
    let big = s.grant("grant 9000000000", &["lease", "grant", "9000000000"])?;
    s.ctl_ok("timetolive 9000000000", &["lease", "timetolive", &hex(big)])?;
    s.ctl_ok("revoke the 9e9 lease", &["lease", "revoke", &hex(big)])?;

    // Small TTLs are raised to the minimum (2 s with the default election
    // timeout). Retried if the lease expires before timetolive runs on a
    // very slow machine.
    for attempt in 1..=3 {
        let g = s.run(&["lease", "grant", "1", "-w", "json"])?;
        let id = parse_grant(&g).ok_or(format!(
            "grant 1 granted nothing: {:?} {:?}",
            g.stdout, g.stderr
        ))?;
        let hid = hex(id);
        let args_t = ["lease", "timetolive", hid.as_str()];
        let args_j = ["lease", "timetolive", hid.as_str(), "-w", "json"];
        let t = s.run(&args_t)?;
        let j = s.run(&args_j)?;
        if attempt < 3
            && t.stdout
                .iter()
                .chain(&j.stdout)
                .any(|l| l.contains("expired") || l.contains("\"ttl\":-1"))
        {
            continue;
        }
        s.learn(id);
        s.record_out(
            "grant 1 -w json",
            &["lease", "grant", "1", "-w", "json"],
            &g,
        );
        s.record_out("timetolive of the TTL 1 lease", &args_t, &t);
        s.record_out("timetolive -w json of the TTL 1 lease", &args_j, &j);
        break;
    }
    s.grant("grant 0", &["lease", "grant", "0"])?;

    // Expiry: a TTL 2 lease with a key, never kept alive.
    let le = s.grant("grant 2", &["lease", "grant", "2"])?;
    s.ctl_ok("put exp --lease", &["put", "exp", "v", "--lease", &hex(le)])?;
    let put_rev = s.rev()?;
    let next = (put_rev + 1).to_string();
    let mut w = s.spawn(&["watch", "exp", "--rev", &next], false);
    let gone = s.poll("exp to expire", &["get", "exp"], |o| {
        o.code == 0 && o.stdout.is_empty()
    })?;
    s.record_out("get exp after expiry", &["get", "exp"], &gone);
    w.wait_out_count(3)?;
    w.kill();
    s.record_proc("watch exp during expiry", &w, false);
    let lines = s.watch_fenced(
        "watch exp after expiry -w json",
        &["watch", "exp", "--rev", &next, "-w", "json"],
        1,
        &[],
        "exp",
        Fmt::Json,
    )?;
    let resp = lines
        .first()
        .and_then(|l| serde_json::from_str::<Value>(l).ok())
        .unwrap_or(Value::Null);
    let ev = &resp["Events"][0];
    s.check(
        ev["type"] == 1
            && ev["kv"]["key"] == standard_base64(b"exp")
            && ev["kv"]["mod_revision"].as_i64() == Some(put_rev + 1),
        format!(
            "expiry: expected one DELETE exp at the new revision {}, got {resp}",
            put_rev + 1
        ),
    );
    s.ctl(
        "timetolive an expired lease",
        &["lease", "timetolive", &hex(le)],
    )?;

    // Once the short leases have expired, three are left, soonest expiry
    // first.
    let out = s.poll("the short leases to expire", &["lease", "list"], |o| {
        o.stdout.first().is_some_and(|l| l == "found 3 leases")
    })?;
    s.record_out("lease list at the end", &["lease", "list"], &out);
    let expected = ["found 3 leases".to_string(), hex(lb), hex(la), hex(lc)];
    s.check(
        out.stdout == expected,
        format!(
            "lease list printed {:?}, expected expiry order {expected:?}",
            out.stdout
        ),
    );
    Ok(())
}

// ---------------------------------------------------------------- lock

/// A holder's `sh -c` script: appends `NAME-acquired` to the events file,
/// prints `NAME KEY`, waits (bounded to 30 s) for `marker` if given, then
/// appends `NAME-releasing`.
fn holder_script(name: &str, events: &Path, marker: Option<&Path>) -> String {
    let ev = shq(events);
    let mut s = format!("echo {name}-acquired >> {ev}; echo \"{name} $ETCD_LOCK_KEY\"");
    if let Some(m) = marker {
        s.push_str(&format!(
            "; i=0; while [ ! -e {m} ] && [ $i -lt 600 ]; do sleep 0.05; i=$((i+1)); done",
            m = shq(m)
        ));
    }
    s.push_str(&format!("; echo {name}-releasing >> {ev}"));
    s
}

/// Polls until `n` keys are under `prefix/` (oldest first); records them.
fn queued(s: &mut Side, title: &str, prefix: &str, n: usize) -> Result<Vec<String>, String> {
    let args = ["get", "--prefix", prefix, "--keys-only", "--sort-by=CREATE"];
    let out = s.poll(&format!("{n} keys under {prefix}"), &args, |o| {
        keys_of(o).len() == n
    })?;
    s.record_out(title, &args, &out);
    Ok(keys_of(&out))
}

fn lock_scenario(s: &mut Side) -> Result<(), String> {
    // Two contenders: B blocks until A's command has ended.
    let events = s.scratch.join("events");
    let marker = s.scratch.join("release-a");
    let script_a = holder_script("A", &events, Some(&marker));
    let mut a = s.spawn(&["lock", "L1", "--", "sh", "-c", &script_a], false);
    a.wait_out_count(1)?;
    let key_a = a.out.seen[0].clone();
    s.learn_key(&key_a, "L1/")?;
    let script_b = holder_script("B", &events, None);
    let mut b = s.spawn(&["lock", "L1", "--", "sh", "-c", &script_b], false);
    let keys = queued(s, "L1 waiters", "L1/", 2)?;
    s.learn_key(&keys[1], "L1/")?;
    b.out.drain();
    let so_far = read_events(&events);
    s.check(
        b.out.seen.is_empty() && so_far == ["A-acquired"],
        format!(
            "B got the lock while A held it: B printed {:?}, events {so_far:?}",
            b.out.seen
        ),
    );
    std::fs::write(&marker, b"").map_err(|e| e.to_string())?;
    a.wait_exit()?;
    s.record_proc("lock L1 -- A (held until released)", &a, true);
    b.wait_out_count(1)?;
    b.wait_exit()?;
    s.record_proc("lock L1 -- B (waited for A)", &b, true);
    let order = read_events(&events);
    s.check(
        order == ["A-acquired", "A-releasing", "B-acquired", "B-releasing"],
        format!("lock hand-over order {order:?}"),
    );
    s.record(
        "lock L1 event order",
        "(events file)".into(),
        None,
        &order,
        &[],
    );
    s.ctl_ok("L1 after both", &["get", "--prefix", "L1/", "--keys-only"])?;

    // Without a command: prints the key (and its empty value), holds the lock
    // until SIGTERM, then unlocks.
    let mut h = s.spawn(&["lock", "L2"], false);
    h.wait_out_count(2)?;
    let lh = s.learn_key(&h.out.seen[0], "L2/")?;
    s.ctl_ok(
        "timetolive --keys of the L2 holder's session",
        &["lease", "timetolive", "--keys", &hex(lh)],
    )?;
    let script_w = holder_script("W", &events, None);
    let mut w = s.spawn(&["lock", "L2", "--", "sh", "-c", &script_w], false);
    let keys = queued(s, "L2 waiters", "L2/", 2)?;
    s.learn_key(&keys[1], "L2/")?;
    w.out.drain();
    s.check(
        w.out.seen.is_empty(),
        format!("W got L2 while the holder had it: {:?}", w.out.seen),
    );
    h.signal(libc::SIGTERM);
    h.wait_exit()?;
    s.record_proc("lock L2 (SIGTERM)", &h, true);
    w.wait_out_count(1)?;
    w.wait_exit()?;
    s.record_proc("lock L2 -- W", &w, true);

    // A holder killed outright keeps the lock until its session lease
    // (--ttl 2) expires.
    let mut k = s.spawn(&["lock", "--ttl", "2", "L3"], false);
    k.wait_out_count(2)?;
    let lk = s.learn_key(&k.out.seen[0], "L3/")?;
    let script_v = holder_script("V", &events, None);
    let mut v = s.spawn(&["lock", "L3", "--", "sh", "-c", &script_v], false);
    let keys = queued(s, "L3 waiters", "L3/", 2)?;
    s.learn_key(&keys[1], "L3/")?;
    k.kill();
    s.record_proc("lock --ttl 2 L3 (SIGKILL)", &k, false);
    v.wait_out_count(1)?;
    v.wait_exit()?;
    s.record_proc("lock L3 -- V (after the holder's lease expired)", &v, true);
    s.ctl(
        "timetolive of the killed holder's session",
        &["lease", "timetolive", &hex(lk)],
    )?;

    // A holder whose session lease is revoked loses the lock and says so.
    let mut r = s.spawn(&["lock", "--ttl", "2", "L4"], false);
    r.wait_out_count(2)?;
    let lr = s.learn_key(&r.out.seen[0], "L4/")?;
    s.ctl_ok(
        "revoke the L4 holder's session",
        &["lease", "revoke", &hex(lr)],
    )?;
    r.wait_exit()?;
    s.record_proc("lock L4 (session revoked)", &r, true);

    // The command's exit status and environment.
    let args = [
        "lock",
        "L5",
        "--",
        "sh",
        "-c",
        "echo \"$ETCD_LOCK_KEY $ETCD_LOCK_REV\"; exit 3",
    ];
    let out = s.run(&args)?;
    if let Some(line) = out.stdout.first() {
        s.learn_key(line, "L5/")?;
    }
    s.record_out("lock L5 -- exit 3", &args, &out);
    s.ctl("lock without a name", &["lock"])?;
    s.ctl_ok("everything left", &["get", "", "--prefix", "-w", "json"])?;
    Ok(())
}

// ---------------------------------------------------------------- elect

fn elect_scenario(s: &mut Side) -> Result<(), String> {
    // An observer from before any campaign prints each new leader's key and
    // proposal.
    let mut o = s.spawn(&["elect", "-l", "E"], false);
    let mut a = s.spawn(&["elect", "E", "first"], false);
    a.wait_out_count(2)?;
    s.learn_key(&a.out.seen[0], "E/")?;
    o.wait_out_count(2)?;
    s.check(
        o.out.seen[..2] == a.out.seen[..2],
        format!(
            "observer printed {:?}, leader A {:?}",
            o.out.seen, a.out.seen
        ),
    );

    let mut b = s.spawn(&["elect", "E", "second"], false);
    let keys = queued(s, "E candidates", "E/", 2)?;
    let lb = s.learn_key(&keys[1], "E/")?;
    b.out.drain();
    s.check(
        b.out.seen.is_empty(),
        format!("B became leader while A led: {:?}", b.out.seen),
    );
    // SIGTERM: A resigns; B leads.
    a.signal(libc::SIGTERM);
    a.wait_exit()?;
    s.record_proc("elect E first (SIGTERM)", &a, true);
    b.wait_out_count(2)?;
    o.wait_out_count(4)?;
    s.check(
        o.out.seen[2..4] == b.out.seen[..2],
        format!(
            "observer printed {:?}, leader B {:?}",
            o.out.seen, b.out.seen
        ),
    );
    s.ctl(
        "E after A resigned",
        &["get", "--prefix", "E/", "--keys-only"],
    )?;

    // B is killed outright and its session lease revoked (as its expiry
    // would): C leads.
    let mut c = s.spawn(&["elect", "E", "third"], false);
    queued(s, "E candidates after A", "E/", 2)?;
    b.kill();
    s.record_proc("elect E second (SIGKILL)", &b, false);
    s.ctl_ok("revoke B's session", &["lease", "revoke", &hex(lb)])?;
    c.wait_out_count(2)?;
    s.learn_key(&c.out.seen[0], "E/")?;
    o.wait_out_count(6)?;
    s.check(
        o.out.seen[4..6] == c.out.seen[..2],
        format!(
            "observer printed {:?}, leader C {:?}",
            o.out.seen, c.out.seen
        ),
    );

    // A late observer prints the current leader at once.
    let mut late = s.spawn(&["elect", "-l", "E"], false);
    late.wait_out_count(2)?;
    late.kill();
    s.record_proc("elect -l E (late observer)", &late, false);

    c.signal(libc::SIGTERM);
    c.wait_exit()?;
    s.record_proc("elect E third (SIGTERM)", &c, true);
    o.kill();
    s.record_proc("elect -l E (observer)", &o, false);
    s.ctl_ok("E at the end", &["get", "--prefix", "E/", "-w", "json"])?;

    s.ctl("elect without a proposal", &["elect", "E9"])?;
    s.ctl("elect -l with a proposal", &["elect", "-l", "E9", "x"])?;
    Ok(())
}

// ---------------------------------------------------------------- tests

#[test]
fn etcdctl_watch_matches_etcd() {
    side_by_side("watch", watch_scenario);
}

#[test]
fn etcdctl_lease_matches_etcd() {
    side_by_side("lease", lease_scenario);
}

#[test]
fn etcdctl_lock_matches_etcd() {
    side_by_side("lock", lock_scenario);
}

#[test]
fn etcdctl_elect_matches_etcd() {
    side_by_side("elect", elect_scenario);
}

#[test]
fn normaliser_replaces_only_leases_ids_and_remaining_ttls() {
    let leases = [0x1cbc6910c0f8eb2c_i64, 0x212f5e8865da6f6];
    let mut n = Normaliser {
        leases: &leases,
        side: "test",
        problems: Vec::new(),
    };
    assert_eq!(
        n.line("out: lease 1cbc6910c0f8eb2c granted with TTL(100s), remaining(99s)"),
        Line::Text("out: lease <lease-1> granted with TTL(100s), remaining(<remaining>s)".into())
    );
    assert_eq!(
        n.line("out: L2/212f5e8865da6f6"),
        Line::Text("out: L2/<lease-2>".into())
    );
    assert_eq!(
        n.line("out: lease 0000000000001234 already expired"),
        Line::Text("out: lease 0000000000001234 already expired".into())
    );
    let Line::Json { value, .. } = n.line(
        r#"out: {"cluster_id":1,"member_id":2,"revision":7,"raft_term":2,"id":2070645449361517356,"ttl":99,"granted-ttl":100,"keys":["azE="]}"#,
    ) else {
        panic!("not JSON")
    };
    assert_eq!(
        value,
        serde_json::json!({"cluster_id":"<cluster-id>","member_id":"<member-id>","revision":7,"raft_term":"<raft-term>","id":"<lease-1>","ttl":"<remaining>","granted-ttl":100,"keys":["azE="]})
    );
    assert_eq!(
        n.line("out: lease 1cbc6910c0f8eb2c granted with TTL(100s), remaining(99s), attached keys([k2 k1])"),
        Line::Text("out: lease <lease-1> granted with TTL(100s), remaining(<remaining>s), attached keys([k1 k2])".into())
    );
    let Line::Json { value, .. } =
        n.line(r#"out: {"id":1,"ttl":-1,"granted-ttl":100,"keys":["azI=","azE="]}"#)
    else {
        panic!("not JSON")
    };
    assert_eq!(
        value,
        serde_json::json!({"id":1,"ttl":-1,"granted-ttl":100,"keys":["azE=","azI="]})
    );
    assert!(n.problems.is_empty());
    n.line("out: lease 1cbc6910c0f8eb2c granted with TTL(100s), remaining(101s)");
    assert_eq!(n.problems.len(), 1);
    assert_eq!(standard_base64(b"fence-1"), "ZmVuY2UtMQ==");
    assert_eq!(standard_base64(b"exp"), "ZXhw");
    assert_eq!(standard_base64(b"k1"), "azE=");
}
