//! etcd-compatible command-line and environment parsing for kvik.
//!
//! kvik takes every flag that etcd 3.7 takes, plus the spellings that etcd
//! 3.4–3.6 took (`--experimental-*`, `--enable-v2`, ...), so any etcd
//! command line, compose file or manifest parses. Parsing follows Go's
//! `flag` package, which etcd uses: `-x` and `--x` are the same, a value
//! follows `=` or comes as the next argument, a boolean takes a value only
//! after `=`, `--` ends the flags, and the first non-flag argument ends them
//! too. `ETCD_<NAME>` environment variables fill the flags that the command
//! line left out, by etcd's `pkg/flags` rules.
//!
//! Every flag has a [`Class`] saying what kvik does with it; `config` turns
//! a parsed [`FlagSet`] into a typed `Config`.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;

/// Prefix of the environment variables that set flags (`ETCD_NAME`, ...).
pub const ENV_PREFIX: &str = "ETCD";
/// The etcd release whose flags and behaviour kvik follows.
pub const ETCD_COMPAT_VERSION: &str = "3.7.2";

/// How a flag's value is parsed (Go's `flag.Value` types used by etcd).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `strconv.ParseBool`; needs no value on the command line.
    Bool,
    /// Any string.
    Str,
    /// Go `int` / `int64`: `strconv.ParseInt(s, 0, 64)`.
    Int,
    /// Go `uint` / `uint64`: `strconv.ParseUint(s, 0, 64)`.
    Uint,
    /// etcd's `uint32` flag: `strconv.ParseUint(s, 0, 32)`, raw errors.
    Uint32,
    /// `time.ParseDuration`.
    Duration,
    /// Comma-separated URLs (http, https, unix, unixs), sorted and
    /// de-duplicated; an empty value leaves the list as it was.
    Urls,
    /// Like [`Kind::Urls`], but `*` is also allowed (`--cors`).
    UrlsOrStar,
    /// Comma-separated strings, kept in order.
    Strings,
    /// Comma-separated strings, sorted and de-duplicated.
    UniqueStrings,
    /// One of the listed values.
    Choice(&'static [&'static str]),
    /// Comma-separated values, each one of the listed values.
    Choices(&'static [&'static str]),
    /// `Name=bool,...` feature gates (merged over repeated settings).
    FeatureGates,
    /// A long-obsolete flag etcd still accepts and ignores; takes any
    /// value after `=`, or none.
    Ignored,
}

/// What kvik does with a flag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// kvik honours it.
    Effective,
    /// Accepted and validated like etcd does, but it has no effect yet.
    NotYetEffective,
    /// kvik refuses to start when it is set to anything but its default or
    /// an empty value, since ignoring it would be unsafe; the text says what
    /// kvik would be starting without ("the TLS it asks for").
    Refused(&'static str),
    /// One of etcd's long-dead flags that etcd accepts and ignores.
    Ignored,
    /// Controls the invocation itself (`--version`, `--config-file`).
    Control,
}

/// One known flag.
#[derive(Clone, Copy, Debug)]
pub struct FlagSpec {
    /// Name without dashes.
    pub name: &'static str,
    /// Value type.
    pub kind: Kind,
    /// Default value, as etcd's help shows it.
    pub default: &'static str,
    /// What kvik does with it.
    pub class: Class,
    /// For an old spelling (`experimental-...`), the current flag it stands for.
    pub alias_of: Option<&'static str>,
    /// etcd version that removed this spelling, when etcd 3.7 no longer takes it.
    pub removed_in: Option<&'static str>,
    /// Deprecation warning etcd prints when the flag is set.
    pub deprecation: Option<&'static str>,
}

impl FlagSpec {
    /// The `ETCD_*` environment variable for this flag.
    pub fn env_key(&self) -> String {
        flag_to_env(self.name)
    }
}

const fn spec(name: &'static str, kind: Kind, default: &'static str, class: Class) -> FlagSpec {
    FlagSpec {
        name,
        kind,
        default,
        class,
        alias_of: None,
        removed_in: None,
        deprecation: None,
    }
}
const fn eff(name: &'static str, kind: Kind, default: &'static str) -> FlagSpec {
    spec(name, kind, default, Class::Effective)
}
const fn nye(name: &'static str, kind: Kind, default: &'static str) -> FlagSpec {
    spec(name, kind, default, Class::NotYetEffective)
}
const fn tls(name: &'static str, kind: Kind) -> FlagSpec {
    let default = match kind {
        Kind::Bool => "false",
        _ => "",
    };
    spec(name, kind, default, Class::Refused(TLS))
}
const fn ignored(name: &'static str) -> FlagSpec {
    spec(name, Kind::Ignored, "", Class::Ignored)
}
/// A flag etcd removed (in `version`), with no current equivalent.
const fn gone(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    version: &'static str,
) -> FlagSpec {
    let mut s = nye(name, kind, default);
    s.removed_in = Some(version);
    s
}
/// An `--experimental-*` spelling etcd 3.6 deprecated and 3.7 removed.
const fn exp(
    name: &'static str,
    kind: Kind,
    default: &'static str,
    target: &'static str,
) -> FlagSpec {
    let mut s = nye(name, kind, default);
    s.alias_of = Some(target);
    s.removed_in = Some("3.7");
    s
}
/// An old spelling of a flag that now takes effect.
const fn now_effective(mut s: FlagSpec) -> FlagSpec {
    s.class = Class::Effective;
    s
}
const fn deprecated(mut s: FlagSpec, msg: &'static str) -> FlagSpec {
    s.deprecation = Some(msg);
    s
}

const TLS: &str = "the TLS it asks for";
const DISCOVERY: &str = "the discovery it asks for";
const CLUSTER_STATES: &[&str] = &["new", "existing"];
const FALLBACKS: &[&str] = &["exit", "proxy"];
const V2_DEPRECATION: &[&str] = &[
    "write-only",
    "write-only-skip-check",
    "write-only-drop-data",
    "gone",
];
const PROXY_MODES: &[&str] = &["off", "readonly", "on"];

