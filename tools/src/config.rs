//! kvik's typed server configuration, built from etcd's flags and `ETCD_*`
//! environment variables (parsed by `flags`) and checked the way etcd 3.7
//! checks them, so a command line etcd rejects is rejected with etcd's
//! message. On top of that kvik refuses the settings it cannot honour
//! safely yet (TLS, auth token types, discovery), and lists the accepted
//! settings that have no effect yet.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use crate::flags::{self, Class, FlagError, FlagSet, GoUrl, Parsed, Value};

/// `--initial-cluster-state`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClusterState {
    /// Bootstrapping a new cluster.
    New,
    /// Joining an existing cluster.
    Existing,
}

/// A URL to listen on: its text as given (scheme in lower case) and the
/// socket address it names (`localhost` is 127.0.0.1; an empty port is 0).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListenUrl {
    /// The URL text, e.g. `http://localhost:2379`.
    pub url: String,
    /// The address to bind.
    pub addr: SocketAddr,
}

/// The server configuration.
#[derive(Clone, Debug)]
pub struct Config {
    /// `--name`.
    pub name: String,
    /// `--data-dir`; `<name>.kvik` when not given or empty.
    pub data_dir: PathBuf,
    /// `--listen-client-urls`, sorted and de-duplicated like etcd.
    pub listen_client_urls: Vec<ListenUrl>,
    /// `--advertise-client-urls`, sorted and de-duplicated like etcd.
    pub advertise_client_urls: Vec<String>,
    /// `--listen-peer-urls`.
    pub listen_peer_urls: Vec<ListenUrl>,
    /// `--initial-advertise-peer-urls`.
    pub initial_advertise_peer_urls: Vec<String>,
    /// `--initial-cluster` as member name and peer URLs (sorted), members in
    /// the order given. Unchecked until [`Config::check_bootstrap`].
    pub initial_cluster: Vec<(String, Vec<String>)>,
    /// `--initial-cluster-state`.
    pub initial_cluster_state: ClusterState,
    /// `--initial-cluster-token`.
    pub initial_cluster_token: String,
    /// `--max-txn-ops`.
    pub max_txn_ops: usize,
    /// `--max-request-bytes`.
    pub max_request_bytes: usize,
    /// `--kvik-force-epoll`: use the epoll fallback even where io_uring works.
    pub force_epoll: bool,
    /// `--kvik-cores`: executors to run; the available parallelism when 0.
    pub cores: usize,
    /// `--log-level` (debug, info, warn, error, dpanic, panic, fatal).
    pub log_level: String,
    /// `--logger` (always `zap`, etcd's only choice).
    pub logger: String,
    /// `--log-outputs`: `default`, `stderr`, `stdout`, `systemd/journal` or file paths.
    pub log_outputs: Vec<String>,
    /// `--log-format` (`json` or `console`).
    pub log_format: String,
    /// `--enable-pprof`.
    pub enable_pprof: bool,
    /// Flags that were set (`--name` form) but have no effect in kvik yet.
    pub not_yet_effective: Vec<String>,
    /// Warnings to log at start-up.
    pub warnings: Vec<String>,
    /// Every flag's value, for settings not copied into fields above.
    pub flags: FlagSet,
}

/// Why kvik will not start with a command line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConfigError {
    /// A flag or environment error etcd reports the same way.
    Flag(FlagError),
    /// `-h` / `--help`: print [`flags::help_text`], exit 0.
    HelpRequested,
    /// `--version`: print [`flags::version_text`], exit 0.
    VersionRequested,
    /// `etcd gateway` / `etcd grpc-proxy`.
    UnsupportedCommand(String),
    /// `--config-file` or `ETCD_CONFIG_FILE` (named first) with its path.
    ConfigFile { given_by: String, path: String },
    /// A setting kvik cannot honour yet and will not ignore.
    Refused { what: String, reason: &'static str },
    /// A configuration etcd rejects; etcd's message.
    Invalid(String),
}

impl ConfigError {
    /// Exit status: 0 for help and version, 2 for command-line syntax
    /// errors (print [`flags::usage`] too), 1 otherwise, as etcd.
    pub fn exit_code(&self) -> i32 {
        match self {
            ConfigError::Flag(e) => e.exit_code(),
            ConfigError::HelpRequested | ConfigError::VersionRequested => 0,
            _ => 1,
        }
    }

    /// Whether the usage text should follow the message.
    pub fn shows_usage(&self) -> bool {
        matches!(self, ConfigError::Flag(e) if e.shows_usage())
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Flag(e) => write!(f, "{e}"),
            ConfigError::HelpRequested => f.write_str("help requested"),
            ConfigError::VersionRequested => f.write_str("version requested"),
            ConfigError::UnsupportedCommand(c) => write!(f, "kvik: the etcd command `{c}` is not supported yet"),
            ConfigError::ConfigFile { given_by, path } => write!(
                f,
                "kvik: {given_by} ({path}) is not supported yet: give the settings as command-line flags \
                 or ETCD_* environment variables"
            ),
            ConfigError::Refused { what, reason } => {
                write!(f, "kvik: {what} is not supported yet: refusing to start without {reason}")
            }
            ConfigError::Invalid(m) => f.write_str(m),
        }
    }
}

impl std::error::Error for ConfigError {}

impl From<FlagError> for ConfigError {
    fn from(e: FlagError) -> Self {
        ConfigError::Flag(e)
    }
}

const ERR_UNSET_ADVERTISE: &str =
    "--advertise-client-urls is required when --listen-client-urls is set explicitly";
const MAX_ELECTION_MS: u64 = 50_000;

