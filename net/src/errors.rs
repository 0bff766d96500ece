//! The gRPC errors an etcd 3.7 server returns, with their exact status code
//! and message text, so that kvik fails requests the way etcd does.
//!
//! Clients (etcd's Go client, `etcdctl`, other language bindings) recognise
//! errors by message text, so every message here is reproduced byte for byte.
//!
//! Most entries are the server's typed gRPC errors. A few failures are not
//! typed by etcd: they reach the client as `Unknown` carrying the internal
//! error text (see the "untyped" section). Watch cancellation reasons are
//! plain strings inside a `WatchResponse`, listed in [`cancel_reason`].

use std::fmt;

use tonic::Code;

/// One etcd gRPC error: a status code and its message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct EtcdError {
    /// gRPC status code sent on the wire.
    pub code: Code,
    /// Status message sent on the wire.
    pub message: &'static str,
}

impl EtcdError {
    /// Creates an entry; used by the table below.
    pub const fn new(code: Code, message: &'static str) -> Self {
        Self { code, message }
    }

    /// The gRPC status to answer a request with.
    pub fn status(&self) -> tonic::Status {
        tonic::Status::new(self.code, self.message)
    }

    /// The same message with code `Unknown`.
    ///
    /// The Lock and Election services run on an embedded client: any etcd
    /// error they hit comes back to their caller as `Unknown` with the
    /// original text (a Lock with a missing lease answers `Unknown`
    /// "etcdserver: requested lease not found").
    pub const fn untyped(self) -> EtcdError {
        EtcdError::new(Code::Unknown, self.message)
    }

    /// Looks an error up by its message text, the way etcd clients map a
    /// received status back to a typed error.
    pub fn from_message(message: &str) -> Option<EtcdError> {
        ALL.iter().copied().find(|e| e.message == message)
    }
}

impl fmt::Display for EtcdError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message)
    }
}

impl std::error::Error for EtcdError {}

impl From<EtcdError> for tonic::Status {
    fn from(e: EtcdError) -> Self {
        e.status()
    }
}

const fn e(code: Code, message: &'static str) -> EtcdError {
    EtcdError::new(code, message)
}

// ------------------------------------------------------------ request checks

/// Range, Put or DeleteRange with an empty key.
pub const EMPTY_KEY: EtcdError = e(Code::InvalidArgument, "etcdserver: key is not provided");
/// Put with `ignore_value`/`ignore_lease` on a key that does not exist.
pub const KEY_NOT_FOUND: EtcdError = e(Code::InvalidArgument, "etcdserver: key not found");
/// Put with `ignore_value` and a non-empty value.
pub const VALUE_PROVIDED: EtcdError = e(Code::InvalidArgument, "etcdserver: value is provided");
/// Put with `ignore_lease` and a non-zero lease.
pub const LEASE_PROVIDED: EtcdError = e(Code::InvalidArgument, "etcdserver: lease is provided");
/// Txn with more operations than `--max-txn-ops`.
pub const TOO_MANY_OPS: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: too many operations in txn request",
);
/// Txn writing (or deleting) the same key twice in one branch.
pub const DUPLICATE_KEY: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: duplicate key given in txn request",
);
/// Client API version metadata names an unknown version.
pub const INVALID_CLIENT_API_VERSION: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: invalid client api version",
);
/// Range with a sort order or target outside the enum.
pub const INVALID_SORT_OPTION: EtcdError =
    e(Code::InvalidArgument, "etcdserver: invalid sort option");
/// Request larger than `--max-request-bytes`.
pub const REQUEST_TOO_LARGE: EtcdError =
    e(Code::InvalidArgument, "etcdserver: request is too large");

// ------------------------------------------------------------ MVCC

/// Read or watch at a revision below the compaction point.
pub const COMPACTED: EtcdError = e(
    Code::OutOfRange,
    "etcdserver: mvcc: required revision has been compacted",
);
/// Read or compaction at a revision above the current one.
pub const FUTURE_REV: EtcdError = e(
    Code::OutOfRange,
    "etcdserver: mvcc: required revision is a future revision",
);
/// Write refused while the NOSPACE alarm is raised.
pub const NO_SPACE: EtcdError = e(
    Code::ResourceExhausted,
    "etcdserver: mvcc: database space exceeded",
);