/// Every flag kvik knows, in etcd's help order, then the older spellings,
/// then kvik's own.
pub static SPECS: &[FlagSpec] = &[
    // Member.
    eff("name", Kind::Str, "default"),
    eff("data-dir", Kind::Str, ""),
    nye("wal-dir", Kind::Str, ""),
    eff("snapshot-count", Kind::Uint, "10000"),
    eff("heartbeat-interval", Kind::Uint, "100"),
    eff("election-timeout", Kind::Uint, "1000"),
    nye("initial-election-tick-advance", Kind::Bool, "true"),
    eff("listen-peer-urls", Kind::Urls, "http://localhost:2380"),
    eff("listen-client-urls", Kind::Urls, "http://localhost:2379"),
    nye("listen-client-http-urls", Kind::Urls, ""),
    deprecated(
        nye("max-snapshots", Kind::Uint, "5"),
        "--max-snapshots is deprecated in 3.6 and will be decommissioned in 3.8.",
    ),
    nye("max-wals", Kind::Uint, "5"),
    nye("memory-mlock", Kind::Bool, "false"),
    nye("quota-backend-bytes", Kind::Int, "0"),
    nye("backend-bbolt-freelist-type", Kind::Str, "map"),
    nye("backend-batch-interval", Kind::Duration, "0s"),
    nye("backend-batch-limit", Kind::Int, "0"),
    eff("max-txn-ops", Kind::Uint, "128"),
    eff("max-request-bytes", Kind::Uint, "1572864"),
    nye("max-concurrent-streams", Kind::Uint32, "4294967295"),
    nye("grpc-keepalive-min-time", Kind::Duration, "5s"),
    nye("grpc-keepalive-interval", Kind::Duration, "2h"),
    nye("grpc-keepalive-timeout", Kind::Duration, "20s"),
    nye("socket-reuse-port", Kind::Bool, "false"),
    nye("socket-reuse-address", Kind::Bool, "false"),
    nye("enable-grpc-gateway", Kind::Bool, "true"),
    nye("raft-read-timeout", Kind::Duration, "5s"),
    nye("raft-write-timeout", Kind::Duration, "5s"),
    nye("feature-gates", Kind::FeatureGates, ""),
    // Clustering.
    eff("initial-advertise-peer-urls", Kind::Urls, "http://localhost:2380"),
    eff("initial-cluster", Kind::Str, DEFAULT_INITIAL_CLUSTER),
    eff("initial-cluster-state", Kind::Choice(CLUSTER_STATES), "new"),
    eff("initial-cluster-token", Kind::Str, "etcd-cluster"),
    eff("advertise-client-urls", Kind::Urls, "http://localhost:2379"),
    spec("discovery-token", Kind::Str, "", Class::Refused(DISCOVERY)),
    spec("discovery-endpoints", Kind::UniqueStrings, "", Class::Refused(DISCOVERY)),
    nye("discovery-dial-timeout", Kind::Duration, "2s"),
    nye("discovery-request-timeout", Kind::Duration, "5s"),
    nye("discovery-keepalive-time", Kind::Duration, "2s"),
    nye("discovery-keepalive-timeout", Kind::Duration, "6s"),
    nye("discovery-insecure-transport", Kind::Bool, "true"),
    nye("discovery-insecure-skip-tls-verify", Kind::Bool, "false"),
    nye("discovery-cert", Kind::Str, ""),
    nye("discovery-key", Kind::Str, ""),
    nye("discovery-cacert", Kind::Str, ""),
    nye("discovery-user", Kind::Str, ""),
    nye("discovery-password", Kind::Str, ""),
    nye("discovery-fallback", Kind::Choice(FALLBACKS), "exit"),
    spec("discovery-srv", Kind::Str, "", Class::Refused(DISCOVERY)),
    spec("discovery-srv-name", Kind::Str, "", Class::Refused(DISCOVERY)),
    eff("strict-reconfig-check", Kind::Bool, "true"),
    nye("pre-vote", Kind::Bool, "true"),
    nye("auto-compaction-retention", Kind::Str, "0"),
    nye("auto-compaction-mode", Kind::Str, "periodic"),
    deprecated(
        nye("v2-deprecation", Kind::Choices(V2_DEPRECATION), "write-only"),
        "--v2-deprecation is deprecated and scheduled for removal in v3.8. The default value is enforced, ignoring user input.",
    ),
    // Security.
    tls("cert-file", Kind::Str),
    tls("key-file", Kind::Str),
    tls("client-cert-auth", Kind::Bool),
    tls("client-cert-file", Kind::Str),
    tls("client-key-file", Kind::Str),
    tls("client-crl-file", Kind::Str),
    tls("client-cert-allowed-hostname", Kind::Strings),
    tls("trusted-ca-file", Kind::Str),
    tls("auto-tls", Kind::Bool),
    tls("peer-cert-file", Kind::Str),
    tls("peer-key-file", Kind::Str),
    tls("peer-client-cert-auth", Kind::Bool),
    tls("peer-client-cert-file", Kind::Str),
    tls("peer-client-key-file", Kind::Str),
    tls("peer-trusted-ca-file", Kind::Str),
    tls("peer-cert-allowed-cn", Kind::Strings),
    tls("peer-cert-allowed-hostname", Kind::Strings),
    tls("peer-auto-tls", Kind::Bool),
    nye("self-signed-cert-validity", Kind::Uint, "1"),
    tls("peer-crl-file", Kind::Str),
    tls("cipher-suites", Kind::Strings),
    nye("cors", Kind::UrlsOrStar, "*"),
    spec("host-whitelist", Kind::UniqueStrings, "*", Class::Refused("the host name checks it asks for")),
    nye("tls-min-version", Kind::Str, "TLS1.2"),
    nye("tls-max-version", Kind::Str, ""),
    nye("peer-skip-client-san-verification", Kind::Bool, "false"),
    // Auth.
    spec("auth-token", Kind::Str, "simple", Class::Refused("the auth token type it asks for")),
    nye("bcrypt-cost", Kind::Uint, "10"),
    nye("auth-token-ttl", Kind::Uint, "300"),
    // Profiling and monitoring.
    eff("enable-pprof", Kind::Bool, "false"),
    nye("metrics", Kind::Str, "basic"),
    eff("listen-metrics-urls", Kind::Urls, ""),
    // Logging.
    eff("logger", Kind::Str, "zap"),
    eff("log-outputs", Kind::UniqueStrings, "default"),
    eff("log-level", Kind::Str, "info"),
    eff("log-format", Kind::Str, "json"),
    nye("enable-log-rotation", Kind::Bool, "false"),
    nye(
        "log-rotation-config-json",
        Kind::Str,
        r#"{"maxsize": 100, "maxage": 0, "maxbackups": 0, "localtime": false, "compress": false}"#,
    ),
    nye("warning-unary-request-duration", Kind::Duration, "300ms"),
    // Distributed tracing.
    nye("enable-distributed-tracing", Kind::Bool, "false"),
    nye("distributed-tracing-address", Kind::Str, "localhost:4317"),
    nye("distributed-tracing-service-name", Kind::Str, "etcd"),
    nye("distributed-tracing-instance-id", Kind::Str, ""),
    nye("distributed-tracing-sampling-rate", Kind::Int, "0"),
    // Features.
    nye("corrupt-check-time", Kind::Duration, "0s"),
    nye("compact-hash-check-time", Kind::Duration, "1m"),
    nye("compaction-batch-limit", Kind::Int, "1000"),
    nye("compaction-sleep-interval", Kind::Duration, "0s"),
    eff("watch-progress-notify-interval", Kind::Duration, "10m"),
    nye("warning-apply-duration", Kind::Duration, "100ms"),
    nye("bootstrap-defrag-threshold-megabytes", Kind::Uint, "0"),
    nye("max-learners", Kind::Int, "1"),
    nye("downgrade-check-time", Kind::Duration, "5s"),
    eff("snapshot-catchup-entries", Kind::Uint, "5000"),
    // Unsafe.
    nye("force-new-cluster", Kind::Bool, "false"),
    nye("unsafe-no-fsync", Kind::Bool, "false"),
    // The invocation.
    spec("config-file", Kind::Str, "", Class::Control),
    spec("version", Kind::Bool, "false", Class::Control),
    // Flags etcd keeps only to ignore them.
    ignored("cluster-active-size"),
    ignored("cluster-remove-delay"),
    ignored("cluster-sync-interval"),
    ignored("config"),
    ignored("force"),
    ignored("max-result-buffer"),
    ignored("max-retry-attempts"),
    ignored("peer-heartbeat-interval"),
    ignored("peer-election-timeout"),
    ignored("retry-interval"),
    ignored("snapshot"),
    ignored("v"),
    ignored("vv"),
    ignored("test.coverprofile"),
    ignored("test.outputdir"),
    // etcd 3.6 spellings that etcd 3.7 dropped.
    exp("experimental-compact-hash-check-time", Kind::Duration, "1m", "compact-hash-check-time"),
    exp("experimental-corrupt-check-time", Kind::Duration, "0s", "corrupt-check-time"),
    exp("experimental-compaction-batch-limit", Kind::Int, "1000", "compaction-batch-limit"),
    exp("experimental-compaction-sleep-interval", Kind::Duration, "0s", "compaction-sleep-interval"),
    now_effective(exp("experimental-watch-progress-notify-interval", Kind::Duration, "10m", "watch-progress-notify-interval")),
    exp("experimental-warning-apply-duration", Kind::Duration, "100ms", "warning-apply-duration"),
    exp("experimental-warning-unary-request-duration", Kind::Duration, "300ms", "warning-unary-request-duration"),
    exp("experimental-bootstrap-defrag-threshold-megabytes", Kind::Uint, "0", "bootstrap-defrag-threshold-megabytes"),
    exp("experimental-memory-mlock", Kind::Bool, "false", "memory-mlock"),
    now_effective(exp("experimental-snapshot-catchup-entries", Kind::Uint, "5000", "snapshot-catchup-entries")),
    now_effective(exp("experimental-snapshot-catch-up-entries", Kind::Uint, "5000", "snapshot-catchup-entries")),
    exp("experimental-downgrade-check-time", Kind::Duration, "5s", "downgrade-check-time"),
    exp("experimental-peer-skip-client-san-verification", Kind::Bool, "false", "peer-skip-client-san-verification"),
    exp("experimental-enable-distributed-tracing", Kind::Bool, "false", "enable-distributed-tracing"),
    exp("experimental-distributed-tracing-address", Kind::Str, "localhost:4317", "distributed-tracing-address"),
    exp("experimental-distributed-tracing-service-name", Kind::Str, "etcd", "distributed-tracing-service-name"),
    exp("experimental-distributed-tracing-instance-id", Kind::Str, "", "distributed-tracing-instance-id"),
    exp("experimental-distributed-tracing-sampling-rate", Kind::Int, "0", "distributed-tracing-sampling-rate"),
    exp("experimental-backend-bbolt-freelist-type", Kind::Str, "map", "backend-bbolt-freelist-type"),
    // Experimental switches that became feature gates in etcd 3.6.
    gone("experimental-initial-corrupt-check", Kind::Bool, "false", "3.7"),
    gone("experimental-compact-hash-check-enabled", Kind::Bool, "false", "3.7"),
    gone("experimental-enable-lease-checkpoint", Kind::Bool, "false", "3.7"),
    gone("experimental-enable-lease-checkpoint-persist", Kind::Bool, "false", "3.7"),
    gone("experimental-stop-grpc-service-on-defrag", Kind::Bool, "false", "3.7"),
    gone("experimental-txn-mode-write-with-shared-buffer", Kind::Bool, "true", "3.7"),
    // Older flags that etcd 3.6 or 3.7 removed.
    {
        let mut s = spec("discovery", Kind::Str, "", Class::Refused(DISCOVERY));
        s.removed_in = Some("3.7");
        s
    },
    gone("discovery-proxy", Kind::Str, "", "3.7"),
    gone("next-cluster-version-compatible", Kind::Bool, "false", "3.7"),
    gone("enable-v2", Kind::Bool, "false", "3.6"),
    gone("experimental-enable-v2v3", Kind::Str, "", "3.6"),
    {
        let mut s = spec("proxy", Kind::Choice(PROXY_MODES), "off", Class::Refused("the v2 proxy it asks for"));
        s.removed_in = Some("3.6");
        s
    },
    gone("proxy-failure-wait", Kind::Uint, "5000", "3.6"),
    gone("proxy-refresh-interval", Kind::Uint, "30000", "3.6"),
    gone("proxy-dial-timeout", Kind::Uint, "1000", "3.6"),
    gone("proxy-write-timeout", Kind::Uint, "5000", "3.6"),
    gone("proxy-read-timeout", Kind::Uint, "0", "3.6"),
    gone("debug", Kind::Bool, "false", "3.5"),
    gone("log-package-levels", Kind::Str, "", "3.5"),
    gone("log-output", Kind::Str, "default", "3.5"),
    // kvik's own.
    eff("kvik-force-epoll", Kind::Bool, "false"),
    eff("kvik-cores", Kind::Uint, "0"),
    eff("kvik-checkpoint-bytes", Kind::Uint, "67108864"),
];