impl Config {
    /// Builds the configuration from the arguments (without the program
    /// name) and the environment, as etcd does: command-line flags first,
    /// then `ETCD_*` variables for the flags not given, then etcd's checks,
    /// then kvik's refusals. Reads nothing but its inputs.
    pub fn from_args_env(
        args: impl IntoIterator<Item = String>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Config, ConfigError> {
        let args: Vec<String> = args.into_iter().collect();
        if let Some(cmd) = args.first() {
            if cmd == "gateway" || cmd == "grpc-proxy" {
                return Err(ConfigError::UnsupportedCommand(cmd.clone()));
            }
        }
        let mut fs = match FlagSet::parse_args(args)? {
            Parsed::Run(fs) => fs,
            Parsed::Help => return Err(ConfigError::HelpRequested),
            Parsed::Version => return Err(ConfigError::VersionRequested),
        };
        let env: Vec<(String, String)> = env.into_iter().collect();
        let path = fs.string("config-file");
        if !path.is_empty() {
            return Err(ConfigError::ConfigFile {
                given_by: "--config-file".into(),
                path: path.into(),
            });
        }
        if let Some((_, path)) = env.iter().find(|(k, _)| k == "ETCD_CONFIG_FILE") {
            if !path.is_empty() {
                return Err(ConfigError::ConfigFile {
                    given_by: "ETCD_CONFIG_FILE".into(),
                    path: path.clone(),
                });
            }
        }
        fs.apply_env(env)?;

        let mut warnings = fs.warnings().to_vec();
        let mut not_yet_effective = Vec::new();
        for (spec, _, _) in fs.explicitly_set() {
            match (spec.alias_of, spec.removed_in) {
                (Some(target), Some(v)) => warnings.push(format!(
                    "--{} was removed in etcd v{v}; kvik takes it as --{target}",
                    spec.name
                )),
                (None, Some(v)) => {
                    warnings.push(format!("--{} was removed in etcd v{v}", spec.name))
                }
                _ => {}
            }
            if let Some(d) = spec.deprecation {
                warnings.push(d.to_string());
            }
            match spec.class {
                Class::NotYetEffective => not_yet_effective.push(format!("--{}", spec.name)),
                Class::Ignored => {
                    warnings.push(format!("--{} is no longer supported - ignoring", spec.name))
                }
                _ => {}
            }
        }
        for (spec, _, _) in fs.explicitly_set() {
            if let Some(target) = spec.alias_of {
                if fs.is_set(target) {
                    return Err(ConfigError::Invalid(format!(
                        "cannot set --{} and --{target} at the same time, please use --{target} only",
                        spec.name
                    )));
                }
            }
        }

        let missing_advertise =
            fs.is_set("listen-client-urls") && !fs.is_set("advertise-client-urls");
        validate_like_etcd(&fs, missing_advertise)?;
        refuse_unsupported(&fs)?;

        let name = fs.string("name").to_string();
        let listen_client_urls = listen_urls(&fs, "listen-client-urls")?;
        let listen_peer_urls = listen_urls(&fs, "listen-peer-urls")?;
        let advertise_client_urls = if missing_advertise {
            Vec::new()
        } else {
            texts(fs.urls("advertise-client-urls"))
        };
        let initial_advertise_peer_urls = texts(fs.urls("initial-advertise-peer-urls"));

        // etcd's UpdateDefaultClusterFromName: `--name x` alone gives
        // `x=<advertised peer URLs>`.
        let mut cluster = fs.string("initial-cluster").to_string();
        if name != "default" && cluster == flags::DEFAULT_INITIAL_CLUSTER {
            let n = if name.is_empty() {
                "default"
            } else {
                name.as_str()
            };
            cluster = initial_advertise_peer_urls
                .iter()
                .map(|u| format!("{n}={u}"))
                .collect::<Vec<_>>()
                .join(",");
        }
        let initial_cluster = parse_initial_cluster(&cluster);

        let mut data_dir = fs.string("data-dir").to_string();
        if data_dir.is_empty() {
            data_dir = format!("{name}.kvik");
            warnings.push(format!("'data-dir' was empty; using default {data_dir}"));
        }
        let cores = match usize::try_from(fs.uint("kvik-cores")).unwrap_or(usize::MAX) {
            0 => std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(1),
            n => n,
        };

        Ok(Config {
            name,
            data_dir: PathBuf::from(data_dir),
            listen_client_urls,
            advertise_client_urls,
            listen_peer_urls,
            initial_advertise_peer_urls,
            initial_cluster,
            initial_cluster_state: if fs.string("initial-cluster-state") == "existing" {
                ClusterState::Existing
            } else {
                ClusterState::New
            },
            initial_cluster_token: fs.string("initial-cluster-token").to_string(),
            max_txn_ops: usize::try_from(fs.uint("max-txn-ops")).unwrap_or(usize::MAX),
            max_request_bytes: usize::try_from(fs.uint("max-request-bytes")).unwrap_or(usize::MAX),
            force_epoll: fs.boolean("kvik-force-epoll"),
            cores,
            log_level: fs.string("log-level").to_string(),
            logger: fs.string("logger").to_string(),
            log_outputs: fs.list("log-outputs").to_vec(),
            log_format: fs.string("log-format").to_string(),
            enable_pprof: fs.boolean("enable-pprof"),
            not_yet_effective,
            warnings,
            flags: fs,
        })
    }

    /// etcd's checks of `--initial-cluster` for a member that has no data
    /// yet (etcd skips them once the data directory holds a member): the
    /// URLs must parse, this member's name must be listed, and for a new
    /// cluster its URLs must match `--initial-advertise-peer-urls` and no URL
    /// may appear twice. Host names other than `localhost` are taken as
    /// matching, since etcd would resolve them by DNS.
    pub fn check_bootstrap(&self) -> Result<(), ConfigError> {
        let mut members: Vec<(&str, Vec<GoUrl>)> = Vec::new();
        for (name, urls) in &self.initial_cluster {
            let mut parsed = Vec::new();
            for u in urls {
                let u = flags::parse_etcd_url(u).map_err(|e| {
                    ConfigError::Invalid(format!("error setting up initial cluster: {e}"))
                })?;
                parsed.push(u);
            }
            members.push((name, parsed));
        }
        let Some((_, local)) = members.iter().find(|(n, _)| *n == self.name) else {
            return Err(ConfigError::Invalid(format!(
                "couldn't find local name {:?} in the initial cluster configuration",
                self.name
            )));
        };
        if self.initial_cluster_state == ClusterState::Existing {
            return Ok(());
        }
        let mut ap = self.initial_advertise_peer_urls.clone();
        ap.sort();
        let mut ic = texts(local);
        ic.sort();
        if ap != ic && !resolved_equal(&ap, &ic) {
            let missing: Vec<String> = ic
                .iter()
                .filter(|u| !ap.contains(u))
                .map(|u| format!("{}={u}", self.name))
                .collect();
            let why = if ap.len() == ic.len() {
                format!("resolved urls: {:?} != {:?}", ap.join(","), ic.join(","))
            } else {
                format!("len({}) != len({})", go_quote_list(&ap), go_quote_list(&ic))
            };
            let mine: Vec<String> = ap.iter().map(|u| format!("{}={u}", self.name)).collect();
            if !missing.is_empty() {
                return Err(ConfigError::Invalid(format!(
                    "--initial-cluster has {} but missing from --initial-advertise-peer-urls={} ({why})",
                    missing.join(","),
                    ap.join(",")
                )));
            }
            let extra: Vec<&String> = ap.iter().filter(|u| !ic.contains(u)).collect();
            if !extra.is_empty() {
                let extra: Vec<&str> = extra.iter().map(|s| s.as_str()).collect();
                return Err(ConfigError::Invalid(format!(
                    "--initial-advertise-peer-urls has {} but missing from --initial-cluster={}",
                    extra.join(","),
                    mine.join(",")
                )));
            }
            return Err(ConfigError::Invalid(format!(
                "failed to resolve {} to match --initial-cluster={} ({why})",
                ap.join(","),
                mine.join(",")
            )));
        }
        let mut all: Vec<(String, &str)> = members
            .iter()
            .flat_map(|(n, us)| us.iter().map(move |u| (format!("{n}={u}"), u.as_str())))
            .collect();
        all.sort();
        let mut seen = std::collections::HashSet::new();
        if all.iter().any(|(_, u)| !seen.insert(*u)) {
            let pairs: Vec<&str> = all.iter().map(|(p, _)| p.as_str()).collect();
            return Err(ConfigError::Invalid(format!(
                "initial cluster {} has duplicate url",
                pairs.join(",")
            )));
        }
        Ok(())
    }
}

fn texts(urls: &[GoUrl]) -> Vec<String> {
    urls.iter().map(|u| u.as_str().to_string()).collect()
}

/// Go's `%q` of a `[]string`: `["a" "b"]`.
fn go_quote_list(v: &[String]) -> String {
    let q: Vec<String> = v.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", q.join(" "))
}

/// The two sorted URL lists are equal once `localhost` is read as
/// 127.0.0.1, or cannot be compared without DNS (a host name is in them).
fn resolved_equal(a: &[String], b: &[String]) -> bool {
    fn norm(u: &str) -> Option<Option<String>> {
        let u = flags::parse_etcd_url(u).ok()?;
        let host = match u.hostname() {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => match h.parse::<IpAddr>() {
                Ok(ip) => ip,
                Err(_) => return Some(None),
            },
        };
        Some(Some(format!(
            "{}://{}",
            u.scheme(),
            SocketAddr::new(host, u.port().parse().unwrap_or(0))
        )))
    }
    let (mut na, mut nb) = (Vec::new(), Vec::new());
    for (src, dst) in [(a, &mut na), (b, &mut nb)] {
        for u in src {
            match norm(u) {
                Some(Some(s)) => dst.push(s),
                Some(None) => return true,
                None => return false,
            }
        }
        dst.sort();
    }
    na == nb
}

/// etcd's `types.NewURLsMap` split (`name=url,name=url`), without checking
/// the URLs: names in first-seen order, each name's URLs trimmed and sorted.
pub fn parse_initial_cluster(s: &str) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    for item in s.split(',') {
        if item.is_empty() {
            continue;
        }
        let (name, url) = item.split_once('=').unwrap_or((item, ""));
        let url = url.trim().to_string();
        match out.iter_mut().find(|(n, _)| n == name) {
            Some((_, urls)) => urls.push(url),
            None => out.push((name.to_string(), vec![url])),
        }
    }
    for (_, urls) in &mut out {
        urls.sort();
    }
    out
}