// ------------------------------------------------------------ leases

/// Lease ID not known (revoked, expired or never granted).
pub const LEASE_NOT_FOUND: EtcdError = e(Code::NotFound, "etcdserver: requested lease not found");
/// LeaseGrant with an ID that is already in use.
pub const LEASE_EXIST: EtcdError = e(Code::FailedPrecondition, "etcdserver: lease already exists");
/// LeaseGrant with a TTL above the maximum (9_000_000_000 seconds).
pub const LEASE_TTL_TOO_LARGE: EtcdError = e(Code::OutOfRange, "etcdserver: too large lease TTL");

// ------------------------------------------------------------ watch

/// Watch stream ended because its context was canceled.
pub const WATCH_CANCELED: EtcdError = e(Code::Cancelled, "etcdserver: watch canceled");

// ------------------------------------------------------------ membership

/// MemberAdd with an ID that already exists.
pub const MEMBER_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: member ID already exist",
);
/// MemberAdd/MemberUpdate with a peer URL used by another member.
pub const PEER_URL_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: Peer URLs already exists",
);
/// Reconfiguration refused because it would leave too few started voters.
///
/// etcd declares this one as `FailedPrecondition`, but its server hands the
/// client-side wrapper of the error to gRPC, which therefore sends `Unknown`
/// with this text; the code here is what actually goes over the wire.
pub const MEMBER_NOT_ENOUGH_STARTED: EtcdError = e(
    Code::Unknown,
    "etcdserver: re-configuration failed due to not enough started members",
);
/// MemberAdd/MemberUpdate with unparsable peer URLs.
pub const MEMBER_BAD_URLS: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: given member URLs are invalid",
);
/// Member ID unknown or already removed.
pub const MEMBER_NOT_FOUND: EtcdError = e(Code::NotFound, "etcdserver: member not found");
/// MemberPromote of a voting member.
pub const MEMBER_NOT_LEARNER: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: can only promote a learner member",
);
/// MemberPromote of a learner whose log lags the leader's.
pub const LEARNER_NOT_READY: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: can only promote a learner member which is in sync with leader",
);
/// MemberAdd of a learner beyond the learner limit.
pub const TOO_MANY_LEARNERS: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: too many learner members in cluster",
);
/// Peer belongs to another cluster (seen by peer-to-peer checks).
pub const CLUSTER_ID_MISMATCH: EtcdError =
    e(Code::FailedPrecondition, "etcdserver: cluster ID mismatch");

// ------------------------------------------------------------ throttling

/// Applied index lags the committed index too far.
///
/// Declared `ResourceExhausted` by etcd, but sent as `Unknown` for the same
/// reason as [`MEMBER_NOT_ENOUGH_STARTED`].
pub const TOO_MANY_REQUESTS: EtcdError = e(Code::Unknown, "etcdserver: too many requests");

// ------------------------------------------------------------ auth

/// AuthEnable without a `root` user.
pub const ROOT_USER_NOT_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: root user does not exist",
);
/// AuthEnable while `root` lacks the `root` role.
pub const ROOT_ROLE_NOT_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: root user does not have root role",
);
/// UserAdd of an existing user.
pub const USER_ALREADY_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: user name already exists",
);
/// Empty user name, including a request without a token while auth is on.
pub const USER_EMPTY: EtcdError = e(Code::InvalidArgument, "etcdserver: user name is empty");
/// Unknown user.
pub const USER_NOT_FOUND: EtcdError =
    e(Code::FailedPrecondition, "etcdserver: user name not found");
/// RoleAdd of an existing role.
pub const ROLE_ALREADY_EXIST: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: role name already exists",
);
/// Unknown role.
pub const ROLE_NOT_FOUND: EtcdError =
    e(Code::FailedPrecondition, "etcdserver: role name not found");
/// Empty role name.
pub const ROLE_EMPTY: EtcdError = e(Code::InvalidArgument, "etcdserver: role name is empty");
/// Wrong user name or password.
pub const AUTH_FAILED: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: authentication failed, invalid user ID or password",
);
/// RoleGrantPermission without a permission.
pub const PERMISSION_NOT_GIVEN: EtcdError =
    e(Code::InvalidArgument, "etcdserver: permission not given");
