//! The engine's typed errors. `Display` is etcd's exact error text; the gRPC
//! status code etcd pairs with each is noted on the variant.

use std::fmt;

/// Every error a request can get from the engine.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Error {
    /// InvalidArgument: a request, compare or nested op has an empty key.
    EmptyKey,
    /// InvalidArgument: `ignore_value` together with a non-empty value.
    ValueProvided,
    /// InvalidArgument: `ignore_lease` together with a non-zero lease.
    LeaseProvided,
    /// InvalidArgument: `ignore_value`/`ignore_lease` on a key that does not
    /// exist (also etcd's answer to an empty `RequestOp`).
    KeyNotFound,
    /// InvalidArgument: a transaction level holds more than `txn_ops_max` ops.
    TooManyOps,
    /// InvalidArgument: a transaction writes one key twice.
    DuplicateKey,
    /// InvalidArgument: unknown sort order or sort target value.
    InvalidSortOption,
    /// OutOfRange: the revision asked for has been compacted away.
    Compacted,
    /// OutOfRange: the revision asked for is above the current revision.
    FutureRev,
    /// NotFound: a put or a revoke names a lease that does not exist.
    LeaseNotFound,
    /// FailedPrecondition: a grant names a lease id that already exists.
    LeaseExists,
    /// OutOfRange: a grant asks for more than
    /// [`crate::LEASE_TTL_MAX_SECS`].
    LeaseTtlTooLarge,
    /// DataLoss: stored bytes failed their checksum; the answer is withheld
    /// ([`crate::Mvcc::take_corruption`] says where).
    Corrupt,
}

impl Error {
    /// etcd's error text for this error.
    pub fn text(&self) -> &'static str {
        match self {
            Error::EmptyKey => "etcdserver: key is not provided",
            Error::ValueProvided => "etcdserver: value is provided",
            Error::LeaseProvided => "etcdserver: lease is provided",
            Error::KeyNotFound => "etcdserver: key not found",
            Error::TooManyOps => "etcdserver: too many operations in txn request",
            Error::DuplicateKey => "etcdserver: duplicate key given in txn request",
            Error::InvalidSortOption => "etcdserver: invalid sort option",
            Error::Compacted => "etcdserver: mvcc: required revision has been compacted",
            Error::FutureRev => "etcdserver: mvcc: required revision is a future revision",
            Error::LeaseNotFound => "etcdserver: requested lease not found",
            Error::LeaseExists => "etcdserver: lease already exists",
            Error::LeaseTtlTooLarge => "etcdserver: too large lease TTL",
            Error::Corrupt => "etcdserver: corrupt cluster",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.text())
    }
}

impl std::error::Error for Error {}

/// Why [`crate::Command::decode`] refused a byte string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// No bytes at all.
    Empty,
    /// The leading codec version byte is not one this build reads.
    UnsupportedVersion(u8),
    /// The bytes after the version byte are not a valid archived command.
    Malformed(String),
    /// The archive is valid but its transaction tree is not a tree (a node
    /// referenced twice, a forward reference missing, or nesting deeper than
    /// [`crate::TXN_DEPTH_MAX`]).
    BadTxnTree,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Empty => f.write_str("command decode: no bytes"),
            DecodeError::UnsupportedVersion(v) => {
                write!(f, "command decode: unsupported codec version {v}")
            }
            DecodeError::Malformed(e) => write!(f, "command decode: malformed archive: {e}"),
            DecodeError::BadTxnTree => f.write_str("command decode: malformed transaction tree"),
        }
    }
}

impl std::error::Error for DecodeError {}
