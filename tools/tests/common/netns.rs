//! Members in their own network namespaces, so that a test can cut a real
//! process off from its peers.
//!
//! `Net::new(n)` makes a bridge in the test's namespace with the first
//! address of a fresh /24, and `n` namespaces, each joined to the bridge by
//! a veth pair and given its own address. The test process reaches every
//! member through the bridge; members reach each other through it too.
//!
//! `isolate(i)` adds blackhole routes both ways: in member `i`'s namespace
//! to every other member's address, and in every other member's namespace
//! to `i`'s. Nothing crosses between `i` and a peer in either direction,
//! on connections old or new. The bridge's address stays routable, so the
//! test can still talk to `i` as a client. `heal(i)` removes the routes.
//! Everything is deleted on drop.
//!
//! Each `Net` takes its own /24, from the process id and a counter, so that
//! the tests of one binary, which run in parallel, never share one.
//!
//! This needs iproute2's `ip` and the right to create namespaces (root, or
//! CAP_SYS_ADMIN and CAP_NET_ADMIN); without them the test fails and says
//! so.

use std::process::Command;

/// The bridge, namespaces and addresses of one test's members.
pub struct Net {
    tag: String,
    subnet: u8,
    namespaces: Vec<String>,
    bridge_made: bool,
}

/// Runs `ip args`, failing with the command and its output.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip").args(args).output().map_err(|e| {
        format!("cannot run `ip` ({e}): install iproute2 with `apt-get install iproute2`")
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`ip {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

impl Net {
    /// A bridge and `n` namespaces on a fresh 10.213.x.0/24. Fails the
    /// test, naming what is missing, if namespaces cannot be made here.
    pub fn new(n: usize) -> Net {
        assert!((1..=200).contains(&n), "1 to 200 members");
        static MADE: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let made = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let pid = std::process::id();
        let mut net = Net {
            tag: format!("{:04x}{:02x}", pid & 0xffff, made & 0xff),
            // 10.213.0.0/24 is left alone; any other /24 under 10.213/16.
            subnet: 1 + ((pid.wrapping_mul(31).wrapping_add(made)) % 254) as u8,
            namespaces: Vec::new(),
            bridge_made: false,
        };
        if let Err(e) = net.build(n) {
            panic!(
                "cannot make network namespaces for a partition test: {e}\n\
                 The test needs iproute2 (`apt-get install iproute2`) and root \
                 (CAP_SYS_ADMIN and CAP_NET_ADMIN)."
            );
        }
        net
    }

    fn bridge(&self) -> String {
        format!("kvb{}", self.tag)
    }

    fn build(&mut self, n: usize) -> Result<(), String> {
        let bridge = self.bridge();
        ip(&["link", "add", &bridge, "type", "bridge"])?;
        self.bridge_made = true;
        ip(&[
            "addr",
            "add",
            &format!("{}/24", self.bridge_host()),
            "dev",
            &bridge,
        ])?;
        ip(&["link", "set", &bridge, "up"])?;
        for i in 0..n {
            let ns = format!("kvik-{}-{i}", self.tag);
            ip(&["netns", "add", &ns])?;
            self.namespaces.push(ns.clone());
            let veth = format!("kvv{}{i}", self.tag);
            ip(&[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ])?;
            ip(&["link", "set", &veth, "master", &bridge, "up"])?;
            let addr = format!("{}/24", self.host(i));
            ip(&["-n", &ns, "addr", "add", &addr, "dev", "eth0"])?;
            ip(&["-n", &ns, "link", "set", "eth0", "up"])?;
            ip(&["-n", &ns, "link", "set", "lo", "up"])?;
        }
        Ok(())
    }

    /// The test process's address on the bridge.
    pub fn bridge_host(&self) -> String {
        format!("10.213.{}.1", self.subnet)
    }

    /// Member `i`'s address.
    pub fn host(&self, i: usize) -> String {
        format!("10.213.{}.{}", self.subnet, i + 2)
    }

    /// Member `i`'s namespace, for `ip netns exec`.
    pub fn namespace(&self, i: usize) -> &str {
        &self.namespaces[i]
    }

    fn routes(&self, i: usize, verb: &str) {
        for j in 0..self.namespaces.len() {
            if j != i {
                for (from, to) in [(i, j), (j, i)] {
                    let to = format!("{}/32", self.host(to));
                    ip(&[
                        "-n",
                        &self.namespaces[from],
                        "route",
                        verb,
                        "blackhole",
                        &to,
                    ])
                    .unwrap_or_else(|e| panic!("{e}"));
                }
            }
        }
    }

    /// Cuts member `i` off from every other member, both ways.
    pub fn isolate(&self, i: usize) {
        self.routes(i, "add");
    }

    /// Undoes [`Net::isolate`].
    pub fn heal(&self, i: usize) {
        self.routes(i, "del");
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a veth end deletes its peer at once; a namespace's own
        // links otherwise go only when the kernel gets round to it.
        for (i, ns) in self.namespaces.iter().enumerate() {
            let _ = ip(&["link", "del", &format!("kvv{}{i}", self.tag)]);
            let _ = ip(&["netns", "del", ns]);
        }
        if self.bridge_made {
            let _ = ip(&["link", "del", &self.bridge()]);
        }
    }
}