/// etcd's default `--initial-cluster`.
pub const DEFAULT_INITIAL_CLUSTER: &str = "default=http://localhost:2380";

/// The spec of a flag, by name without dashes.
pub fn lookup(name: &str) -> Option<&'static FlagSpec> {
    index().get(name).map(|&i| &SPECS[i])
}

fn index() -> &'static HashMap<&'static str, usize> {
    static INDEX: std::sync::OnceLock<HashMap<&'static str, usize>> = std::sync::OnceLock::new();
    INDEX.get_or_init(|| SPECS.iter().enumerate().map(|(i, s)| (s.name, i)).collect())
}

/// etcd's `FlagToEnv`: `listen-client-urls` → `ETCD_LISTEN_CLIENT_URLS`.
pub fn flag_to_env(name: &str) -> String {
    format!("{ENV_PREFIX}_{}", name.replace('-', "_").to_uppercase())
}

// ---------------------------------------------------------------------------
// Values.

/// A Go `time.Duration`: signed nanoseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration(pub i64);

impl GoDuration {
    /// As a std duration; `None` when negative.
    pub fn to_std(self) -> Option<std::time::Duration> {
        u64::try_from(self.0)
            .ok()
            .map(std::time::Duration::from_nanos)
    }
}

impl fmt::Display for GoDuration {
    /// Go's `Duration.String()`: `1h2m3.5s`, `1.5ms`, `0s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let neg = self.0 < 0;
        let u = self.0.unsigned_abs();
        let mut out = String::new();
        if u == 0 {
            return f.write_str("0s");
        }
        if u < 1_000_000_000 {
            let (prec, unit) = if u < 1_000 {
                (0, "ns")
            } else if u < 1_000_000 {
                (3, "µs")
            } else {
                (6, "ms")
            };
            out.push_str(&frac(u, prec));
            out.push_str(unit);
        } else {
            let secs = u / 1_000_000_000;
            let sub = u % 1_000_000_000;
            let (h, m, s) = (secs / 3600, (secs / 60) % 60, secs % 60);
            if h > 0 {
                out.push_str(&format!("{h}h"));
            }
            if h > 0 || m > 0 {
                out.push_str(&format!("{m}m"));
            }
            out.push_str(&frac(s * 1_000_000_000 + sub, 9));
            out.push('s');
        }
        if neg {
            f.write_str("-")?;
        }
        f.write_str(&out)
    }
}

/// `v / 10^prec` with the fraction's trailing zeros (and a bare point) left out.
fn frac(v: u64, prec: u32) -> String {
    let p = 10u64.pow(prec);
    let (int, rem) = (v / p, v % p);
    if rem == 0 {
        return int.to_string();
    }
    let digits = format!("{rem:0width$}", width = prec as usize);
    format!("{int}.{}", digits.trim_end_matches('0'))
}

/// A URL as Go's `net/url` parses it (only what etcd looks at).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct GoUrl {
    scheme: String,
    host: String,
    path: String,
    text: String,
}

impl GoUrl {
    /// The URL as Go's `url.URL.String()` writes it (scheme in lower case).
    pub fn as_str(&self) -> &str {
        &self.text
    }
    /// Lower-case scheme.
    pub fn scheme(&self) -> &str {
        &self.scheme
    }
    /// `host:port` part (Go's `URL.Host`); brackets kept for IPv6.
    pub fn host_port(&self) -> &str {
        &self.host
    }
    /// Host without port and brackets (Go's `URL.Hostname()`).
    pub fn hostname(&self) -> &str {
        split_host_port(&self.host)
            .map(|(h, _)| h)
            .unwrap_or(&self.host)
    }
    /// Port text, possibly empty (Go's `URL.Port()`).
    pub fn port(&self) -> &str {
        split_host_port(&self.host).map(|(_, p)| p).unwrap_or("")
    }
}

impl fmt::Display for GoUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

/// A parsed flag value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// [`Kind::Bool`].
    Bool(bool),
    /// [`Kind::Str`] and [`Kind::Choice`].
    Str(String),
    /// [`Kind::Int`].
    Int(i64),
    /// [`Kind::Uint`] and [`Kind::Uint32`].
    Uint(u64),
    /// [`Kind::Duration`].
    Duration(GoDuration),
    /// [`Kind::Urls`]: sorted by text, without duplicates.
    Urls(Vec<GoUrl>),
    /// [`Kind::Strings`], [`Kind::UniqueStrings`], [`Kind::Choices`],
    /// [`Kind::UrlsOrStar`].
    List(Vec<String>),
    /// [`Kind::FeatureGates`].
    Gates(BTreeMap<String, bool>),
    /// [`Kind::Ignored`].
    Ignored,
}

impl Value {
    /// True for the values that say "nothing": false, "", an empty list
    /// (or one of empty strings), no gates.
    pub fn is_empty(&self) -> bool {
        match self {
            Value::Bool(b) => !b,
            Value::Str(s) => s.is_empty(),
            Value::Int(_) | Value::Uint(_) | Value::Duration(_) => false,
            Value::Urls(u) => u.is_empty(),
            Value::List(l) => l.iter().all(|s| s.is_empty()),
            Value::Gates(g) => g.is_empty(),
            Value::Ignored => true,
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Bool(b) => write!(f, "{b}"),
            Value::Str(s) => f.write_str(s),
            Value::Int(i) => write!(f, "{i}"),
            Value::Uint(u) => write!(f, "{u}"),
            Value::Duration(d) => write!(f, "{d}"),
            Value::Urls(u) => {
                let v: Vec<&str> = u.iter().map(GoUrl::as_str).collect();
                f.write_str(&v.join(","))
            }
            Value::List(l) => f.write_str(&l.join(",")),
            Value::Gates(g) => {
                let v: Vec<String> = g.iter().map(|(k, v)| format!("{k}={v}")).collect();
                f.write_str(&v.join(","))
            }
            Value::Ignored => Ok(()),
        }
    }
}

/// etcd 3.7's server feature gates: name, default, alpha (else beta).
pub const FEATURE_GATES: &[(&str, bool, bool)] = &[
    ("CompactHashCheck", false, true),
    ("FastLeaseKeepAlive", true, false),
    ("InitialCorruptCheck", false, true),
    ("LeaseCheckpoint", false, true),
    ("LeaseCheckpointPersist", false, true),
    ("PriorityRequest", false, true),
    ("SetMemberLocalAddr", false, true),
    ("StopGRPCServiceOnDefrag", false, true),
    ("TxnModeWriteWithSharedBuffer", true, false),
];

/// Whether a feature gate is on, given the `--feature-gates` settings.
pub fn gate_enabled(gates: &BTreeMap<String, bool>, name: &str) -> bool {
    if let Some(&v) = gates.get(name) {
        return v;
    }
    let Some(&(_, default, alpha)) = FEATURE_GATES.iter().find(|g| g.0 == name) else {
        return false;
    };
    let all = if alpha { "AllAlpha" } else { "AllBeta" };
    gates.get(all).copied().unwrap_or(default)
}

/// Parses `raw` as a value of `kind`, over `current` (URL lists ignore an
/// empty value; feature gates and `Choices` add to what is there). The error
/// is the text Go's flag package puts after `for flag -name: `.
fn parse_value(kind: Kind, raw: &str, current: Option<&Value>) -> Result<Value, String> {
    const PARSE: &str = "parse error";
    Ok(match kind {
        Kind::Bool => Value::Bool(parse_go_bool(raw).ok_or(PARSE)?),
        Kind::Str => Value::Str(raw.to_string()),
        Kind::Int => Value::Int(parse_go_int(raw, 64).map_err(NumError::flag_text)?),
        Kind::Uint => Value::Uint(parse_go_uint(raw, 64).map_err(NumError::flag_text)?),
        Kind::Uint32 => {
            Value::Uint(parse_go_uint(raw, 32).map_err(|e| e.strconv_text("ParseUint", raw))?)
        }
        Kind::Duration => Value::Duration(parse_go_duration(raw).map_err(|_| PARSE)?),
        Kind::Urls => {
            if raw.is_empty() {
                return Ok(current.cloned().unwrap_or(Value::Urls(Vec::new())));
            }
            Value::Urls(parse_url_list(raw)?)
        }
        Kind::UrlsOrStar => {
            if raw == "*" {
                return Ok(Value::List(vec!["*".to_string()]));
            }
            if raw.is_empty() {
                return Ok(current.cloned().unwrap_or(Value::List(Vec::new())));
            }
            Value::List(
                parse_url_list(raw)?
                    .iter()
                    .map(|u| u.text.clone())
                    .collect(),
            )
        }
        Kind::Strings => Value::List(raw.split(',').map(str::to_string).collect()),
        Kind::UniqueStrings => {
            let mut v: Vec<String> = raw.split(',').map(str::to_string).collect();
            v.sort();
            v.dedup();
            Value::List(v)
        }
        Kind::Choice(valid) => {
            if !valid.contains(&raw) {
                return Err("invalid value".to_string());
            }
            Value::Str(raw.to_string())
        }
        Kind::Choices(valid) => {
            let mut v = match current {
                Some(Value::List(l)) => l.clone(),
                _ => Vec::new(),
            };
            for part in raw.split(',') {
                if !valid.contains(&part) {
                    return Err(format!("invalid value {part:?}"));
                }
                v.push(part.to_string());
            }
            v.sort();
            Value::List(v)
        }
        Kind::FeatureGates => {
            let mut gates = match current {
                Some(Value::Gates(g)) => g.clone(),
                _ => BTreeMap::new(),
            };
            let mut new = BTreeMap::new();
            for part in raw.split(',') {
                if part.is_empty() {
                    continue;
                }
                let (k, v) = match part.split_once('=') {
                    Some((k, v)) => (k.trim(), v.trim()),
                    None => return Err(format!("missing bool value for {}", part.trim())),
                };
                let b = parse_go_bool(v).ok_or_else(|| {
                    format!("invalid value of {k}={v}, err: strconv.ParseBool: parsing {v:?}: invalid syntax")
                })?;
                new.insert(k.to_string(), b);
            }
            for (k, v) in new {
                let known =
                    k == "AllAlpha" || k == "AllBeta" || FEATURE_GATES.iter().any(|g| g.0 == k);
                if !known {
                    return Err(format!("unrecognized feature gate: {k}"));
                }
                gates.insert(k, v);
            }
            Value::Gates(gates)
        }
        Kind::Ignored => Value::Ignored,
    })
}