/// etcd's `Config.Validate` (and the checks around it), in etcd's order.
fn validate_like_etcd(fs: &FlagSet, missing_advertise: bool) -> Result<(), ConfigError> {
    let invalid = |m: String| Err(ConfigError::Invalid(m));
    if fs.string("discovery-fallback") == "proxy" {
        return invalid(
            "v2 proxy is deprecated, and --discovery-fallback can't be configured as \"proxy\""
                .into(),
        );
    }
    // Logging.
    match fs.string("logger") {
        "zap" => {}
        "capnslog" => return invalid("--logger=capnslog is removed in v3.5".into()),
        other => return invalid(format!("unknown logger option {other:?}")),
    }
    let outputs = fs.list("log-outputs");
    if outputs.len() > 1 && outputs.iter().any(|o| o == "default") {
        return invalid("multi logoutput for \"default\" is not supported yet".into());
    }
    if outputs.len() > 1 && outputs.iter().any(|o| o == "systemd/journal") {
        return invalid(format!(
            "running with systemd/journal but other '--log-outputs' values ({}) are configured with 'default'; \
             override 'default' value with something else",
            go_quote_list(outputs)
        ));
    }
    let level = fs.string("log-level");
    let levels = [
        "", "debug", "info", "warn", "error", "dpanic", "panic", "fatal",
    ];
    if !levels.contains(&level) && !levels.iter().any(|l| l.to_uppercase() == level) {
        return invalid(format!("unrecognized level: {level:?}"));
    }
    let format = fs.string("log-format");
    if !["", "json", "console"].contains(&format) {
        return invalid(format!(
            "unknown log format: {format}, supported values json, console"
        ));
    }
    // Addresses.
    for flag in [
        "listen-peer-urls",
        "listen-client-urls",
        "listen-client-http-urls",
        "listen-metrics-urls",
    ] {
        for u in fs.urls(flag) {
            if matches!(u.scheme(), "unix" | "unixs") || u.hostname() == "localhost" {
                continue;
            }
            if u.hostname().parse::<IpAddr>().is_err() {
                return invalid(format!("expected IP in URL for binding ({u})"));
            }
        }
    }
    let empty_host = |urls: &[GoUrl]| {
        urls.iter()
            .find(|u| !matches!(u.scheme(), "unix" | "unixs") && u.hostname().is_empty())
            .map(|u| format!("unexpected empty host ({u})"))
    };
    let peers = fs.urls("initial-advertise-peer-urls");
    if let Some(e) = empty_host(peers) {
        return invalid(format!(
            "--initial-advertise-peer-urls {:?} must be \"host:port\" ({e})",
            texts(peers).join(",")
        ));
    }
    let clients = if missing_advertise {
        &[][..]
    } else {
        fs.urls("advertise-client-urls")
    };
    if let Some(e) = empty_host(clients) {
        return invalid(format!(
            "--advertise-client-urls {:?} must be in the format \"host:port\", \"unix:/path/to/socket\" or \
             \"unixs:/path/to/socket\" ({e})",
            texts(clients).join(",")
        ));
    }
    // Raft timing.
    let (tick, election) = (fs.uint("heartbeat-interval"), fs.uint("election-timeout"));
    if tick == 0 {
        return invalid(format!("--heartbeat-interval must be >0 (set to {tick}ms)"));
    }
    if election == 0 {
        return invalid(format!(
            "--election-timeout must be >0 (set to {election}ms)"
        ));
    }
    if tick.saturating_mul(5) > election {
        return invalid(format!(
            "--election-timeout[{election}ms] should be at least as 5 times as --heartbeat-interval[{tick}ms]"
        ));
    }
    if election > MAX_ELECTION_MS {
        return invalid(format!(
            "--election-timeout[{election}ms] is too long, and should be set less than {MAX_ELECTION_MS}ms"
        ));
    }
    if missing_advertise {
        return invalid(ERR_UNSET_ADVERTISE.into());
    }
    let mode = fs.string("auto-compaction-mode");
    match mode {
        "periodic" | "revision" => {}
        "" => return invalid("undefined auto-compaction-mode".into()),
        m => return invalid(format!("unknown auto-compaction-mode {m:?}")),
    }
    if let Value::Gates(g) = fs.get("feature-gates") {
        if flags::gate_enabled(g, "LeaseCheckpointPersist")
            && !flags::gate_enabled(g, "LeaseCheckpoint")
        {
            return invalid(
                "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint".into(),
            );
        }
    }
    let hash_check = fs.duration("compact-hash-check-time");
    if hash_check.0 <= 0 {
        return invalid(format!(
            "--compact-hash-check-time must be >0 (set to {hash_check})"
        ));
    }
    let tls_version = |v: &str| match v {
        "" => Ok(0),
        "TLS1.2" => Ok(12),
        "TLS1.3" => Ok(13),
        _ => Err(ConfigError::Invalid(format!(
            "unexpected TLS version {v:?} (must be one of: TLS1.2, TLS1.3)"
        ))),
    };
    let (min, max) = (fs.string("tls-min-version"), fs.string("tls-max-version"));
    let (lo, hi) = (tls_version(min)?, tls_version(max)?);
    if hi != 0 && lo > hi {
        return invalid(format!(
            "min version ({min}) is greater than max version ({max})"
        ));
    }
    // etcd parses the compaction retention when it starts: whole hours (or
    // revisions), else a duration; empty means "0".
    let retention = fs.string("auto-compaction-retention");
    let whole = retention.is_empty() || retention.parse::<i64>().is_ok_and(|h| h >= 0);
    if !whole {
        if let Err(e) = flags::parse_go_duration(retention) {
            return invalid(format!("error parsing CompactionRetention: {e}"));
        }
    }
    Ok(())
}

