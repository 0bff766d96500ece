#!/usr/bin/env bash
# Runs kvik's whole test suite, installing what the tests need first.
#
# External peers the tests talk to:
#   - etcdctl 3.4 (Debian package etcd-client);
#   - protoc, needed only to build the etcd-client crate used as a test
#     client (Debian package protobuf-compiler); kvik itself never needs it;
#   - iproute2's `ip`, for the partition test's network namespaces (which
#     also need root);
#   - etcd 3.7.2 comes from the etcd-bin-vendored crate, nothing to install.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
command -v etcdctl >/dev/null 2>&1 || need_apt+=(etcd-client)
command -v protoc >/dev/null 2>&1 || need_apt+=(protobuf-compiler)
# `ip` puts members of the partition test in their own network namespaces.
command -v ip >/dev/null 2>&1 || need_apt+=(iproute2)
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  else
    sudo apt-get update -qq
    sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}"
  fi
fi

# Release-mode tests: the crash and differential tests drive real
# processes, and the kvik binary under test should be the one users run.
cargo test --workspace --release --no-fail-fast "$@"