/// etcd's `types.NewURLs` over a comma-separated list, then sorted and
/// de-duplicated like `flags.UniqueURLs`.
fn parse_url_list(raw: &str) -> Result<Vec<GoUrl>, String> {
    let mut urls = Vec::new();
    for part in raw.split(',') {
        urls.push(parse_etcd_url(part)?);
    }
    urls.sort_by(|a, b| a.text.cmp(&b.text));
    urls.dedup_by(|a, b| a.text == b.text);
    Ok(urls)
}

/// One URL as etcd's `types.NewURLs` takes it: trimmed, parsed by Go's
/// rules, scheme http/https/unix/unixs, `host:port` and no path for http(s).
pub fn parse_etcd_url(part: &str) -> Result<GoUrl, String> {
    let input = part.trim();
    let u = parse_go_url(input)?;
    match u.scheme.as_str() {
        "http" | "https" => {
            if split_host_port(&u.host).is_none() {
                return Err(format!(
                    "URL address does not have the form \"host:port\": {input}"
                ));
            }
            if !u.path.is_empty() {
                return Err(format!("URL must not contain a path: {input}"));
            }
        }
        "unix" | "unixs" => {}
        _ => {
            return Err(format!(
                "URL scheme must be http, https, unix, or unixs: {input}"
            ))
        }
    }
    Ok(u)
}

/// Go's `url.Parse`, reduced to what etcd's checks need; errors read like Go's.
fn parse_go_url(raw: &str) -> Result<GoUrl, String> {
    let fail = |m: &str| Err(format!("parse {raw:?}: {m}"));
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return fail("net/url: invalid control character in URL");
    }
    let (before_frag, frag) = match raw.split_once('#') {
        Some((a, b)) => (a, Some(b)),
        None => (raw, None),
    };
    // Scheme: letters, then letters/digits/+-. up to ':'.
    let mut scheme = "";
    let mut rest = before_frag;
    for (i, c) in before_frag.char_indices() {
        if c.is_ascii_alphabetic() {
            continue;
        }
        if c.is_ascii_digit() || c == '+' || c == '-' || c == '.' {
            if i == 0 {
                break;
            }
            continue;
        }
        if c == ':' {
            if i == 0 {
                return fail("missing protocol scheme");
            }
            scheme = &before_frag[..i];
            rest = &before_frag[i + 1..];
        }
        break;
    }
    let scheme = scheme.to_ascii_lowercase();
    let (rest, query) = match rest.split_once('?') {
        Some((a, b)) => (a, Some(b)),
        None => (rest, None),
    };
    let tail = |path: &str| {
        let mut t = path.to_string();
        if let Some(q) = query {
            t.push('?');
            t.push_str(q);
        }
        if let Some(f) = frag {
            t.push('#');
            t.push_str(f);
        }
        t
    };
    if !rest.starts_with('/') {
        if !scheme.is_empty() {
            // Opaque, like "unix:name".
            let text = format!("{scheme}:{}", tail(rest));
            return Ok(GoUrl {
                scheme,
                host: String::new(),
                path: String::new(),
                text,
            });
        }
        let first = rest.split('/').next().unwrap_or("");
        if first.contains(':') {
            return fail("first path segment in URL cannot contain colon");
        }
    }
    if rest.starts_with("//") && (!scheme.is_empty() || !rest.starts_with("///")) {
        let after = &rest[2..];
        let (authority, path) = match after.find('/') {
            Some(i) => (&after[..i], &after[i..]),
            None => (after, ""),
        };
        let host = match authority.rfind('@') {
            Some(i) => &authority[i + 1..],
            None => authority,
        };
        if let Some(stripped) = host.strip_prefix('[') {
            let Some(close) = stripped.rfind(']') else {
                return fail("missing ']' in host");
            };
            let colon_port = &stripped[close + 1..];
            if !valid_optional_port(colon_port) {
                return fail(&format!("invalid port {colon_port:?} after host"));
            }
        } else if let Some(i) = host.rfind(':') {
            let colon_port = &host[i..];
            if !valid_optional_port(colon_port) {
                return fail(&format!("invalid port {colon_port:?} after host"));
            }
        }
        let text = format!("{scheme}://{authority}{}", tail(path));
        return Ok(GoUrl {
            scheme,
            host: host.to_string(),
            path: path.to_string(),
            text,
        });
    }
    let text = if scheme.is_empty() {
        tail(rest)
    } else {
        format!("{scheme}:{}", tail(rest))
    };
    Ok(GoUrl {
        scheme,
        host: String::new(),
        path: rest.to_string(),
        text,
    })
}

fn valid_optional_port(p: &str) -> bool {
    p.is_empty() || (p.starts_with(':') && p[1..].bytes().all(|b| b.is_ascii_digit()))
}

/// Go's `net.SplitHostPort`, `None` where Go returns an error.
pub fn split_host_port(hp: &str) -> Option<(&str, &str)> {
    let i = hp.rfind(':')?;
    let (host, j, k) = if hp.starts_with('[') {
        let end = hp.find(']')?;
        if end + 1 != i {
            return None;
        }
        (&hp[1..end], 1, end + 1)
    } else {
        let host = &hp[..i];
        if host.contains(':') {
            return None;
        }
        (host, 0, 0)
    };
    if hp[j..].contains('[') || hp[k..].contains(']') {
        return None;
    }
    Some((host, &hp[i + 1..]))
}

/// Go's `strconv.ParseBool`.
pub fn parse_go_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

/// A `strconv` number error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NumError {
    /// `invalid syntax`
    Syntax,
    /// `value out of range`
    Range,
}

impl NumError {
    /// The text Go's flag package shows.
    fn flag_text(self) -> String {
        match self {
            NumError::Syntax => "parse error".to_string(),
            NumError::Range => "value out of range".to_string(),
        }
    }
    /// The raw `strconv` text.
    fn strconv_text(self, func: &str, s: &str) -> String {
        let what = match self {
            NumError::Syntax => "invalid syntax",
            NumError::Range => "value out of range",
        };
        format!("strconv.{func}: parsing {s:?}: {what}")
    }
}

/// Go's `strconv.ParseUint(s, 0, bits)`: `0x`, `0o`, `0b` and leading-`0`
/// octal prefixes, `_` separators between digits.
pub fn parse_go_uint(s: &str, bits: u32) -> Result<u64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let b = s.as_bytes();
    let (base, digits): (u64, &[u8]) = if b[0] == b'0' {
        match b.get(1).map(u8::to_ascii_lowercase) {
            Some(b'b') if b.len() >= 3 => (2, &b[2..]),
            Some(b'o') if b.len() >= 3 => (8, &b[2..]),
            Some(b'x') if b.len() >= 3 => (16, &b[2..]),
            _ => (8, &b[1..]),
        }
    } else {
        (10, b)
    };
    let max: u64 = if bits >= 64 {
        u64::MAX
    } else {
        (1u64 << bits) - 1
    };
    let mut n: u64 = 0;
    let mut underscores = false;
    let mut range = false;
    for &c in digits {
        let d = match c {
            b'_' => {
                underscores = true;
                continue;
            }
            b'0'..=b'9' => u64::from(c - b'0'),
            b'a'..=b'z' => u64::from(c - b'a') + 10,
            b'A'..=b'Z' => u64::from(c - b'A') + 10,
            _ => return Err(NumError::Syntax),
        };
        if d >= base {
            return Err(NumError::Syntax);
        }
        if range {
            continue;
        }
        match n.checked_mul(base).and_then(|m| m.checked_add(d)) {
            Some(v) if v <= max => n = v,
            _ => range = true,
        }
    }
    if underscores && !underscore_ok(s) {
        return Err(NumError::Syntax);
    }
    if range {
        return Err(NumError::Range);
    }
    Ok(n)
}

/// Go's `strconv.ParseInt(s, 0, bits)`.
pub fn parse_go_int(s: &str, bits: u32) -> Result<i64, NumError> {
    if s.is_empty() {
        return Err(NumError::Syntax);
    }
    let (neg, body) = match s.as_bytes()[0] {
        b'+' => (false, &s[1..]),
        b'-' => (true, &s[1..]),
        _ => (false, s),
    };
    let un = parse_go_uint(body, 64)?;
    let cutoff = 1u64 << (bits - 1);
    if (!neg && un >= cutoff) || (neg && un > cutoff) {
        return Err(NumError::Range);
    }
    Ok(if neg {
        (un as i64).wrapping_neg()
    } else {
        un as i64
    })
}