/// The authenticated user may not perform the request.
pub const PERMISSION_DENIED: EtcdError = e(Code::PermissionDenied, "etcdserver: permission denied");
/// UserRevokeRole of a role the user does not have.
pub const ROLE_NOT_GRANTED: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: role is not granted to the user",
);
/// RoleRevokePermission of a permission the role does not have.
pub const PERMISSION_NOT_GRANTED: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: permission is not granted to the role",
);
/// Authenticate while auth is disabled.
pub const AUTH_NOT_ENABLED: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: authentication is not enabled",
);
/// Token unknown, malformed or expired.
pub const INVALID_AUTH_TOKEN: EtcdError =
    e(Code::Unauthenticated, "etcdserver: invalid auth token");
/// Forbidden auth change, such as revoking `root` from user `root`.
pub const INVALID_AUTH_MGMT: EtcdError =
    e(Code::InvalidArgument, "etcdserver: invalid auth management");
/// Token issued before the latest auth store change.
pub const AUTH_OLD_REVISION: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: revision of auth store is old",
);

// ------------------------------------------------------------ cluster state

/// No leader is known (also closes streams when leadership is lost).
pub const NO_LEADER: EtcdError = e(Code::Unavailable, "etcdserver: no leader");
/// Request only the leader may serve (MoveLeader) reached a follower.
pub const NOT_LEADER: EtcdError = e(Code::FailedPrecondition, "etcdserver: not leader");
/// Leadership changed while the request was in flight.
pub const LEADER_CHANGED: EtcdError = e(Code::Unavailable, "etcdserver: leader changed");
/// The cluster version does not support the request yet.
pub const NOT_CAPABLE: EtcdError = e(Code::FailedPrecondition, "etcdserver: not capable");
/// Server is shutting down.
pub const STOPPED: EtcdError = e(Code::Unavailable, "etcdserver: server stopped");
/// Proposal was not applied in time.
pub const TIMEOUT: EtcdError = e(Code::Unavailable, "etcdserver: request timed out");
/// Proposal timed out right after a leader loss.
pub const TIMEOUT_DUE_TO_LEADER_FAIL: EtcdError = e(
    Code::Unavailable,
    "etcdserver: request timed out, possibly due to previous leader failure",
);
/// Proposal timed out while peers were unreachable.
pub const TIMEOUT_DUE_TO_CONNECTION_LOST: EtcdError = e(
    Code::Unavailable,
    "etcdserver: request timed out, possibly due to connection lost",
);
/// Linearizable read timed out waiting for the applied index.
pub const TIMEOUT_WAIT_APPLIED_INDEX: EtcdError = e(
    Code::Unavailable,
    "etcdserver: request timed out, waiting for the applied index took too long",
);
/// Reconfiguration refused because the cluster is not healthy.
pub const UNHEALTHY: EtcdError = e(Code::Unavailable, "etcdserver: unhealthy cluster");
/// Requests refused while the CORRUPT alarm is raised.
pub const CORRUPT: EtcdError = e(Code::DataLoss, "etcdserver: corrupt cluster");
/// Learners serve only Status and serializable Range.
pub const NOT_SUPPORTED_FOR_LEARNER: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: rpc not supported for learner",
);
/// MoveLeader to a member that cannot become leader.
pub const BAD_LEADER_TRANSFEREE: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: bad leader transferee",
);

// ------------------------------------------------------------ downgrade

/// Downgrade target is not a `major.minor` version.
pub const WRONG_DOWNGRADE_VERSION_FORMAT: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: wrong downgrade target version format",
);
/// Short name of [`WRONG_DOWNGRADE_VERSION_FORMAT`].
pub const WRONG_DOWNGRADE_VERSION: EtcdError = WRONG_DOWNGRADE_VERSION_FORMAT;
/// Downgrade target is not exactly one minor version below.
pub const INVALID_DOWNGRADE_TARGET_VERSION: EtcdError = e(
    Code::InvalidArgument,
    "etcdserver: invalid downgrade target version",
);
/// Cluster version unknown while validating a downgrade.
pub const CLUSTER_VERSION_UNAVAILABLE: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: cluster version not found during downgrade",
);
/// Downgrade enable while one is already running.
pub const DOWNGRADE_IN_PROCESS: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: cluster has a downgrade job in progress",
);
/// No downgrade is running. etcd 3.7 only logs this for Downgrade(CANCEL)
/// and still answers success with the cluster version.
pub const NO_INFLIGHT_DOWNGRADE: EtcdError = e(
    Code::FailedPrecondition,
    "etcdserver: no inflight downgrade job",
);