/// kvik's refusals: a `Refused` flag set to something other than empty or
/// its default; a TLS URL anywhere; a unix socket to listen on.
fn refuse_unsupported(fs: &FlagSet) -> Result<(), ConfigError> {
    let defaults = FlagSet::new();
    for spec in flags::SPECS {
        let Class::Refused(reason) = spec.class else {
            continue;
        };
        let v = fs.get(spec.name);
        if v.is_empty() || v == defaults.get(spec.name) {
            continue;
        }
        return Err(ConfigError::Refused {
            what: format!("--{}", spec.name),
            reason,
        });
    }
    const TLS: &str = "the TLS it asks for";
    for flag in [
        "listen-client-urls",
        "advertise-client-urls",
        "listen-peer-urls",
        "initial-advertise-peer-urls",
        "listen-client-http-urls",
        "listen-metrics-urls",
    ] {
        for u in fs.urls(flag) {
            if matches!(u.scheme(), "https" | "unixs") {
                return Err(ConfigError::Refused {
                    what: format!("--{flag} {u}"),
                    reason: TLS,
                });
            }
        }
    }
    for (name, urls) in parse_initial_cluster(fs.string("initial-cluster")) {
        for u in urls {
            let l = u.to_ascii_lowercase();
            if l.starts_with("https:") || l.starts_with("unixs:") {
                return Err(ConfigError::Refused {
                    what: format!("--initial-cluster {name}={u}"),
                    reason: TLS,
                });
            }
        }
    }
    for flag in ["listen-client-urls", "listen-peer-urls"] {
        for u in fs.urls(flag) {
            if u.scheme() == "unix" {
                return Err(ConfigError::Refused {
                    what: format!("--{flag} {u}"),
                    reason: "the unix socket it asks for",
                });
            }
        }
    }
    Ok(())
}