/// Go's `underscoreOK`: `_` only between digits or after a base prefix.
fn underscore_ok(s: &str) -> bool {
    let b = s.as_bytes();
    let b = match b.first() {
        Some(b'+') | Some(b'-') => &b[1..],
        _ => b,
    };
    let mut saw = b'^';
    let mut i = 0;
    let mut hex = false;
    if b.len() >= 2 && b[0] == b'0' && matches!(b[1].to_ascii_lowercase(), b'b' | b'o' | b'x') {
        i = 2;
        saw = b'0';
        hex = b[1].eq_ignore_ascii_case(&b'x');
    }
    while i < b.len() {
        let c = b[i];
        i += 1;
        if c.is_ascii_digit() || hex && c.is_ascii_hexdigit() {
            saw = b'0';
            continue;
        }
        if c == b'_' {
            if saw != b'0' {
                return false;
            }
            saw = b'_';
            continue;
        }
        if saw == b'_' {
            return false;
        }
        saw = b'!';
    }
    saw != b'_'
}

/// Go's `time.ParseDuration`, with Go's error texts.
pub fn parse_go_duration(orig: &str) -> Result<GoDuration, String> {
    let invalid = || format!("time: invalid duration {orig:?}");
    let mut s = orig;
    let mut neg = false;
    if let Some(c) = s.chars().next() {
        if c == '-' || c == '+' {
            neg = c == '-';
            s = &s[1..];
        }
    }
    if s == "0" {
        return Ok(GoDuration(0));
    }
    if s.is_empty() {
        return Err(invalid());
    }
    const LIMIT: u64 = 1 << 63;
    let mut d: u64 = 0;
    while !s.is_empty() {
        let b = s.as_bytes();
        if !(b[0] == b'.' || b[0].is_ascii_digit()) {
            return Err(invalid());
        }
        // Integer part.
        let mut i = 0;
        let mut v: u64 = 0;
        while i < b.len() && b[i].is_ascii_digit() {
            v = v
                .checked_mul(10)
                .and_then(|x| x.checked_add(u64::from(b[i] - b'0')))
                .filter(|&x| x <= LIMIT)
                .ok_or_else(invalid)?;
            i += 1;
        }
        let pre = i > 0;
        // Fraction.
        let mut f: u64 = 0;
        let mut scale: f64 = 1.0;
        let mut post = false;
        if i < b.len() && b[i] == b'.' {
            i += 1;
            let start = i;
            let mut overflow = false;
            while i < b.len() && b[i].is_ascii_digit() {
                if !overflow {
                    match f
                        .checked_mul(10)
                        .and_then(|x| x.checked_add(u64::from(b[i] - b'0')))
                    {
                        Some(x) if x < LIMIT => {
                            f = x;
                            scale *= 10.0;
                        }
                        _ => overflow = true,
                    }
                }
                i += 1;
            }
            post = i > start;
        }
        if !pre && !post {
            return Err(invalid());
        }
        // Unit.
        let ustart = i;
        while i < b.len() && b[i] != b'.' && !b[i].is_ascii_digit() {
            i += 1;
        }
        if i == ustart {
            return Err(format!("time: missing unit in duration {orig:?}"));
        }
        let u = &s[ustart..i];
        let unit: u64 = match u {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            _ => return Err(format!("time: unknown unit {u:?} in duration {orig:?}")),
        };
        s = &s[i..];
        if v > LIMIT / unit {
            return Err(invalid());
        }
        v *= unit;
        if f > 0 {
            v += (f as f64 * (unit as f64 / scale)) as u64;
            if v > LIMIT {
                return Err(invalid());
            }
        }
        d = d
            .checked_add(v)
            .filter(|&x| x <= LIMIT)
            .ok_or_else(invalid)?;
    }
    if neg {
        return Ok(GoDuration((d as i64).wrapping_neg()));
    }
    if d > LIMIT - 1 {
        return Err(invalid());
    }
    Ok(GoDuration(d as i64))
}

// ---------------------------------------------------------------------------
// Errors.

/// A command line or environment etcd would reject while parsing flags.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FlagError {
    /// `flag provided but not defined: -foo`
    Undefined(String),
    /// `bad flag syntax: ---x`
    BadSyntax(String),
    /// `flag needs an argument: -name`
    NeedsArgument(String),
    /// `invalid boolean value "x" for -flag: parse error`
    InvalidBool { flag: String, value: String },
    /// `invalid value "x" for flag -flag: reason`
    InvalidValue {
        flag: String,
        value: String,
        reason: String,
    },
    /// `"x" is not a valid flag` (an argument left over after the flags).
    NotAFlag(String),
    /// `invalid value "x" for ETCD_FLAG: reason`
    InvalidEnv {
        key: String,
        value: String,
        reason: String,
    },
    /// A variable set for a flag also given on the command line (etcd exits).
    EnvShadowed(String),
}

impl FlagError {
    /// The exit status etcd uses: 2 for command-line syntax errors (those
    /// print the usage), 1 for the rest.
    pub fn exit_code(&self) -> i32 {
        if self.shows_usage() {
            2
        } else {
            1
        }
    }

    /// Whether etcd prints its usage text after this error.
    pub fn shows_usage(&self) -> bool {
        matches!(
            self,
            FlagError::Undefined(_)
                | FlagError::BadSyntax(_)
                | FlagError::NeedsArgument(_)
                | FlagError::InvalidBool { .. }
                | FlagError::InvalidValue { .. }
        )
    }
}

impl fmt::Display for FlagError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FlagError::Undefined(n) => write!(f, "flag provided but not defined: -{n}"),
            FlagError::BadSyntax(a) => write!(f, "bad flag syntax: {a}"),
            FlagError::NeedsArgument(n) => write!(f, "flag needs an argument: -{n}"),
            FlagError::InvalidBool { flag, value } => {
                write!(f, "invalid boolean value {value:?} for -{flag}: parse error")
            }
            FlagError::InvalidValue { flag, value, reason } => {
                write!(f, "invalid value {value:?} for flag -{flag}: {reason}")
            }
            FlagError::NotAFlag(a) => write!(f, "{a:?} is not a valid flag"),
            FlagError::InvalidEnv { key, value, reason } => write!(f, "invalid value {value:?} for {key}: {reason}"),
            FlagError::EnvShadowed(k) => write!(
                f,
                "conflicting environment variable {k} is shadowed by corresponding command-line flag \
                 (either unset environment variable or disable flag)"
            ),
        }
    }
}

impl std::error::Error for FlagError {}

// ---------------------------------------------------------------------------
// The flag set.

/// Where a flag's value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Source {
    /// The command line.
    CommandLine,
    /// This environment variable.
    Env(String),
}

/// What the command line asks for.
#[derive(Clone, Debug)]
pub enum Parsed {
    /// Run with these flags (the environment is not applied yet).
    Run(FlagSet),
    /// `-h`, `--help`.
    Help,
    /// `--version`.
    Version,
}

/// Flag values: every known flag, at its default until set.
#[derive(Clone, Debug)]
pub struct FlagSet {
    values: Vec<Value>,
    sources: Vec<Option<Source>>,
    set_order: Vec<usize>,
    env_used: Vec<(String, String)>,
    warnings: Vec<String>,
}

impl Default for FlagSet {
    fn default() -> Self {
        Self::new()
    }
}

impl FlagSet {
    /// All flags at their defaults.
    pub fn new() -> Self {
        let values = SPECS
            .iter()
            .map(|s| {
                parse_value(s.kind, s.default, None).unwrap_or(Value::Str(s.default.to_string()))
            })
            .collect();
        FlagSet {
            values,
            sources: vec![None; SPECS.len()],
            set_order: Vec::new(),
            env_used: Vec::new(),
            warnings: Vec::new(),
        }
    }

