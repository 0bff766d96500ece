//! The `kvik` server command: etcd's command line in, a running server out.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::config::{Config, ConfigError};
use crate::flags;

/// Runs the server; returns the process exit status.
pub fn main(args: Vec<String>, env: Vec<(String, String)>) -> i32 {
    let config = match Config::from_args_env(args, env) {
        Ok(c) => c,
        Err(ConfigError::HelpRequested) => {
            println!("{}", flags::help_text());
            return 0;
        }
        Err(ConfigError::VersionRequested) => {
            println!("{}", flags::version_text());
            return 0;
        }
        Err(e) => {
            eprintln!("{e}");
            if e.shows_usage() {
                eprintln!("{}", flags::usage());
            }
            return e.exit_code();
        }
    };
    init_logging(&config.log_level);
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    let metrics = match metrics_addrs(&config) {
        Ok(m) => m,
        Err(e) => {
            eprintln!("kvik: {e}");
            return 1;
        }
    };
    for f in &config.not_yet_effective {
        tracing::warn!("{f} is accepted but has no effect yet in kvik");
    }
    // Like etcd, the bootstrap flags are checked only for a member that has
    // no data yet; afterwards the data directory is the truth.
    if !net::datadir::DataDir::is_initialized(&config.data_dir) {
        if let Err(e) = config.check_bootstrap() {
            eprintln!("{e}");
            return 1;
        }
    }
    let server = net::server::ServerConfig {
        name: config.name.clone(),
        data_dir: config.data_dir.clone(),
        listen_client: config.listen_client_urls.iter().map(|u| u.addr).collect(),
        listen_metrics: metrics,
        advertise_client_urls: config.advertise_client_urls.clone(),
        advertise_peer_urls: config.initial_advertise_peer_urls.clone(),
        initial_cluster_token: config.initial_cluster_token.clone(),
        max_txn_ops: config.max_txn_ops,
        max_request_bytes: config.max_request_bytes,
        lease_ttl_min_secs: lease_ttl_min_secs(config.flags.uint("election-timeout")),
        progress_notify_interval: config
            .flags
            .duration("watch-progress-notify-interval")
            .to_std()
            .filter(|d| !d.is_zero())
            .unwrap_or(net::shard::PROGRESS_NOTIFY_INTERVAL_DEFAULT),
        force_epoll: config.force_epoll,
        cores: config.cores.max(1),
        listen_peer: if config.flags.is_set("listen-peer-urls")
            || config.initial_cluster.len() > 1
            || config.initial_cluster_state == crate::config::ClusterState::Existing
        {
            config.listen_peer_urls.iter().map(|u| u.addr).collect()
        } else {
            Vec::new()
        },
        initial_cluster: config.initial_cluster.clone(),
        join_existing: config.initial_cluster_state == crate::config::ClusterState::Existing,
        heartbeat_interval: std::time::Duration::from_millis(
            config.flags.uint("heartbeat-interval"),
        ),
        election_timeout: std::time::Duration::from_millis(config.flags.uint("election-timeout")),
        snapshot_catchup_entries: config.flags.uint("snapshot-catchup-entries").max(1),
        strict_reconfig: config.flags.boolean("strict-reconfig-check"),
        checkpoint: {
            let d = net::shard::CheckpointPolicy::default();
            let or_default = |v: u64, d: u64| if v == 0 { d } else { v };
            net::shard::CheckpointPolicy {
                entries: or_default(config.flags.uint("snapshot-count"), d.entries),
                bytes: or_default(config.flags.uint("kvik-checkpoint-bytes"), d.bytes),
            }
        },
    };
    tracing::info!(
        "starting kvik {} (etcd API {}) name={} data-dir={} cores={}",
        env!("CARGO_PKG_VERSION"),
        net::services::ETCD_API_VERSION,
        server.name,
        server.data_dir.display(),
        server.cores
    );
    let urls: Vec<String> = config
        .listen_client_urls
        .iter()
        .map(|u| u.url.clone())
        .collect();
    let result = net::server::run(server, move |started| {
        for (url, addr) in urls.iter().zip(&started.client_addrs) {
            tracing::info!("serving client requests on {url} ({addr})");
        }
    });
    match result {
        Ok(()) => 0,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("kvik: {e}");
            1
        }
    }
}

/// etcd's minimum lease TTL: ceil(1.5 × election timeout), in seconds.
fn lease_ttl_min_secs(election_timeout_ms: u64) -> i64 {
    (election_timeout_ms * 3).div_ceil(2).div_ceil(1000).max(1) as i64
}

fn metrics_addrs(config: &Config) -> Result<Vec<SocketAddr>, String> {
    let mut out = Vec::new();
    for u in config.flags.urls("listen-metrics-urls") {
        if u.scheme() != "http" {
            return Err(format!(
                "--listen-metrics-urls {u}: only http is supported yet"
            ));
        }
        let ip: IpAddr = match u.hostname() {
            "localhost" | "" => IpAddr::V4(Ipv4Addr::LOCALHOST),
            h => h
                .parse()
                .map_err(|_| format!("--listen-metrics-urls {u}: expected an IP address"))?,
        };
        let port: u16 = u
            .port()
            .parse()
            .map_err(|_| format!("--listen-metrics-urls {u}: bad port"))?;
        out.push(SocketAddr::new(ip, port));
    }
    Ok(out)
}

fn init_logging(level: &str) {
    let level = match level {
        "debug" => "debug",
        "warn" => "warn",
        "error" | "dpanic" | "panic" | "fatal" => "error",
        _ => "info",
    };
    let filter = tracing_subscriber::EnvFilter::try_from_env("KVIK_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(ansi)
        .with_writer(std::io::stderr)
        .try_init();
}

#[cfg(test)]
mod tests {
    #[test]
    fn lease_ttl_minimum_follows_election_timeout() {
        assert_eq!(super::lease_ttl_min_secs(1000), 2);
        assert_eq!(super::lease_ttl_min_secs(5000), 8);
        assert_eq!(super::lease_ttl_min_secs(100), 1);
    }
}