// ------------------------------------------------------------ cancellation

/// A proposal was dropped by the server before being applied.
pub const CANCELED: EtcdError = e(Code::Cancelled, "etcdserver: request canceled");
/// Server-side deadline passed.
pub const DEADLINE_EXCEEDED: EtcdError = e(
    Code::DeadlineExceeded,
    "etcdserver: context deadline exceeded",
);
/// The request's own context was canceled (gRPC's generic text).
pub const CONTEXT_CANCELED: EtcdError = e(Code::Cancelled, "context canceled");
/// The request's own deadline passed (gRPC's generic text): the client's
/// `grpc-timeout`, or a proposal's request timeout while it waited for a
/// leader, as etcd passes on Go's context error.
pub const CONTEXT_DEADLINE_EXCEEDED: EtcdError =
    e(Code::DeadlineExceeded, "context deadline exceeded");

// ------------------------------------------------------------ untyped

/// Authenticate with a password for a user created with `no_password`.
pub const NO_PASSWORD_USER: EtcdError = e(
    Code::Unknown,
    "auth: authentication failed, password was given for no password user",
);
/// MoveLeader did not complete in time.
pub const TIMEOUT_LEADER_TRANSFER: EtcdError = e(
    Code::Unknown,
    "etcdserver: request timed out, leader transfer took too long",
);
/// RangeStream with a sort order or target other than the default.
pub const RANGE_STREAM_SORT_UNSUPPORTED: EtcdError = e(
    Code::Unimplemented,
    "RangeStream does not support custom sort orders",
);
/// RangeStream with min/max mod/create revision filters.
pub const RANGE_STREAM_FILTER_UNSUPPORTED: EtcdError = e(
    Code::Unimplemented,
    "RangeStream does not support revision filters",
);
/// Election Proclaim or Resign without a `leader`.
pub const ELECTION_MISSING_LEADER_KEY: EtcdError =
    e(Code::Unknown, "\"leader\" field must be provided");
/// Election Proclaim or Resign by a key that no longer leads.
pub const ELECTION_NOT_LEADER: EtcdError = e(Code::Unknown, "election: not leader");
/// Election Leader on an election nobody holds.
pub const ELECTION_NO_LEADER: EtcdError = e(Code::Unknown, "election: no leader");
/// Lock whose session lease vanished while waiting.
pub const LOCK_SESSION_EXPIRED: EtcdError = e(Code::Unknown, "mutex: session is expired");

/// Reasons set in `WatchResponse.cancel_reason`.
///
/// etcd formats some of them from a full gRPC status, hence the
/// `rpc error: code = ... desc = ...` prefix on the auth ones.
pub mod cancel_reason {
    /// Create request with a negative start revision. (A start revision
    /// below the compaction point cancels with `compact_revision` set and no
    /// reason.)
    pub const COMPACTED: &str = "etcdserver: mvcc: required revision has been compacted";
    /// Create request with a token that is invalid.
    pub const INVALID_AUTH_TOKEN: &str =
        "rpc error: code = Unauthenticated desc = etcdserver: invalid auth token";
    /// Create request with a token issued before the latest auth change.
    pub const AUTH_OLD_REVISION: &str =
        "rpc error: code = InvalidArgument desc = etcdserver: revision of auth store is old";
    /// Create request without a token while auth is enabled.
    pub const USER_EMPTY: &str =
        "rpc error: code = InvalidArgument desc = etcdserver: user name is empty";
    /// Create request for a range the user may not read.
    pub const PERMISSION_DENIED: &str =
        "rpc error: code = PermissionDenied desc = etcdserver: permission denied";
    /// Create request reusing a watch ID of the same stream.
    pub const DUPLICATE_WATCH_ID: &str = "mvcc: duplicate watch ID provided on the WatchStream";
    /// Create request whose range is empty (`range_end` <= `key`).
    pub const EMPTY_WATCHER_RANGE: &str = "mvcc: watcher range is empty";
}