    /// Parses the arguments (without the program name) like Go's
    /// `FlagSet.Parse`, then rejects leftover arguments and answers
    /// `--version`, in etcd's order.
    pub fn parse_args<I, S>(args: I) -> Result<Parsed, FlagError>
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let args: Vec<String> = args.into_iter().map(Into::into).collect();
        let mut fs = FlagSet::new();
        let mut i = 0;
        while i < args.len() {
            let s = &args[i];
            if s.len() < 2 || !s.starts_with('-') {
                break;
            }
            let mut minuses = 1;
            if s.as_bytes()[1] == b'-' {
                minuses = 2;
                if s.len() == 2 {
                    i += 1;
                    break;
                }
            }
            let body = &s[minuses..];
            if body.is_empty() || body.starts_with('-') || body.starts_with('=') {
                return Err(FlagError::BadSyntax(s.clone()));
            }
            i += 1;
            let (name, value) = match body.find('=') {
                Some(eq) => (&body[..eq], Some(&body[eq + 1..])),
                None => (body, None),
            };
            let Some(&idx) = index().get(name) else {
                if name == "help" || name == "h" {
                    return Ok(Parsed::Help);
                }
                return Err(FlagError::Undefined(name.to_string()));
            };
            let spec = &SPECS[idx];
            match spec.kind {
                Kind::Bool | Kind::Ignored => {
                    let v = value.unwrap_or("true");
                    fs.set(idx, v, Source::CommandLine)
                        .map_err(|_| FlagError::InvalidBool {
                            flag: name.to_string(),
                            value: v.to_string(),
                        })?;
                }
                _ => {
                    let v = match value {
                        Some(v) => v.to_string(),
                        None if i < args.len() => {
                            i += 1;
                            args[i - 1].clone()
                        }
                        None => return Err(FlagError::NeedsArgument(name.to_string())),
                    };
                    fs.set(idx, &v, Source::CommandLine).map_err(|reason| {
                        FlagError::InvalidValue {
                            flag: name.to_string(),
                            value: v.clone(),
                            reason,
                        }
                    })?;
                }
            }
        }
        if let Some(extra) = args.get(i) {
            return Err(FlagError::NotAFlag(extra.clone()));
        }
        if fs.get("version") == &Value::Bool(true) {
            return Ok(Parsed::Version);
        }
        Ok(Parsed::Run(fs))
    }

    fn set(&mut self, idx: usize, raw: &str, source: Source) -> Result<(), String> {
        let spec = &SPECS[idx];
        // URL lists keep their value on "", gates merge over what is there;
        // `Choices` start from nothing, not from the default.
        let current = match spec.kind {
            Kind::Choices(_) if self.sources[idx].is_none() => None,
            _ => Some(&self.values[idx]),
        };
        let v = parse_value(spec.kind, raw, current)?;
        self.values[idx] = v;
        if self.sources[idx].is_none() {
            self.set_order.push(idx);
        }
        self.sources[idx] = Some(source);
        Ok(())
    }

    /// etcd's `SetFlagsFromEnv` and `verifyEnv`: each flag not given on the
    /// command line takes a non-empty `ETCD_<NAME>` variable (the first, if
    /// repeated). A variable for a flag the command line gave is an error,
    /// as in etcd; other `ETCD_*` variables it did not use are warnings (by
    /// name only: values may be secrets). A non-empty `ETCD_VERSION` is
    /// dropped with a warning. `ETCDCTL_*` and other names without the
    /// `ETCD_` prefix are not looked at.
    pub fn apply_env<I>(&mut self, env: I) -> Result<(), FlagError>
    where
        I: IntoIterator<Item = (String, String)>,
    {
        let mut env: Vec<(String, String)> = env.into_iter().collect();
        if let Some(pos) = env.iter().position(|(k, _)| k == "ETCD_VERSION") {
            if !env[pos].1.is_empty() {
                self.warnings.push(format!(
                    "cannot set special environment variable ETCD_VERSION (value {:?} ignored)",
                    env[pos].1
                ));
                env.retain(|(k, _)| k != "ETCD_VERSION");
            }
        }
        let mut first: HashMap<&str, &str> = HashMap::new();
        for (k, v) in &env {
            first.entry(k.as_str()).or_insert(v.as_str());
        }
        let mut on_command_line: HashSet<String> = HashSet::new();
        for (i, src) in self.sources.iter().enumerate() {
            if src.is_some() {
                on_command_line.insert(SPECS[i].env_key());
            }
        }
        let mut order: Vec<usize> = (0..SPECS.len()).collect();
        order.sort_by_key(|&i| SPECS[i].name);
        let mut used: HashSet<String> = HashSet::new();
        let mut err = None;
        for i in order {
            let key = SPECS[i].env_key();
            if on_command_line.contains(&key) {
                continue;
            }
            let Some(&val) = first.get(key.as_str()) else {
                continue;
            };
            if val.is_empty() {
                continue;
            }
            used.insert(key.clone());
            match self.set(i, val, Source::Env(key.clone())) {
                Ok(()) => self.env_used.push((key, val.to_string())),
                Err(reason) => {
                    err = Some(FlagError::InvalidEnv {
                        key,
                        value: val.to_string(),
                        reason,
                    })
                }
            }
        }
        for (k, _) in &env {
            if used.contains(k) {
                continue;
            }
            if on_command_line.contains(k) {
                // etcd 3.7 refuses to start here; kvik lets the flag win and
                // says so, which breaks no command line that etcd accepts.
                self.warnings.push(format!(
                    "environment variable {k} is shadowed by its command-line flag; using the flag"
                ));
                continue;
            }
            if k.starts_with("ETCD_") {
                self.warnings
                    .push(format!("unrecognized environment variable {k}"));
            }
        }
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    /// The value of a flag (by name without dashes). For a current name,
    /// an old spelling that was set counts when the name itself was not.
    /// Unknown names give [`Value::Ignored`].
    pub fn get(&self, name: &str) -> &Value {
        let Some(&idx) = index().get(name) else {
            return &Value::Ignored;
        };
        if self.sources[idx].is_none() {
            for &j in &self.set_order {
                if SPECS[j].alias_of == Some(name) {
                    return &self.values[j];
                }
            }
        }
        &self.values[idx]
    }

    /// Whether the flag itself (not an old spelling of it) was set, on the
    /// command line or from the environment (Go's `FlagSet.Visit`).
    pub fn is_set(&self, name: &str) -> bool {
        self.source(name).is_some()
    }

    /// Where the flag's value came from, when it was set.
    pub fn source(&self, name: &str) -> Option<&Source> {
        index().get(name).and_then(|&i| self.sources[i].as_ref())
    }

    /// The flags that were set, in the order they were first set.
    pub fn explicitly_set(
        &self,
    ) -> impl Iterator<Item = (&'static FlagSpec, &Value, &Source)> + '_ {
        self.set_order
            .iter()
            .filter_map(move |&i| Some((&SPECS[i], &self.values[i], self.sources[i].as_ref()?)))
    }

    /// `ETCD_*` variables used, with their values, in flag-name order.
    pub fn env_used(&self) -> &[(String, String)] {
        &self.env_used
    }

    /// Warnings gathered while reading the environment.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// A string-valued flag (empty for other types).
    pub fn string(&self, name: &str) -> &str {
        match self.get(name) {
            Value::Str(s) => s,
            _ => "",
        }
    }

    /// A boolean flag (false for other types).
    pub fn boolean(&self, name: &str) -> bool {
        matches!(self.get(name), Value::Bool(true))
    }

    /// An unsigned flag (0 for other types).
    pub fn uint(&self, name: &str) -> u64 {
        match self.get(name) {
            Value::Uint(u) => *u,
            _ => 0,
        }
    }

    /// A signed flag (0 for other types).
    pub fn int(&self, name: &str) -> i64 {
        match self.get(name) {
            Value::Int(i) => *i,
            _ => 0,
        }
    }

    /// A duration flag (0 for other types).
    pub fn duration(&self, name: &str) -> GoDuration {
        match self.get(name) {
            Value::Duration(d) => *d,
            _ => GoDuration(0),
        }
    }

    /// A URL-list flag (empty for other types).
    pub fn urls(&self, name: &str) -> &[GoUrl] {
        match self.get(name) {
            Value::Urls(u) => u,
            _ => &[],
        }
    }

    /// A list flag (empty for other types).
    pub fn list(&self, name: &str) -> &[String] {
        match self.get(name) {
            Value::List(l) => l,
            _ => &[],
        }
    }
}

// ---------------------------------------------------------------------------
// Help and version.

/// The short usage etcd prints after a command-line error.
pub fn usage() -> &'static str {
    "Usage:\n\n  kvik [flags]\n    Start a kvik server (etcd v3 API).\n\n  kvik --version\n    Show the version of kvik.\n\n  kvik -h | --help\n    Show the help information about kvik.\n"
}

/// The `--version` text.
pub fn version_text() -> String {
    format!(
        "kvik Version: {}\netcd API compatible: {ETCD_COMPAT_VERSION}\n",
        env!("CARGO_PKG_VERSION")
    )
}

