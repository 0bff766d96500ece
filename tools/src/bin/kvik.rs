//! `kvik`: the server binary. It takes etcd's flags and `ETCD_*` variables,
//! so any etcd command line, compose file or manifest runs it.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    std::process::exit(tools::serve::main(
        std::env::args().skip(1).collect(),
        std::env::vars().collect(),
    ));
}