/// The socket addresses of a listen-URL flag (checked by etcd's rules already).
fn listen_urls(fs: &FlagSet, flag: &str) -> Result<Vec<ListenUrl>, ConfigError> {
    let mut out = Vec::new();
    for u in fs.urls(flag) {
        let ip = match u.hostname() {
            "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h.parse().map_err(|_| {
                ConfigError::Invalid(format!("expected IP in URL for binding ({u})"))
            })?,
        };
        let port = match u.port() {
            "" => 0,
            p => p
                .parse::<u16>()
                .map_err(|_| ConfigError::Invalid(format!("--{flag} {u}: invalid port")))?,
        };
        out.push(ListenUrl {
            url: u.as_str().to_string(),
            addr: SocketAddr::new(ip, port),
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|a| a.to_string()).collect()
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ok(a: &[&str]) -> Config {
        Config::from_args_env(args(a), Vec::new()).unwrap_or_else(|e| panic!("{a:?}: {e}"))
    }

    fn fail(a: &[&str]) -> ConfigError {
        match Config::from_args_env(args(a), Vec::new()) {
            Err(e) => e,
            Ok(c) => panic!("{a:?} accepted: {c:?}"),
        }
    }

    fn fail_msg(a: &[&str]) -> String {
        fail(a).to_string()
    }

    #[test]
    fn defaults() {
        let c = ok(&[]);
        assert_eq!(c.name, "default");
        assert_eq!(c.data_dir, PathBuf::from("default.kvik"));
        assert_eq!(
            c.listen_client_urls,
            [ListenUrl {
                url: "http://localhost:2379".into(),
                addr: sa("127.0.0.1:2379")
            }]
        );
        assert_eq!(c.listen_peer_urls[0].addr, sa("127.0.0.1:2380"));
        assert_eq!(c.advertise_client_urls, ["http://localhost:2379"]);
        assert_eq!(c.initial_advertise_peer_urls, ["http://localhost:2380"]);
        assert_eq!(
            c.initial_cluster,
            [(
                "default".to_string(),
                vec!["http://localhost:2380".to_string()]
            )]
        );
        assert_eq!(c.initial_cluster_state, ClusterState::New);
        assert_eq!(c.initial_cluster_token, "etcd-cluster");
        assert_eq!((c.max_txn_ops, c.max_request_bytes), (128, 1_572_864));
        assert!(!c.force_epoll && c.cores >= 1);
        assert_eq!(
            (
                c.log_level.as_str(),
                c.logger.as_str(),
                c.log_format.as_str()
            ),
            ("info", "zap", "json")
        );
        assert_eq!(c.log_outputs, ["default"]);
        assert!(c.not_yet_effective.is_empty());
        assert_eq!(
            c.warnings,
            ["'data-dir' was empty; using default default.kvik"]
        );
        c.check_bootstrap().unwrap();
    }

    #[test]
    fn etcd_test_command_line() {
        let c = ok(&[
            "--name",
            "n1",
            "--data-dir",
            "D",
            "--listen-client-urls",
            "http://127.0.0.1:40001",
            "--advertise-client-urls",
            "http://127.0.0.1:40001",
            "--listen-peer-urls",
            "http://127.0.0.1:40002",
            "--initial-advertise-peer-urls",
            "http://127.0.0.1:40002",
            "--initial-cluster",
            "n1=http://127.0.0.1:40002",
            "--initial-cluster-state",
            "new",
            "--quota-backend-bytes",
            "8589934592",
        ]);
        assert_eq!(c.name, "n1");
        assert_eq!(c.data_dir, PathBuf::from("D"));
        assert_eq!(c.listen_client_urls[0].addr, sa("127.0.0.1:40001"));
        assert_eq!(c.listen_client_urls[0].url, "http://127.0.0.1:40001");
        assert_eq!(c.advertise_client_urls, ["http://127.0.0.1:40001"]);
        assert_eq!(c.listen_peer_urls[0].addr, sa("127.0.0.1:40002"));
        assert_eq!(c.initial_advertise_peer_urls, ["http://127.0.0.1:40002"]);
        assert_eq!(
            c.initial_cluster,
            [("n1".to_string(), vec!["http://127.0.0.1:40002".to_string()])]
        );
        assert_eq!(c.initial_cluster_state, ClusterState::New);
        assert_eq!(c.not_yet_effective, ["--quota-backend-bytes"]);
        assert_eq!(c.flags.int("quota-backend-bytes"), 8_589_934_592);
        assert!(c.warnings.is_empty(), "{:?}", c.warnings);
        c.check_bootstrap().unwrap();
    }

    #[test]
    fn same_settings_from_the_environment() {
        let c = Config::from_args_env(
            Vec::new(),
            env(&[
                ("ETCD_NAME", "n1"),
                ("ETCD_DATA_DIR", "/var/lib/etcd"),
                ("ETCD_LISTEN_CLIENT_URLS", "http://0.0.0.0:2379"),
                ("ETCD_ADVERTISE_CLIENT_URLS", "http://10.0.0.1:2379"),
                ("ETCD_INITIAL_CLUSTER_STATE", "existing"),
                ("ETCD_MAX_TXN_OPS", "1000"),
                ("ETCD_KVIK_CORES", "3"),
                ("ETCD_KVIK_FORCE_EPOLL", "true"),
                ("ETCD_SNAPSHOT_COUNT", "5000"),
                ("ETCDCTL_API", "3"),
                ("ETCD_ROOT_PASSWORD", "secret"),
            ]),
        )
        .unwrap();
        assert_eq!(c.name, "n1");
        assert_eq!(c.data_dir, PathBuf::from("/var/lib/etcd"));
        assert_eq!(c.listen_client_urls[0].addr, sa("0.0.0.0:2379"));
        assert_eq!(c.advertise_client_urls, ["http://10.0.0.1:2379"]);
        assert_eq!(c.initial_cluster_state, ClusterState::Existing);
        assert_eq!(c.max_txn_ops, 1000);
        assert_eq!(c.cores, 3);
        assert!(c.force_epoll);
        assert_eq!(c.not_yet_effective, Vec::<String>::new());
        assert_eq!(
            c.warnings,
            ["unrecognized environment variable ETCD_ROOT_PASSWORD"]
        );
        assert!(!c.warnings.iter().any(|w| w.contains("secret")));
        // `--name n1` alone makes the initial cluster n1=<advertised peer URLs>.
        assert_eq!(
            c.initial_cluster,
            [("n1".to_string(), vec!["http://localhost:2380".to_string()])]
        );
    }

    #[test]
    fn flag_beats_its_variable() {
        let c =
            Config::from_args_env(args(&["--name", "cli"]), env(&[("ETCD_NAME", "env")])).unwrap();
        assert_eq!(c.name, "cli");
        assert!(
            c.warnings.iter().any(|w| w.contains("ETCD_NAME")),
            "{:?}",
            c.warnings
        );
        // A flag and another flag's variable are fine.
        let c = Config::from_args_env(args(&["--name", "cli"]), env(&[("ETCD_DATA_DIR", "x")]))
            .unwrap();
        assert_eq!((c.name.as_str(), c.data_dir.to_str()), ("cli", Some("x")));
    }

    #[test]
    fn help_version_and_usage_errors() {
        assert_eq!(fail(&["--help"]), ConfigError::HelpRequested);
        assert_eq!(fail(&["-h"]).exit_code(), 0);
        assert_eq!(fail(&["--version"]), ConfigError::VersionRequested);
        let e = fail(&["--foo"]);
        assert_eq!(e.to_string(), "flag provided but not defined: -foo");
        assert_eq!((e.exit_code(), e.shows_usage()), (2, true));
        let e = fail(&["--force-new-cluster", "false"]);
        assert_eq!(e.to_string(), "\"false\" is not a valid flag");
        assert_eq!((e.exit_code(), e.shows_usage()), (1, false));
        assert_eq!(
            fail(&["gateway", "start"]),
            ConfigError::UnsupportedCommand("gateway".into())
        );
    }

    #[test]
    fn config_file_is_refused() {
        let e = fail(&["--config-file", "etcd.yml"]);
        assert_eq!(
            e,
            ConfigError::ConfigFile {
                given_by: "--config-file".into(),
                path: "etcd.yml".into()
            }
        );
        assert!(e
            .to_string()
            .starts_with("kvik: --config-file (etcd.yml) is not supported yet"));
        let e =
            Config::from_args_env(Vec::new(), env(&[("ETCD_CONFIG_FILE", "/e.yml")])).unwrap_err();
        assert_eq!(e.exit_code(), 1);
        assert!(e.to_string().contains("ETCD_CONFIG_FILE (/e.yml)"));
    }

    #[test]
    fn listen_without_advertise_is_an_error_like_etcd() {
        let e = fail(&["--listen-client-urls", "http://127.0.0.1:2379"]);
        assert_eq!(e.to_string(), ERR_UNSET_ADVERTISE);
        assert_eq!(e.exit_code(), 1);
        let e = Config::from_args_env(
            Vec::new(),
            env(&[("ETCD_LISTEN_CLIENT_URLS", "http://127.0.0.1:2379")]),
        );
        assert_eq!(e.unwrap_err().to_string(), ERR_UNSET_ADVERTISE);
        // Advertising without listening keeps the default listener.
        let c = ok(&["--advertise-client-urls", "http://127.0.0.1:2379"]);
        assert_eq!(c.listen_client_urls[0].url, "http://localhost:2379");
    }

    #[test]
    fn url_lists_and_addresses() {
        let c = ok(&[
            "--listen-client-urls",
            "http://127.0.0.1:2379,http://[::1]:2379, http://127.0.0.1:2379",
            "--advertise-client-urls",
            "http://b:2379,http://a:2379",
        ]);
        let addrs: Vec<SocketAddr> = c.listen_client_urls.iter().map(|l| l.addr).collect();
        assert_eq!(addrs, [sa("127.0.0.1:2379"), sa("[::1]:2379")]);
        assert_eq!(c.advertise_client_urls, ["http://a:2379", "http://b:2379"]);
        assert_eq!(
            fail_msg(&[
                "--listen-client-urls",
                "http://example.com:2379",
                "--advertise-client-urls",
                "http://a:1"
            ]),
            "expected IP in URL for binding (http://example.com:2379)"
        );
        assert_eq!(
            fail_msg(&["--listen-client-urls", "http://127.0.0.1:2379", "--advertise-client-urls", "http://:2379"]),
            "--advertise-client-urls \"http://:2379\" must be in the format \"host:port\", \"unix:/path/to/socket\" or \"unixs:/path/to/socket\" (unexpected empty host (http://:2379))"
        );
        assert_eq!(
            fail_msg(&["--initial-advertise-peer-urls", "http://:2380"]),
            "--initial-advertise-peer-urls \"http://:2380\" must be \"host:port\" (unexpected empty host (http://:2380))"
        );
        // An empty port means any port, as in etcd.
        let c = ok(&["--listen-peer-urls", "http://127.0.0.1:"]);
        assert_eq!(c.listen_peer_urls[0].addr.port(), 0);
        assert!(
            fail_msg(&["--listen-peer-urls", "http://127.0.0.1:99999"]).contains("invalid port")
        );
    }

    #[test]
    fn refused_flags_each_name_themselves() {
        for (flag, value) in [
            ("cert-file", "c.pem"),
            ("key-file", "k.pem"),
            ("client-cert-auth", "true"),
            ("client-cert-file", "c.pem"),
            ("client-key-file", "k.pem"),
            ("trusted-ca-file", "ca.pem"),
            ("auto-tls", "true"),
            ("peer-cert-file", "c.pem"),
            ("peer-key-file", "k.pem"),
            ("peer-client-cert-auth", "true"),
            ("peer-client-cert-file", "c.pem"),
            ("peer-client-key-file", "k.pem"),
            ("peer-trusted-ca-file", "ca.pem"),
            ("peer-auto-tls", "true"),
            ("client-crl-file", "crl.pem"),
            ("peer-crl-file", "crl.pem"),
            ("cipher-suites", "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256"),
            ("client-cert-allowed-hostname", "a.example"),
            ("peer-cert-allowed-cn", "etcd"),
            ("peer-cert-allowed-hostname", "a.example"),
            (
                "auth-token",
                "jwt,pub-key=app.rsa.pub,priv-key=app.rsa,sign-method=RS512",
            ),
            ("host-whitelist", "a.example"),
            ("discovery-srv", "example.com"),
            ("discovery-srv-name", "x"),
            ("discovery", "https://discovery.etcd.io/x"),
            ("proxy", "on"),
        ] {
            let a = format!("--{flag}={value}");
            let e = fail(&[a.as_str()]);
            assert!(matches!(e, ConfigError::Refused { .. }), "{flag}: {e:?}");
            assert!(
                e.to_string().starts_with(&format!(
                    "kvik: --{flag} is not supported yet: refusing to start without "
                )),
                "{e}"
            );
            assert_eq!(e.exit_code(), 1);
        }
        assert_eq!(
            fail_msg(&["--cert-file", "c.pem"]),
            "kvik: --cert-file is not supported yet: refusing to start without the TLS it asks for"
        );
        // Also from the environment.
        let e =
            Config::from_args_env(Vec::new(), env(&[("ETCD_PEER_AUTO_TLS", "true")])).unwrap_err();
        assert!(e
            .to_string()
            .starts_with("kvik: --peer-auto-tls is not supported yet"));
        // Empty or default values are fine.
        ok(&[
            "--cert-file=",
            "--client-cert-auth=false",
            "--auth-token=simple",
            "--host-whitelist=*",
            "--cipher-suites=",
            "--proxy=off",
            "--discovery-srv=",
        ]);
    }

    #[test]
    fn tls_and_unix_urls_are_refused() {
        let https = "kvik: --listen-client-urls https://127.0.0.1:2379 is not supported yet: refusing to start without the TLS it asks for";
        assert_eq!(
            fail_msg(&[
                "--listen-client-urls",
                "https://127.0.0.1:2379",
                "--advertise-client-urls",
                "https://127.0.0.1:2379"
            ]),
            https
        );
        for flag in [
            "advertise-client-urls",
            "listen-peer-urls",
            "initial-advertise-peer-urls",
            "listen-metrics-urls",
            "listen-client-http-urls",
        ] {
            let a = format!("--{flag}=HTTPS://127.0.0.1:1");
            let e = fail_msg(&[a.as_str()]);
            assert!(
                e.starts_with(&format!(
                    "kvik: --{flag} https://127.0.0.1:1 is not supported yet"
                )),
                "{e}"
            );
        }
        let e = fail_msg(&["--listen-peer-urls=unixs://x:1"]);
        assert!(
            e.starts_with("kvik: --listen-peer-urls unixs://x:1 is not supported yet"),
            "{e}"
        );
        let e = fail_msg(&["--initial-cluster=default=https://127.0.0.1:2380"]);
        assert!(
            e.starts_with(
                "kvik: --initial-cluster default=https://127.0.0.1:2380 is not supported yet"
            ),
            "{e}"
        );
        let e = fail_msg(&["--listen-peer-urls=unix://localhost:1"]);
        assert!(
            e.contains("refusing to start without the unix socket it asks for"),
            "{e}"
        );
    }

    #[test]
    fn not_yet_effective_flags_are_listed() {
        let c = ok(&[
            "--snapshot-count=10000",
            "--heartbeat-interval=100",
            "--election-timeout=1000",
            "--auto-compaction-retention=1",
            "--auto-compaction-mode=revision",
            "--listen-metrics-urls=http://127.0.0.1:2381",
            "--metrics=extensive",
            "--grpc-keepalive-min-time=1s",
            "--experimental-watch-progress-notify-interval=5s",
            "--max-snapshots=3",
            "--max-wals=3",
            "--enable-v2",
            "--enable-pprof",
            "--log-level=debug",
            "--snapshot",
        ]);
        assert_eq!(
            c.not_yet_effective,
            [
                "--auto-compaction-retention",
                "--auto-compaction-mode",
                "--metrics",
                "--grpc-keepalive-min-time",
                "--max-snapshots",
                "--max-wals",
                "--enable-v2",
            ]
        );
        assert!(c.enable_pprof);
        assert_eq!(c.log_level, "debug");
        let w = c.warnings.join("\n");
        assert!(w.contains("--experimental-watch-progress-notify-interval was removed in etcd v3.7; kvik takes it as --watch-progress-notify-interval"), "{w}");
        assert!(w.contains("--max-snapshots is deprecated in 3.6"), "{w}");
        assert!(w.contains("--enable-v2 was removed in etcd v3.6"), "{w}");
        assert!(
            w.contains("--snapshot is no longer supported - ignoring"),
            "{w}"
        );
        assert_eq!(
            c.flags.duration("watch-progress-notify-interval").to_std(),
            Some(std::time::Duration::from_secs(5))
        );
    }

    #[test]
    fn old_and_new_spelling_together_is_an_error() {
        assert_eq!(
            fail_msg(&["--experimental-compaction-batch-limit=5", "--compaction-batch-limit=6"]),
            "cannot set --experimental-compaction-batch-limit and --compaction-batch-limit at the same time, please use --compaction-batch-limit only"
        );
    }

    #[test]
    fn etcd_validation_messages() {
        assert_eq!(
            fail_msg(&["--log-level=loud"]),
            "unrecognized level: \"loud\""
        );
        ok(&["--log-level=WARN"]);
        assert_eq!(
            fail_msg(&["--logger=capnslog"]),
            "--logger=capnslog is removed in v3.5"
        );
        assert_eq!(fail_msg(&["--logger=x"]), "unknown logger option \"x\"");
        assert_eq!(
            fail_msg(&["--log-format=xml"]),
            "unknown log format: xml, supported values json, console"
        );
        assert_eq!(
            fail_msg(&["--log-outputs=default,stderr"]),
            "multi logoutput for \"default\" is not supported yet"
        );
        assert_eq!(
            fail_msg(&["--log-outputs=systemd/journal,stderr"]),
            "running with systemd/journal but other '--log-outputs' values ([\"stderr\" \"systemd/journal\"]) are configured with 'default'; override 'default' value with something else"
        );
        assert_eq!(
            ok(&["--log-outputs=stdout,etcd.log"]).log_outputs,
            ["etcd.log", "stdout"]
        );
        assert_eq!(
            fail_msg(&["--election-timeout=010", "--heartbeat-interval=1_0"]),
            "--election-timeout[8ms] should be at least as 5 times as --heartbeat-interval[10ms]"
        );
        assert_eq!(
            fail_msg(&["--heartbeat-interval=0"]),
            "--heartbeat-interval must be >0 (set to 0ms)"
        );
        assert_eq!(
            fail_msg(&["--election-timeout=60000"]),
            "--election-timeout[60000ms] is too long, and should be set less than 50000ms"
        );
        assert_eq!(
            fail_msg(&["--auto-compaction-mode=foo"]),
            "unknown auto-compaction-mode \"foo\""
        );
        assert_eq!(
            fail_msg(&["--auto-compaction-retention=abc"]),
            "error parsing CompactionRetention: time: invalid duration \"abc\""
        );
        ok(&["--auto-compaction-retention=1h30m"]);
        assert_eq!(
            fail_msg(&["--discovery-fallback=proxy"]),
            "v2 proxy is deprecated, and --discovery-fallback can't be configured as \"proxy\""
        );
        assert_eq!(
            fail_msg(&["--feature-gates=LeaseCheckpointPersist=true"]),
            "enabling feature gate LeaseCheckpointPersist requires enabling feature gate LeaseCheckpoint"
        );
        assert_eq!(
            fail_msg(&["--compact-hash-check-time=0"]),
            "--compact-hash-check-time must be >0 (set to 0s)"
        );
        assert_eq!(
            fail_msg(&["--tls-min-version=TLS1.1"]),
            "unexpected TLS version \"TLS1.1\" (must be one of: TLS1.2, TLS1.3)"
        );
    }

    #[test]
    fn initial_cluster_parsing() {
        assert_eq!(
            parse_initial_cluster(
                "a=http://10.0.0.2:2380,a=http://10.0.0.1:2380,,b= http://10.0.0.3:2380 ,c"
            ),
            [
                (
                    "a".to_string(),
                    vec![
                        "http://10.0.0.1:2380".to_string(),
                        "http://10.0.0.2:2380".to_string()
                    ]
                ),
                ("b".to_string(), vec!["http://10.0.0.3:2380".to_string()]),
                ("c".to_string(), vec![String::new()]),
            ]
        );
        let three = [
            "--name=b",
            "--initial-advertise-peer-urls=http://10.0.0.2:2380",
            "--initial-cluster=a=http://10.0.0.1:2380,b=http://10.0.0.2:2380,c=http://10.0.0.3:2380",
        ];
        let c = ok(&three);
        assert_eq!(c.initial_cluster.len(), 3);
        c.check_bootstrap().unwrap();
    }

    #[test]
    fn bootstrap_checks_read_like_etcd() {
        let check = |a: &[&str]| ok(a).check_bootstrap().unwrap_err().to_string();
        assert_eq!(
            check(&[
                "--name=n1",
                "--initial-cluster=default=http://localhost:2380,x=http://10.0.0.1:2380"
            ]),
            "couldn't find local name \"n1\" in the initial cluster configuration"
        );
        assert_eq!(
            check(&["--initial-cluster=foo"]),
            "error setting up initial cluster: URL scheme must be http, https, unix, or unixs: "
        );
        assert_eq!(
            check(&["--initial-cluster=default=127.0.0.1:2380"]),
            "error setting up initial cluster: parse \"127.0.0.1:2380\": first path segment in URL cannot contain colon"
        );
        assert_eq!(
            check(&["--initial-advertise-peer-urls=http://127.0.0.1:2380", "--initial-cluster=default=http://127.0.0.1:2399"]),
            "--initial-cluster has default=http://127.0.0.1:2399 but missing from --initial-advertise-peer-urls=http://127.0.0.1:2380 (resolved urls: \"http://127.0.0.1:2380\" != \"http://127.0.0.1:2399\")"
        );
        assert_eq!(
            check(&["--initial-advertise-peer-urls=http://127.0.0.1:2380,http://127.0.0.2:2380", "--initial-cluster=default=http://127.0.0.1:2380"]),
            "--initial-advertise-peer-urls has http://127.0.0.2:2380 but missing from --initial-cluster=default=http://127.0.0.1:2380,default=http://127.0.0.2:2380"
        );
        assert_eq!(
            check(&["--initial-cluster=default=http://localhost:2380,b=http://localhost:2380"]),
            "initial cluster b=http://localhost:2380,default=http://localhost:2380 has duplicate url"
        );
        // localhost and 127.0.0.1 match; a host name can only be checked by DNS.
        ok(&["--initial-advertise-peer-urls=http://127.0.0.1:2380"])
            .check_bootstrap()
            .unwrap();
        ok(&[
            "--initial-advertise-peer-urls=http://10.0.0.1:2380",
            "--initial-cluster=default=http://node-0:2380",
        ])
        .check_bootstrap()
        .unwrap();
        // Joining an existing cluster only needs this member listed.
        ok(&[
            "--initial-cluster-state=existing",
            "--initial-cluster=default=http://10.9.9.9:2380",
        ])
        .check_bootstrap()
        .unwrap();
    }
}