/// The `--help` text: the usage, then every flag with its default, grouped
/// by what kvik does with it.
pub fn help_text() -> String {
    let mut out = String::from(usage());
    out.push_str(&format!(
        "\nkvik takes etcd {ETCD_COMPAT_VERSION}'s flags. Each can also be set by an environment variable\n\
         named ETCD_ and the flag in upper case with '_' for '-' (ETCD_LISTEN_CLIENT_URLS);\n\
         a flag given on the command line must not also be set that way.\n"
    ));
    let group = |c: &Class| match c {
        Class::Effective => Some(0),
        Class::NotYetEffective => Some(1),
        Class::Refused(_) => Some(2),
        Class::Ignored => Some(3),
        Class::Control => None,
    };
    let titles = [
        "Effective",
        "Accepted, not yet effective",
        "Refused unless left empty or at the default (not supported yet)",
        "Ignored, as by etcd",
    ];
    for (i, title) in titles.iter().enumerate() {
        out.push_str(&format!("\n{title}:\n"));
        for s in SPECS.iter().filter(|s| group(&s.class) == Some(i)) {
            let default = match s.name {
                "data-dir" => "${name}.kvik",
                "kvik-cores" => "available parallelism",
                _ => s.default,
            };
            out.push_str(&format!("  --{} '{}'", s.name, default));
            if let Some(t) = s.alias_of {
                out.push_str(&format!(" (old spelling of --{t})"));
            } else if let Some(v) = s.removed_in {
                out.push_str(&format!(" (removed in etcd {v})"));
            }
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(args: &[&str]) -> FlagSet {
        match FlagSet::parse_args(args.iter().copied()) {
            Ok(Parsed::Run(fs)) => fs,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn err(args: &[&str]) -> FlagError {
        match FlagSet::parse_args(args.iter().copied()) {
            Err(e) => e,
            other => panic!("{args:?}: {other:?}"),
        }
    }

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table_is_consistent() {
        let mut seen = HashSet::new();
        for s in SPECS {
            assert!(seen.insert(s.name), "duplicate {}", s.name);
            parse_value(s.kind, s.default, None)
                .unwrap_or_else(|e| panic!("default of {}: {e}", s.name));
            if let Some(t) = s.alias_of {
                let target = lookup(t).unwrap();
                assert_eq!(target.kind, s.kind, "{}", s.name);
                assert_eq!(target.class, s.class, "{}", s.name);
            }
        }
        // Every flag etcd 3.7.2 takes is known.
        let etcd37 = "advertise-client-urls auth-token auth-token-ttl auto-compaction-mode \
            auto-compaction-retention auto-tls backend-batch-interval backend-batch-limit \
            backend-bbolt-freelist-type bcrypt-cost bootstrap-defrag-threshold-megabytes cert-file \
            cipher-suites client-cert-allowed-hostname client-cert-auth client-cert-file client-crl-file \
            client-key-file cluster-active-size cluster-remove-delay cluster-sync-interval \
            compact-hash-check-time compaction-batch-limit compaction-sleep-interval config config-file \
            corrupt-check-time cors data-dir discovery-cacert discovery-cert discovery-dial-timeout \
            discovery-endpoints discovery-fallback discovery-insecure-skip-tls-verify \
            discovery-insecure-transport discovery-keepalive-time discovery-keepalive-timeout discovery-key \
            discovery-password discovery-request-timeout discovery-srv discovery-srv-name discovery-token \
            discovery-user distributed-tracing-address distributed-tracing-instance-id \
            distributed-tracing-sampling-rate distributed-tracing-service-name downgrade-check-time \
            election-timeout enable-distributed-tracing enable-grpc-gateway enable-log-rotation enable-pprof \
            feature-gates force force-new-cluster grpc-keepalive-interval grpc-keepalive-min-time \
            grpc-keepalive-timeout heartbeat-interval host-whitelist initial-advertise-peer-urls \
            initial-cluster initial-cluster-state initial-cluster-token initial-election-tick-advance \
            key-file listen-client-http-urls listen-client-urls listen-metrics-urls listen-peer-urls \
            log-format log-level log-outputs log-rotation-config-json logger max-concurrent-streams \
            max-learners max-request-bytes max-result-buffer max-retry-attempts max-snapshots max-txn-ops \
            max-wals memory-mlock metrics name peer-auto-tls peer-cert-allowed-cn \
            peer-cert-allowed-hostname peer-cert-file peer-client-cert-auth peer-client-cert-file \
            peer-client-key-file peer-crl-file peer-election-timeout peer-heartbeat-interval peer-key-file \
            peer-skip-client-san-verification peer-trusted-ca-file pre-vote quota-backend-bytes \
            raft-read-timeout raft-write-timeout retry-interval self-signed-cert-validity snapshot \
            snapshot-catchup-entries snapshot-count socket-reuse-address socket-reuse-port \
            strict-reconfig-check test.coverprofile test.outputdir tls-max-version tls-min-version \
            trusted-ca-file unsafe-no-fsync v v2-deprecation version vv wal-dir warning-apply-duration \
            warning-unary-request-duration watch-progress-notify-interval";
        let names: Vec<&str> = etcd37.split_whitespace().collect();
        assert_eq!(names.len(), 128);
        for n in names {
            assert!(lookup(n).is_some(), "--{n} unknown");
            assert!(
                lookup(n).unwrap().removed_in.is_none(),
                "--{n} marked removed"
            );
        }
    }

    #[test]
    fn single_and_double_dash_with_eq_or_next_arg() {
        let fs = run(&[
            "-name",
            "a",
            "--data-dir=d",
            "-max-txn-ops=7",
            "--max-request-bytes",
            "9",
        ]);
        assert_eq!(fs.string("name"), "a");
        assert_eq!(fs.string("data-dir"), "d");
        assert_eq!(fs.uint("max-txn-ops"), 7);
        assert_eq!(fs.uint("max-request-bytes"), 9);
        assert!(fs.is_set("name") && !fs.is_set("initial-cluster"));
        // A value that looks like a flag is still the value.
        assert_eq!(run(&["--name", "--data-dir"]).string("name"), "--data-dir");
        // Last one wins.
        assert_eq!(run(&["--name=a", "--name=b"]).string("name"), "b");
        // Empty value after '='.
        assert_eq!(run(&["--name="]).string("name"), "");
    }

    #[test]
    fn booleans() {
        assert!(run(&["--force-new-cluster"]).boolean("force-new-cluster"));
        assert!(!run(&["--force-new-cluster=false"]).boolean("force-new-cluster"));
        assert!(run(&["-force-new-cluster=T"]).boolean("force-new-cluster"));
        assert!(
            !run(&["--initial-election-tick-advance=0"]).boolean("initial-election-tick-advance")
        );
        // etcd: `"false" is not a valid flag`, exit 1.
        let e = err(&["--force-new-cluster", "false"]);
        assert_eq!(e, FlagError::NotAFlag("false".into()));
        assert_eq!(e.to_string(), "\"false\" is not a valid flag");
        assert_eq!(e.exit_code(), 1);
        let e = err(&["--force-new-cluster=maybe"]);
        assert_eq!(
            e.to_string(),
            "invalid boolean value \"maybe\" for -force-new-cluster: parse error"
        );
        assert_eq!(e.exit_code(), 2);
    }

    #[test]
    fn syntax_errors_read_like_go() {
        let e = err(&["--foo"]);
        assert_eq!(e.to_string(), "flag provided but not defined: -foo");
        assert_eq!(e.exit_code(), 2);
        assert!(e.shows_usage());
        assert_eq!(
            err(&["-foo=bar"]).to_string(),
            "flag provided but not defined: -foo"
        );
        assert_eq!(
            err(&["---name", "x"]).to_string(),
            "bad flag syntax: ---name"
        );
        assert_eq!(err(&["-=x"]).to_string(), "bad flag syntax: -=x");
        assert_eq!(
            err(&["--name"]).to_string(),
            "flag needs an argument: -name"
        );
        assert_eq!(
            err(&["--max-txn-ops=abc"]).to_string(),
            "invalid value \"abc\" for flag -max-txn-ops: parse error"
        );
        assert_eq!(
            err(&["--max-txn-ops=-1"]).to_string(),
            "invalid value \"-1\" for flag -max-txn-ops: parse error"
        );
        assert_eq!(
            err(&["--max-txn-ops=99999999999999999999"]).to_string(),
            "invalid value \"99999999999999999999\" for flag -max-txn-ops: value out of range"
        );
        assert_eq!(
            err(&["--max-concurrent-streams=-1"]).to_string(),
            "invalid value \"-1\" for flag -max-concurrent-streams: strconv.ParseUint: parsing \"-1\": invalid syntax"
        );
        assert_eq!(
            err(&["--initial-cluster-state", "foo"]).to_string(),
            "invalid value \"foo\" for flag -initial-cluster-state: invalid value"
        );
        assert_eq!(
            err(&["--v2-deprecation", "not-yet"]).to_string(),
            "invalid value \"not-yet\" for flag -v2-deprecation: invalid value \"not-yet\""
        );
        assert_eq!(
            err(&["--grpc-keepalive-min-time=5"]).to_string(),
            "invalid value \"5\" for flag -grpc-keepalive-min-time: parse error"
        );
        // The first error stops parsing, as in Go.
        assert_eq!(err(&["--foo", "--bar"]), FlagError::Undefined("foo".into()));
    }

    #[test]
    fn go_number_syntax() {
        let fs = run(&[
            "--max-txn-ops=0x10",
            "--election-timeout=010",
            "--heartbeat-interval=1_0",
        ]);
        assert_eq!(fs.uint("max-txn-ops"), 16);
        assert_eq!(fs.uint("election-timeout"), 8);
        assert_eq!(fs.uint("heartbeat-interval"), 10);
        assert_eq!(
            run(&["--quota-backend-bytes=-5"]).int("quota-backend-bytes"),
            -5
        );
        assert_eq!(parse_go_uint("08", 64), Err(NumError::Syntax));
        assert_eq!(parse_go_uint("1__0", 64), Err(NumError::Syntax));
        assert_eq!(parse_go_uint("_1", 64), Err(NumError::Syntax));
        assert_eq!(parse_go_uint("0b101", 64), Ok(5));
        assert_eq!(parse_go_uint("0o17", 64), Ok(15));
        assert_eq!(parse_go_uint("4294967296", 32), Err(NumError::Range));
        assert_eq!(parse_go_int("-9223372036854775808", 64), Ok(i64::MIN));
        assert_eq!(
            parse_go_int("9223372036854775808", 64),
            Err(NumError::Range)
        );
    }

    #[test]
    fn durations() {
        let d = |s: &str| parse_go_duration(s).map(|d| d.0);
        assert_eq!(d("0"), Ok(0));
        assert_eq!(d("5s"), Ok(5_000_000_000));
        assert_eq!(d("1h2m3.5s"), Ok(3_723_500_000_000));
        assert_eq!(d("-1.5ms"), Ok(-1_500_000));
        assert_eq!(d("10µs"), Ok(10_000));
        assert_eq!(d("abc"), Err("time: invalid duration \"abc\"".into()));
        assert_eq!(
            d("1.5"),
            Err("time: missing unit in duration \"1.5\"".into())
        );
        assert_eq!(
            d("1x"),
            Err("time: unknown unit \"x\" in duration \"1x\"".into())
        );
        assert_eq!(d(""), Err("time: invalid duration \"\"".into()));
        for (n, s) in [
            (0, "0s"),
            (1, "1ns"),
            (1_500, "1.5µs"),
            (100_000_000, "100ms"),
            (60_000_000_000, "1m0s"),
            (7_200_000_000_000, "2h0m0s"),
            (3_723_500_000_000, "1h2m3.5s"),
            (-5_000_000_000, "-5s"),
        ] {
            assert_eq!(GoDuration(n).to_string(), s);
        }
    }

    #[test]
    fn double_dash_and_positionals() {
        assert_eq!(
            err(&["--name=a", "--", "--foo"]),
            FlagError::NotAFlag("--foo".into())
        );
        assert_eq!(
            err(&["--name=a", "-", "--foo"]),
            FlagError::NotAFlag("-".into())
        );
        assert_eq!(
            err(&["extra", "--name=a"]),
            FlagError::NotAFlag("extra".into())
        );
        // A bare `--` at the end is fine.
        assert_eq!(run(&["--name=a", "--"]).string("name"), "a");
    }

    #[test]
    fn help_and_version() {
        for h in [
            &["-h"][..],
            &["--help"],
            &["-help=false"],
            &["--name=x", "-h", "--foo"],
        ] {
            assert!(
                matches!(FlagSet::parse_args(h.iter().copied()), Ok(Parsed::Help)),
                "{h:?}"
            );
        }
        // An error before -h wins.
        assert!(FlagSet::parse_args(["--foo", "-h"]).is_err());
        assert!(matches!(
            FlagSet::parse_args(["--version"]),
            Ok(Parsed::Version)
        ));
        assert!(matches!(
            FlagSet::parse_args(["--version=false"]),
            Ok(Parsed::Run(_))
        ));
        // Leftover arguments are reported before --version is answered.
        assert!(FlagSet::parse_args(["--version", "x"]).is_err());
        assert!(version_text().contains("etcd API compatible: 3.7.2"));
        let h = help_text();
        assert!(h.contains("--data-dir '${name}.kvik'"));
        assert!(h.contains("--experimental-watch-progress-notify-interval '10m' (old spelling of --watch-progress-notify-interval)"));
    }

    #[test]
    fn ignored_flags_take_anything() {
        run(&["--snapshot=foo", "-v", "--config=x.yml"]);
        // But not a separate value, as in etcd.
        assert_eq!(
            err(&["--snapshot", "foo"]),
            FlagError::NotAFlag("foo".into())
        );
    }

    #[test]
    fn url_lists() {
        let fs = run(&[
            "--listen-client-urls",
            "http://127.0.0.2:1, HTTP://127.0.0.1:2,http://127.0.0.1:2",
            "--listen-peer-urls=",
        ]);
        let v: Vec<&str> = fs
            .urls("listen-client-urls")
            .iter()
            .map(GoUrl::as_str)
            .collect();
        assert_eq!(v, ["http://127.0.0.1:2", "http://127.0.0.2:1"]);
        // An empty value keeps the list as it was (the default here).
        assert_eq!(
            fs.urls("listen-peer-urls")[0].as_str(),
            "http://localhost:2380"
        );
        assert!(fs.is_set("listen-peer-urls"));
        let e = |v: &str| err(&["--listen-client-urls", v]).to_string();
        assert_eq!(
            e("ftp://127.0.0.1:1"),
            "invalid value \"ftp://127.0.0.1:1\" for flag -listen-client-urls: URL scheme must be http, https, unix, or unixs: ftp://127.0.0.1:1"
        );
        assert_eq!(
            e("http://127.0.0.1"),
            "invalid value \"http://127.0.0.1\" for flag -listen-client-urls: URL address does not have the form \"host:port\": http://127.0.0.1"
        );
        assert_eq!(
            e("http://127.0.0.1:2379/x"),
            "invalid value \"http://127.0.0.1:2379/x\" for flag -listen-client-urls: URL must not contain a path: http://127.0.0.1:2379/x"
        );
        assert_eq!(
            e("http://127.0.0.1:abc"),
            "invalid value \"http://127.0.0.1:abc\" for flag -listen-client-urls: parse \"http://127.0.0.1:abc\": invalid port \":abc\" after host"
        );
        assert!(e("http://[::1]")
            .ends_with("URL address does not have the form \"host:port\": http://[::1]"));
        assert!(e("127.0.0.1:2379")
            .ends_with("parse \"127.0.0.1:2379\": first path segment in URL cannot contain colon"));
        assert!(e("localhost:2379")
            .ends_with("URL scheme must be http, https, unix, or unixs: localhost:2379"));
        let u = parse_etcd_url("http://[::1]:2379").unwrap();
        assert_eq!((u.hostname(), u.port()), ("::1", "2379"));
        assert_eq!(
            parse_etcd_url("unix://localhost:1").unwrap().scheme(),
            "unix"
        );
        // Empty port is accepted, as in etcd.
        assert_eq!(parse_etcd_url("http://127.0.0.1:").unwrap().port(), "");
    }

    #[test]
    fn lists_and_gates() {
        let fs = run(&["--log-outputs=stdout,stderr,stdout"]);
        assert_eq!(fs.list("log-outputs"), ["stderr", "stdout"]);
        let fs = run(&["--cipher-suites=b,a"]);
        assert_eq!(fs.list("cipher-suites"), ["b", "a"]);
        let fs = run(&[
            "--feature-gates",
            "CompactHashCheck=true, InitialCorruptCheck=false",
            "--feature-gates=AllAlpha=true",
        ]);
        match fs.get("feature-gates") {
            Value::Gates(g) => {
                assert_eq!(g.get("CompactHashCheck"), Some(&true));
                assert_eq!(g.get("InitialCorruptCheck"), Some(&false));
                assert!(gate_enabled(g, "LeaseCheckpoint"));
                assert!(!gate_enabled(g, "InitialCorruptCheck"));
            }
            v => panic!("{v:?}"),
        }
        assert_eq!(
            err(&["--feature-gates", "Foo=true"]).to_string(),
            "invalid value \"Foo=true\" for flag -feature-gates: unrecognized feature gate: Foo"
        );
        assert_eq!(
            err(&["--feature-gates", "CompactHashCheck=maybe"]).to_string(),
            "invalid value \"CompactHashCheck=maybe\" for flag -feature-gates: invalid value of CompactHashCheck=maybe, err: strconv.ParseBool: parsing \"maybe\": invalid syntax"
        );
        assert!(run(&["--cors=*"]).list("cors") == ["*"]);
        assert!(FlagSet::parse_args(["--cors=http://example.com"]).is_err());
    }

    #[test]
    fn old_spellings_stand_for_current_flags() {
        let fs = run(&["--experimental-watch-progress-notify-interval=5s"]);
        assert_eq!(
            fs.duration("watch-progress-notify-interval"),
            GoDuration(5_000_000_000)
        );
        assert!(!fs.is_set("watch-progress-notify-interval"));
        let fs = run(&[
            "--experimental-watch-progress-notify-interval=5s",
            "--watch-progress-notify-interval=7s",
        ]);
        assert_eq!(
            fs.duration("watch-progress-notify-interval"),
            GoDuration(7_000_000_000)
        );
    }

    #[test]
    fn env_fills_flags_not_given() {
        let mut fs = run(&["--name=n"]);
        fs.apply_env(env(&[
            ("ETCD_DATA_DIR", "/d"),
            ("ETCD_FORCE_NEW_CLUSTER", "true"),
            ("ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL", "1m"),
            ("ETCDCTL_API", "3"),
            ("ETCD", "x"),
            ("PATH", "/bin"),
        ]))
        .unwrap();
        assert_eq!(fs.string("data-dir"), "/d");
        assert_eq!(
            fs.source("data-dir"),
            Some(&Source::Env("ETCD_DATA_DIR".into()))
        );
        assert!(fs.boolean("force-new-cluster"));
        assert_eq!(
            fs.duration("watch-progress-notify-interval"),
            GoDuration(60_000_000_000)
        );
        assert!(fs.warnings().is_empty(), "{:?}", fs.warnings());
        assert_eq!(fs.env_used().len(), 3);
    }

    #[test]
    fn flag_beats_its_env_variable_with_a_warning() {
        let mut fs = run(&["--name=cli"]);
        fs.apply_env(env(&[("ETCD_NAME", "env")])).unwrap();
        assert_eq!(fs.string("name"), "cli");
        assert!(
            fs.warnings()
                .iter()
                .any(|w| w.contains("ETCD_NAME") && w.contains("shadowed")),
            "{:?}",
            fs.warnings()
        );
    }

    #[test]
    fn env_unknown_and_odd_variables_warn() {
        let mut fs = run(&[]);
        fs.apply_env(env(&[
            ("ETCD_FOO_BAR", "1"),
            ("ETCD_", "y"),
            ("ETCD_SNAPSHOT_COUNT", ""),
            ("ETCD_name", "lower"),
            ("ETCD_VERSION", "1"),
        ]))
        .unwrap();
        assert_eq!(
            fs.warnings(),
            [
                "cannot set special environment variable ETCD_VERSION (value \"1\" ignored)",
                "unrecognized environment variable ETCD_FOO_BAR",
                "unrecognized environment variable ETCD_",
                "unrecognized environment variable ETCD_SNAPSHOT_COUNT",
                "unrecognized environment variable ETCD_name",
            ]
        );
        assert_eq!(fs.string("name"), "default");
    }

    #[test]
    fn env_invalid_value() {
        let mut fs = run(&[]);
        let e = fs
            .apply_env(env(&[("ETCD_MAX_TXN_OPS", "abc")]))
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid value \"abc\" for ETCD_MAX_TXN_OPS: parse error"
        );
        assert_eq!(e.exit_code(), 1);
        // The first of repeated variables is used.
        let mut fs = run(&[]);
        fs.apply_env(env(&[("ETCD_NAME", "a"), ("ETCD_NAME", "b")]))
            .unwrap();
        assert_eq!(fs.string("name"), "a");
    }
}