/// Every entry of the table, in declaration order (aliases excluded).
pub const ALL: &[EtcdError] = &[
    EMPTY_KEY,
    KEY_NOT_FOUND,
    VALUE_PROVIDED,
    LEASE_PROVIDED,
    TOO_MANY_OPS,
    DUPLICATE_KEY,
    INVALID_CLIENT_API_VERSION,
    INVALID_SORT_OPTION,
    REQUEST_TOO_LARGE,
    COMPACTED,
    FUTURE_REV,
    NO_SPACE,
    LEASE_NOT_FOUND,
    LEASE_EXIST,
    LEASE_TTL_TOO_LARGE,
    WATCH_CANCELED,
    MEMBER_EXIST,
    PEER_URL_EXIST,
    MEMBER_NOT_ENOUGH_STARTED,
    MEMBER_BAD_URLS,
    MEMBER_NOT_FOUND,
    MEMBER_NOT_LEARNER,
    LEARNER_NOT_READY,
    TOO_MANY_LEARNERS,
    CLUSTER_ID_MISMATCH,
    TOO_MANY_REQUESTS,
    ROOT_USER_NOT_EXIST,
    ROOT_ROLE_NOT_EXIST,
    USER_ALREADY_EXIST,
    USER_EMPTY,
    USER_NOT_FOUND,
    ROLE_ALREADY_EXIST,
    ROLE_NOT_FOUND,
    ROLE_EMPTY,
    AUTH_FAILED,
    PERMISSION_NOT_GIVEN,
    PERMISSION_DENIED,
    ROLE_NOT_GRANTED,
    PERMISSION_NOT_GRANTED,
    AUTH_NOT_ENABLED,
    INVALID_AUTH_TOKEN,
    INVALID_AUTH_MGMT,
    AUTH_OLD_REVISION,
    NO_LEADER,
    NOT_LEADER,
    LEADER_CHANGED,
    NOT_CAPABLE,
    STOPPED,
    TIMEOUT,
    TIMEOUT_DUE_TO_LEADER_FAIL,
    TIMEOUT_DUE_TO_CONNECTION_LOST,
    TIMEOUT_WAIT_APPLIED_INDEX,
    UNHEALTHY,
    CORRUPT,
    NOT_SUPPORTED_FOR_LEARNER,
    BAD_LEADER_TRANSFEREE,
    WRONG_DOWNGRADE_VERSION_FORMAT,
    INVALID_DOWNGRADE_TARGET_VERSION,
    CLUSTER_VERSION_UNAVAILABLE,
    DOWNGRADE_IN_PROCESS,
    NO_INFLIGHT_DOWNGRADE,
    CANCELED,
    DEADLINE_EXCEEDED,
    CONTEXT_CANCELED,
    CONTEXT_DEADLINE_EXCEEDED,
    NO_PASSWORD_USER,
    TIMEOUT_LEADER_TRANSFER,
    RANGE_STREAM_SORT_UNSUPPORTED,
    RANGE_STREAM_FILTER_UNSUPPORTED,
    ELECTION_MISSING_LEADER_KEY,
    ELECTION_NOT_LEADER,
    ELECTION_NO_LEADER,
    LOCK_SESSION_EXPIRED,
];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_unique() {
        let mut seen = std::collections::HashSet::new();
        for err in ALL {
            assert!(
                seen.insert(err.message),
                "duplicate message {}",
                err.message
            );
        }
    }

    #[test]
    fn status_carries_code_and_text() {
        let s = COMPACTED.status();
        assert_eq!(s.code(), Code::OutOfRange);
        assert_eq!(
            s.message(),
            "etcdserver: mvcc: required revision has been compacted"
        );
        assert_eq!(EtcdError::from_message(s.message()), Some(COMPACTED));
        let s: tonic::Status = LEASE_NOT_FOUND.into();
        assert_eq!(s.code(), Code::NotFound);
        let s = LEASE_NOT_FOUND.untyped().status();
        assert_eq!(s.code(), Code::Unknown);
        assert_eq!(s.message(), LEASE_NOT_FOUND.message);
    }
}
