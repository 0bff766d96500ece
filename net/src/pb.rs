//! Generated protobuf messages and gRPC services of the kvik v3 API.
//!
//! The modules mirror the protobuf packages; the generated code refers to
//! the other packages through `super::`, so all of them live side by side
//! here.

#![allow(clippy::all, clippy::pedantic, missing_docs, rustdoc::all)]

/// MVCC data model: `KeyValue` and watch `Event`.
pub mod mvccpb {
    include!(concat!(env!("OUT_DIR"), "/mvccpb.rs"));
}

/// Users, roles and permissions.
pub mod authpb {
    include!(concat!(env!("OUT_DIR"), "/authpb.rs"));
}

/// The KV, Watch, Lease, Cluster, Maintenance and Auth services.
pub mod etcdserverpb {
    include!(concat!(env!("OUT_DIR"), "/etcdserverpb.rs"));
}

/// The Lock service.
pub mod v3lockpb {
    include!(concat!(env!("OUT_DIR"), "/v3lockpb.rs"));
}

/// The Election service.
pub mod v3electionpb {
    include!(concat!(env!("OUT_DIR"), "/v3electionpb.rs"));
}

/// Encoded `FileDescriptorSet` of every kvik `.proto` file (imports included,
/// with source info).
pub const FILE_DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/kvik_descriptor.bin"));
