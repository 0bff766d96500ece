//! Cluster identity and membership, as etcd defines them.
//!
//! - [`member_id`] and [`cluster_id`] derive ids exactly as etcd does, so a
//!   kvik cluster bootstrapped with the same `--initial-cluster` and
//!   `--initial-cluster-token` reports the same ids as etcd would, and a
//!   MemberAdd in the same second with the same peer URLs gets the same id.
//! - [`MemberSet`] holds the members and the removed ids, and applies etcd's
//!   rules for MemberAdd, MemberRemove, MemberUpdate and MemberPromote with
//!   etcd's error texts. The `check_*` methods are the leader's checks before
//!   proposing a change; the `apply_*` methods validate again and apply a
//!   committed change, deterministically, so a replay fails the same way.
//! - [`MemberSet::encode`] / [`MemberSet::decode`] are a small versioned,
//!   checksummed binary form for persisting the set and for conf-change
//!   contexts. Decoding never panics on hostile input.
//!
//! Plain Rust types only: the protobuf mapping lives with the gRPC services.

use crate::wire::{Reader, WireError};
use std::collections::{BTreeMap, BTreeSet};

/// etcd's `--max-learners` default.
pub const MAX_LEARNERS_DEFAULT: usize = 1;

/// A learner may be promoted once its log matches at least this share of
/// the leader's (etcd's `readyPercentThreshold`).
pub const LEARNER_READY_SHARE: f64 = 0.9;

/// How long this member must have been connected to a peer for the peer to
/// count as healthy in a membership change's checks (etcd's
/// `HealthInterval`).
pub const HEALTH_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

/// This member's connections to its peers, as the strict reconfiguration
/// checks see them; the caller measures them (this module does no I/O and
/// reads no clock).
pub struct PeerHealth<'a> {
    /// This member, which counts as connected to itself.
    pub me: u64,
    /// Whether this member is connected to the peer now.
    pub connected: &'a dyn Fn(u64) -> bool,
    /// Whether it has been connected for [`HEALTH_INTERVAL`] or longer.
    pub healthy: &'a dyn Fn(u64) -> bool,
}

impl PeerHealth<'_> {
    /// How many of `ids` count as healthy (etcd's `numConnectedSince`).
    fn healthy_among(&self, ids: &[u64]) -> usize {
        ids.iter()
            .filter(|&&id| id == self.me || (self.healthy)(id))
            .count()
    }
}

/// Format version of [`MemberSet::encode`] and [`Member::encode`].
pub const ENCODING_VERSION: u8 = 1;

/// Longest member name or URL. Longer ones are refused when a member is
/// created or publishes its attributes, so every set can be encoded.
pub const TEXT_BYTES_MAX: usize = 4096;

/// Most URLs per member, peer or client; enforced like [`TEXT_BYTES_MAX`].
pub const URLS_PER_MEMBER_MAX: usize = 64;

/// Most members accepted by the decoder.
pub const MEMBERS_MAX: usize = 4096;

/// Most removed ids accepted by the decoder.
pub const REMOVED_IDS_MAX: usize = 1 << 20;

// ------------------------------------------------------------------ errors

/// Why a membership change is refused. `Display` gives the text etcd's
/// clients see for the gRPC error it maps to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MembershipError {
    /// The id belonged to a member that was removed; ids are never reused.
    /// etcd answers it as "member not found".
    IdRemoved,
    IdExists,
    IdNotFound,
    PeerUrlExists,
    MemberNotLearner,
    LearnerNotReady,
    TooManyLearners,
    NotEnoughStarted,
    /// This member has not been connected to enough voters for
    /// [`HEALTH_INTERVAL`] for the change to be safe.
    Unhealthy,
    /// A peer URL that etcd's `types.NewURLs` refuses; the detail is for logs.
    BadUrls(String),
    /// Bootstrap: two members of `--initial-cluster` hash to the same id.
    DuplicateId(u64),
    /// Bootstrap: a member hashes to id 0, which Raft reserves.
    ZeroId,
    /// A name or client URL list beyond [`TEXT_BYTES_MAX`] or
    /// [`URLS_PER_MEMBER_MAX`].
    AttributesTooLarge,
}

impl MembershipError {
    /// The text of the gRPC error etcd answers with.
    pub fn etcd_message(&self) -> &'static str {
        match self {
            MembershipError::IdRemoved | MembershipError::IdNotFound => {
                "etcdserver: member not found"
            }
            MembershipError::IdExists => "etcdserver: member ID already exist",
            MembershipError::PeerUrlExists => "etcdserver: Peer URLs already exists",
            MembershipError::MemberNotLearner => "etcdserver: can only promote a learner member",
            MembershipError::LearnerNotReady => {
                "etcdserver: can only promote a learner member which is in sync with leader"
            }
            MembershipError::TooManyLearners => "etcdserver: too many learner members in cluster",
            MembershipError::NotEnoughStarted => {
                "etcdserver: re-configuration failed due to not enough started members"
            }
            MembershipError::Unhealthy => "etcdserver: unhealthy cluster",
            MembershipError::BadUrls(_) => "etcdserver: given member URLs are invalid",
            MembershipError::DuplicateId(_) => "member exists with identical ID",
            MembershipError::ZeroId => "cannot use 0 as member id",
            MembershipError::AttributesTooLarge => "member name or client URLs too long",
        }
    }

    /// etcd's internal (logged) text, `membership: ...`, where there is one.
    pub fn internal_message(&self) -> Option<&'static str> {
        Some(match self {
            MembershipError::IdRemoved => "membership: ID removed",
            MembershipError::IdExists => "membership: ID exists",
            MembershipError::IdNotFound => "membership: ID not found",
            MembershipError::PeerUrlExists => "membership: peerURL exists",
            MembershipError::MemberNotLearner => "membership: can only promote a learner member",
            MembershipError::LearnerNotReady => {
                "membership: can only promote a learner member which is in sync with leader"
            }
            MembershipError::TooManyLearners => "membership: too many learner members in cluster",
            _ => return None,
        })
    }
}

impl std::fmt::Display for MembershipError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MembershipError::DuplicateId(id) => {
                write!(f, "member exists with identical ID {id:x}")
            }
            other => f.write_str(other.etcd_message()),
        }
    }
}

impl std::error::Error for MembershipError {}

/// Why bytes are not a valid encoded member or member set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    TooShort,
    BadChecksum,
    BadVersion(u8),
    Truncated,
    TooMany(&'static str),
    Invalid(&'static str),
}

impl std::fmt::Display for DecodeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DecodeError::TooShort => f.write_str("membership encoding: too short"),
            DecodeError::BadChecksum => f.write_str("membership encoding: checksum mismatch"),
            DecodeError::BadVersion(v) => {
                write!(f, "membership encoding: unknown version {v}")
            }
            DecodeError::Truncated => f.write_str("membership encoding: truncated"),
            DecodeError::TooMany(what) => write!(f, "membership encoding: too many {what}"),
            DecodeError::Invalid(why) => write!(f, "membership encoding: {why}"),
        }
    }
}

impl std::error::Error for DecodeError {}

impl From<WireError> for DecodeError {
    fn from(e: WireError) -> Self {
        match e {
            WireError::Truncated => DecodeError::Truncated,
            WireError::TooMany(what) => DecodeError::TooMany(what),
            WireError::Invalid(why) => DecodeError::Invalid(why),
        }
    }
}

// ------------------------------------------------------------------- ids

/// etcd's member id (`computeMemberId`): SHA-1 over the sorted peer URLs
/// joined without separator, then the cluster token, then — for MemberAdd —
/// the unix time in seconds as decimal text; the id is the first 8 bytes,
/// big-endian. Bootstrap members use `--initial-cluster-token` and no time;
/// etcd's MemberAdd uses an empty token and the current time.
///
/// `peer_urls` should already be normalized ([`normalize_urls`]).
pub fn member_id(peer_urls: &[String], cluster_token: &str, now_unix_secs: Option<i64>) -> u64 {
    let mut urls: Vec<&str> = peer_urls.iter().map(String::as_str).collect();
    urls.sort_unstable();
    let mut b = urls.concat().into_bytes();
    b.extend_from_slice(cluster_token.as_bytes());
    if let Some(now) = now_unix_secs {
        b.extend_from_slice(now.to_string().as_bytes());
    }
    let h = sha1(&b);
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// etcd's cluster id (`genID`): SHA-1 over the member ids sorted ascending,
/// 8 bytes big-endian each; the id is the first 8 bytes, big-endian.
pub fn cluster_id(member_ids: &[u64]) -> u64 {
    let mut ids = member_ids.to_vec();
    ids.sort_unstable();
    let b: Vec<u8> = ids.iter().flat_map(|id| id.to_be_bytes()).collect();
    let h = sha1(&b);
    u64::from_be_bytes(h[..8].try_into().expect("8 bytes"))
}

/// Checks and normalizes URLs as etcd's `types.NewURLs` does: surrounding
/// whitespace trimmed, the scheme lower-cased and one of http, https, unix
/// or unixs; http(s) URLs need `host:port` and no path. The result is
/// sorted. Unlike Go's parser, a query or fragment is refused too.
pub fn normalize_urls(urls: &[String]) -> Result<Vec<String>, MembershipError> {
    if urls.is_empty() {
        return Err(MembershipError::BadUrls("no valid URLs given".into()));
    }
    if urls.len() > URLS_PER_MEMBER_MAX {
        return Err(MembershipError::BadUrls(format!(
            "more than {URLS_PER_MEMBER_MAX} URLs"
        )));
    }
    let mut out = Vec::with_capacity(urls.len());
    for raw in urls {
        out.push(normalize_url(raw)?);
    }
    out.sort();
    Ok(out)
}

fn normalize_url(raw: &str) -> Result<String, MembershipError> {
    let s = raw.trim();
    let bad = |why: &str| MembershipError::BadUrls(format!("{why}: {s}"));
    if s.len() > TEXT_BYTES_MAX {
        return Err(bad("URL too long"));
    }
    let Some((scheme, rest)) = s.split_once("://") else {
        return Err(bad("URL scheme must be http, https, unix, or unixs"));
    };
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "http" | "https" => {
            if rest.contains(['/', '?', '#']) {
                return Err(bad("URL must not contain a path"));
            }
            let (host, port) = split_host_port(rest)
                .ok_or_else(|| bad("URL address does not have the form \"host:port\""))?;
            if !port.bytes().all(|c| c.is_ascii_digit()) {
                return Err(bad("invalid port"));
            }
            if host.contains(char::is_whitespace) || rest.contains('@') {
                return Err(bad("invalid host"));
            }
        }
        "unix" | "unixs" => {}
        _ => return Err(bad("URL scheme must be http, https, unix, or unixs")),
    }
    Ok(format!("{scheme}://{rest}"))
}

/// Go's `net.SplitHostPort` for the forms a peer URL can take.
pub(crate) fn split_host_port(hostport: &str) -> Option<(&str, &str)> {
    if let Some(rest) = hostport.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = after.strip_prefix(':')?;
        return Some((host, port));
    }
    let (host, port) = hostport.rsplit_once(':')?;
    if host.contains(':') {
        return None; // an IPv6 address needs brackets
    }
    Some((host, port))
}

// ---------------------------------------------------------------- member

/// One member, as etcd's `membership.Member`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Member {
    pub id: u64,
    /// Empty until the member has started and published its attributes.
    pub name: String,
    /// Normalized and sorted, or as a MemberUpdate gave them (etcd keeps
    /// those as given).
    pub peer_urls: Vec<String>,
    pub client_urls: Vec<String>,
    pub is_learner: bool,
}

impl Member {
    /// etcd's `NewMember`: the id is derived from the normalized peer URLs,
    /// the token and, for MemberAdd, the time. Pass `now_unix_secs: None`
    /// for bootstrap members.
    pub fn new(
        name: &str,
        peer_urls: &[String],
        cluster_token: &str,
        now_unix_secs: Option<i64>,
    ) -> Result<Member, MembershipError> {
        if name.len() > TEXT_BYTES_MAX {
            return Err(MembershipError::AttributesTooLarge);
        }
        let peer_urls = normalize_urls(peer_urls)?;
        Ok(Member {
            id: member_id(&peer_urls, cluster_token, now_unix_secs),
            name: name.to_string(),
            peer_urls,
            client_urls: Vec::new(),
            is_learner: false,
        })
    }

    /// etcd's `NewMemberAsLearner`.
    pub fn new_learner(
        name: &str,
        peer_urls: &[String],
        cluster_token: &str,
        now_unix_secs: Option<i64>,
    ) -> Result<Member, MembershipError> {
        let mut m = Member::new(name, peer_urls, cluster_token, now_unix_secs)?;
        m.is_learner = true;
        Ok(m)
    }

    /// The member a MemberAdd request creates: empty name and token, the
    /// request's time (etcd's `ClusterServer.MemberAdd`).
    pub fn for_member_add(
        peer_urls: &[String],
        is_learner: bool,
        now_unix_secs: i64,
    ) -> Result<Member, MembershipError> {
        let mut m = Member::new("", peer_urls, "", Some(now_unix_secs))?;
        m.is_learner = is_learner;
        Ok(m)
    }

    /// etcd counts a member as started once it has published its name.
    pub fn is_started(&self) -> bool {
        !self.name.is_empty()
    }

    /// Versioned, checksummed encoding of one member (a conf-change context).
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_VERSION];
        encode_member(self, &mut out);
        seal(out)
    }

    pub fn decode(bytes: &[u8]) -> Result<Member, DecodeError> {
        let body = unseal(bytes)?;
        let mut r = Reader::new(body);
        let m = decode_member(&mut r)?;
        r.finish()?;
        Ok(m)
    }
}

// ------------------------------------------------------------- member set

/// The members of one cluster and the ids removed from it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSet {
    cluster_id: u64,
    members: BTreeMap<u64, Member>,
    removed: BTreeSet<u64>,
    max_learners: usize,
}

impl MemberSet {
    /// An empty set with a known cluster id (a joining member learns its
    /// members from the log or a snapshot).
    pub fn new(cluster_id: u64) -> MemberSet {
        MemberSet {
            cluster_id,
            members: BTreeMap::new(),
            removed: BTreeSet::new(),
            max_learners: MAX_LEARNERS_DEFAULT,
        }
    }

    /// etcd's `NewClusterFromURLsMap`: one member per `--initial-cluster`
    /// name (repeated names have their URLs merged), ids from the token, and
    /// the cluster id from the member ids.
    pub fn bootstrap(
        cluster_token: &str,
        initial_cluster: &[(String, Vec<String>)],
    ) -> Result<MemberSet, MembershipError> {
        let mut by_name: BTreeMap<&str, Vec<String>> = BTreeMap::new();
        for (name, urls) in initial_cluster {
            by_name
                .entry(name.as_str())
                .or_default()
                .extend(urls.iter().cloned());
        }
        let mut set = MemberSet::new(0);
        for (name, urls) in by_name {
            let m = Member::new(name, &urls, cluster_token, None)?;
            if m.id == 0 {
                return Err(MembershipError::ZeroId);
            }
            if set.members.contains_key(&m.id) {
                return Err(MembershipError::DuplicateId(m.id));
            }
            set.members.insert(m.id, m);
        }
        let ids: Vec<u64> = set.members.keys().copied().collect();
        set.cluster_id = cluster_id(&ids);
        Ok(set)
    }

    /// etcd's `--max-learners`.
    pub fn with_max_learners(mut self, max_learners: usize) -> MemberSet {
        self.max_learners = max_learners;
        self
    }

    pub fn max_learners(&self) -> usize {
        self.max_learners
    }

    pub fn cluster_id(&self) -> u64 {
        self.cluster_id
    }

    /// Members in ascending id order, as etcd lists them.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    pub fn len(&self) -> usize {
        self.members.len()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    pub fn member(&self, id: u64) -> Option<&Member> {
        self.members.get(&id)
    }

    pub fn member_by_name(&self, name: &str) -> Option<&Member> {
        self.members.values().find(|m| m.name == name)
    }

    /// Ids of voting members, ascending.
    pub fn voting_ids(&self) -> Vec<u64> {
        self.members
            .values()
            .filter(|m| !m.is_learner)
            .map(|m| m.id)
            .collect()
    }

    pub fn is_removed(&self, id: u64) -> bool {
        self.removed.contains(&id)
    }

    pub fn removed_ids(&self) -> impl Iterator<Item = u64> + '_ {
        self.removed.iter().copied()
    }

    /// Every member's peer URLs, sorted.
    pub fn peer_urls(&self) -> Vec<String> {
        let mut urls: Vec<String> = self
            .members
            .values()
            .flat_map(|m| m.peer_urls.iter().cloned())
            .collect();
        urls.sort();
        urls
    }

    // ---------------------------------------------- proposer-side checks

    /// MemberAdd, before proposing: etcd's `mayAddMember` rules (with
    /// `strict`, etcd's default `--strict-reconfig-check`): enough started
    /// voters for a voter, and this member connected to every voter for
    /// [`HEALTH_INTERVAL`]; then the rules the change is validated with
    /// when applied.
    pub fn check_add(
        &self,
        m: &Member,
        strict: bool,
        peers: &PeerHealth<'_>,
    ) -> Result<(), MembershipError> {
        if strict && !m.is_learner && !self.ready_to_add_voting_member() {
            return Err(MembershipError::NotEnoughStarted);
        }
        if strict {
            let voters = self.voting_ids();
            if peers.healthy_among(&voters) != voters.len() {
                return Err(MembershipError::Unhealthy);
            }
        }
        self.validate_add(m)
    }

    /// MemberRemove, before proposing: etcd's `mayRemoveMember` rules
    /// (learners are exempt): enough started voters left, and, unless the
    /// member removed is one this member is not connected to (a member that
    /// is down is no part of the active quorum), a quorum of the voters
    /// left connected for [`HEALTH_INTERVAL`]; then the apply-time rules.
    pub fn check_remove(
        &self,
        id: u64,
        strict: bool,
        peers: &PeerHealth<'_>,
    ) -> Result<(), MembershipError> {
        if strict {
            let is_learner = self.members.get(&id).is_some_and(|m| m.is_learner);
            if !is_learner {
                if !self.ready_to_remove_voting_member(id) {
                    return Err(MembershipError::NotEnoughStarted);
                }
                // No connection is kept to an id that is not a member.
                let down =
                    id != peers.me && (!self.members.contains_key(&id) || !(peers.connected)(id));
                let voters = self.voting_ids();
                let active = peers.healthy_among(&voters);
                if !down && active.saturating_sub(1) < 1 + (voters.len().saturating_sub(1)) / 2 {
                    return Err(MembershipError::Unhealthy);
                }
            }
        }
        self.validate_remove(id)
    }

    /// MemberUpdate (peer URLs), before proposing and when applied.
    pub fn check_update(&self, id: u64, peer_urls: &[String]) -> Result<(), MembershipError> {
        self.validate_update(id, peer_urls).map(drop)
    }

    /// [`MemberSet::check_update`], giving the normalized URLs.
    fn validate_update(
        &self,
        id: u64,
        peer_urls: &[String],
    ) -> Result<Vec<String>, MembershipError> {
        if self.removed.contains(&id) {
            return Err(MembershipError::IdRemoved);
        }
        if !self.members.contains_key(&id) {
            return Err(MembershipError::IdNotFound);
        }
        let urls = normalize_urls(peer_urls)?;
        let taken = self
            .members
            .values()
            .filter(|m| m.id != id)
            .any(|m| m.peer_urls.iter().any(|u| urls.contains(u)));
        if taken {
            return Err(MembershipError::PeerUrlExists);
        }
        Ok(urls)
    }

    /// MemberPromote, before proposing. `progress` is the member's and the
    /// leader's Raft match index from the leader's progress tracker, `None`
    /// when the leader tracks no such member (etcd's `isLearnerReady`).
    pub fn check_promote(
        &self,
        id: u64,
        progress: Option<(u64, u64)>,
        strict: bool,
    ) -> Result<(), MembershipError> {
        let Some((member_match, leader_match)) = progress else {
            return Err(MembershipError::IdNotFound);
        };
        // Same float arithmetic as etcd: a leader at match 0 counts as ready.
        if (member_match as f64) / (leader_match as f64) < LEARNER_READY_SHARE {
            return Err(MembershipError::LearnerNotReady);
        }
        if strict && !self.ready_to_promote_member() {
            return Err(MembershipError::NotEnoughStarted);
        }
        self.validate_promote(id)
    }

    // ---------------------------------------------- apply-time validation

    /// etcd's `ValidateConfigurationChange` for an added member.
    pub fn validate_add(&self, m: &Member) -> Result<(), MembershipError> {
        if self.removed.contains(&m.id) {
            return Err(MembershipError::IdRemoved);
        }
        if self.members.contains_key(&m.id) {
            return Err(MembershipError::IdExists);
        }
        let taken = self
            .members
            .values()
            .any(|e| e.peer_urls.iter().any(|u| m.peer_urls.contains(u)));
        if taken {
            return Err(MembershipError::PeerUrlExists);
        }
        if m.is_learner {
            let learners = self.members.values().filter(|e| e.is_learner).count();
            if learners + 1 > self.max_learners {
                return Err(MembershipError::TooManyLearners);
            }
        }
        Ok(())
    }

    pub fn validate_remove(&self, id: u64) -> Result<(), MembershipError> {
        if self.removed.contains(&id) {
            return Err(MembershipError::IdRemoved);
        }
        if !self.members.contains_key(&id) {
            return Err(MembershipError::IdNotFound);
        }
        Ok(())
    }

    pub fn validate_promote(&self, id: u64) -> Result<(), MembershipError> {
        if self.removed.contains(&id) {
            return Err(MembershipError::IdRemoved);
        }
        match self.members.get(&id) {
            None => Err(MembershipError::IdNotFound),
            Some(m) if !m.is_learner => Err(MembershipError::MemberNotLearner),
            Some(_) => Ok(()),
        }
    }

    // ---------------------------------------------- apply committed changes

    pub fn apply_add(&mut self, m: Member) -> Result<(), MembershipError> {
        self.validate_add(&m)?;
        self.members.insert(m.id, m);
        Ok(())
    }

    /// Removes the member and remembers its id so that it is never reused.
    pub fn apply_remove(&mut self, id: u64) -> Result<Member, MembershipError> {
        self.validate_remove(id)?;
        self.removed.insert(id);
        Ok(self.members.remove(&id).expect("validated"))
    }

    pub fn apply_update_peer_urls(
        &mut self,
        id: u64,
        peer_urls: &[String],
    ) -> Result<(), MembershipError> {
        self.validate_update(id, peer_urls)?;
        // etcd keeps an update's URLs as given (MemberAdd's are sorted).
        self.members.get_mut(&id).expect("validated").peer_urls = peer_urls.to_vec();
        Ok(())
    }

    pub fn apply_promote(&mut self, id: u64) -> Result<(), MembershipError> {
        self.validate_promote(id)?;
        self.members.get_mut(&id).expect("validated").is_learner = false;
        Ok(())
    }

    /// A member published its name and client URLs (etcd's
    /// `UpdateAttributes`). Removed members are ignored, as etcd does.
    pub fn apply_attributes(
        &mut self,
        id: u64,
        name: &str,
        client_urls: &[String],
    ) -> Result<(), MembershipError> {
        if name.len() > TEXT_BYTES_MAX
            || client_urls.len() > URLS_PER_MEMBER_MAX
            || client_urls.iter().any(|u| u.len() > TEXT_BYTES_MAX)
        {
            return Err(MembershipError::AttributesTooLarge);
        }
        match self.members.get_mut(&id) {
            Some(m) => {
                m.name = name.to_string();
                m.client_urls = client_urls.to_vec();
                Ok(())
            }
            None if self.removed.contains(&id) => Ok(()),
            None => Err(MembershipError::IdNotFound),
        }
    }

    // ---------------------------------------------- etcd's quorum rules

    fn voting_started(&self, skip: Option<u64>) -> (usize, usize) {
        let mut members = 0;
        let mut started = 0;
        for m in self.members.values() {
            if m.is_learner || Some(m.id) == skip {
                continue;
            }
            members += 1;
            if m.is_started() {
                started += 1;
            }
        }
        (members, started)
    }

    /// etcd's `IsReadyToAddVotingMember`.
    pub fn ready_to_add_voting_member(&self) -> bool {
        let (members, started) = self.voting_started(None);
        let members = members + 1;
        if started == 1 && members == 2 {
            // Adding a second member to a one-member cluster (restore).
            return true;
        }
        started >= quorum(members)
    }

    /// etcd's `IsReadyToRemoveVotingMember`.
    pub fn ready_to_remove_voting_member(&self, id: u64) -> bool {
        let (members, started) = self.voting_started(Some(id));
        started >= quorum(members)
    }

    /// etcd's `IsReadyToPromoteMember`: the learner counts as a started
    /// voting member.
    pub fn ready_to_promote_member(&self) -> bool {
        let (members, started) = self.voting_started(None);
        started + 1 >= quorum(members + 1)
    }

    // ---------------------------------------------- encoding

    /// Layout (integers little-endian): version u8, cluster id u64, member
    /// count u32, the members in ascending id order, removed count u32, the
    /// removed ids ascending, then a crc32c of everything before it.
    /// A member: id u64, flags u8 (bit 0: learner), name, peer URLs, client
    /// URLs; a text is a u32 length and UTF-8 bytes, a list a u32 count.
    /// `max_learners` is configuration and is not encoded.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = vec![ENCODING_VERSION];
        out.extend_from_slice(&self.cluster_id.to_le_bytes());
        put_u32(&mut out, self.members.len());
        for m in self.members.values() {
            encode_member(m, &mut out);
        }
        put_u32(&mut out, self.removed.len());
        for id in &self.removed {
            out.extend_from_slice(&id.to_le_bytes());
        }
        seal(out)
    }

    /// Decodes [`MemberSet::encode`]'s output, with `max_learners` at its
    /// default. Only the canonical encoding is accepted.
    pub fn decode(bytes: &[u8]) -> Result<MemberSet, DecodeError> {
        let body = unseal(bytes)?;
        let mut r = Reader::new(body);
        let cluster_id = r.u64()?;
        let n = r.count(MEMBERS_MAX, MEMBER_BYTES_MIN, "members")?;
        let mut members = BTreeMap::new();
        let mut last = None;
        for _ in 0..n {
            let m = decode_member(&mut r)?;
            if last.is_some_and(|l| l >= m.id) {
                return Err(DecodeError::Invalid("member ids not ascending"));
            }
            last = Some(m.id);
            members.insert(m.id, m);
        }
        let n = r.count(REMOVED_IDS_MAX, 8, "removed ids")?;
        let mut removed = BTreeSet::new();
        let mut last = None;
        for _ in 0..n {
            let id = r.u64()?;
            if last.is_some_and(|l| l >= id) {
                return Err(DecodeError::Invalid("removed ids not ascending"));
            }
            if members.contains_key(&id) {
                return Err(DecodeError::Invalid("a member id is also removed"));
            }
            last = Some(id);
            removed.insert(id);
        }
        r.finish()?;
        Ok(MemberSet {
            cluster_id,
            members,
            removed,
            max_learners: MAX_LEARNERS_DEFAULT,
        })
    }
}

/// Raft's majority of `voters`.
fn quorum(voters: usize) -> usize {
    voters / 2 + 1
}

/// id, flags, three empty length fields.
const MEMBER_BYTES_MIN: usize = 8 + 1 + 4 * 3;
const FLAG_LEARNER: u8 = 1;
const CHECKSUM_BYTES: usize = 4;

fn put_u32(out: &mut Vec<u8>, n: usize) {
    let n = u32::try_from(n).expect("count fits in u32");
    out.extend_from_slice(&n.to_le_bytes());
}

fn put_text(out: &mut Vec<u8>, s: &str) {
    put_u32(out, s.len());
    out.extend_from_slice(s.as_bytes());
}

fn encode_member(m: &Member, out: &mut Vec<u8>) {
    out.extend_from_slice(&m.id.to_le_bytes());
    out.push(if m.is_learner { FLAG_LEARNER } else { 0 });
    put_text(out, &m.name);
    for list in [&m.peer_urls, &m.client_urls] {
        put_u32(out, list.len());
        for u in list {
            put_text(out, u);
        }
    }
}

fn decode_member(r: &mut Reader<'_>) -> Result<Member, DecodeError> {
    let id = r.u64()?;
    if id == 0 {
        return Err(DecodeError::Invalid("member id 0"));
    }
    let flags = r.u8()?;
    if flags & !FLAG_LEARNER != 0 {
        return Err(DecodeError::Invalid("unknown member flags"));
    }
    let name = r.text(TEXT_BYTES_MAX)?;
    let mut lists = [Vec::new(), Vec::new()];
    for list in &mut lists {
        let n = r.count(URLS_PER_MEMBER_MAX, 4, "URLs")?;
        for _ in 0..n {
            list.push(r.text(TEXT_BYTES_MAX)?);
        }
    }
    let [peer_urls, client_urls] = lists;
    Ok(Member {
        id,
        name,
        peer_urls,
        client_urls,
        is_learner: flags & FLAG_LEARNER != 0,
    })
}

/// Appends the crc32c of `out`.
fn seal(mut out: Vec<u8>) -> Vec<u8> {
    let crc = crc32c::crc32c(&out);
    out.extend_from_slice(&crc.to_le_bytes());
    out
}

/// Checks the checksum and the version; returns the body after the version.
fn unseal(bytes: &[u8]) -> Result<&[u8], DecodeError> {
    if bytes.len() < 1 + CHECKSUM_BYTES {
        return Err(DecodeError::TooShort);
    }
    let (data, crc) = bytes.split_at(bytes.len() - CHECKSUM_BYTES);
    let want = u32::from_le_bytes(crc.try_into().expect("4 bytes"));
    if crc32c::crc32c(data) != want {
        return Err(DecodeError::BadChecksum);
    }
    if data[0] != ENCODING_VERSION {
        return Err(DecodeError::BadVersion(data[0]));
    }
    Ok(&data[1..])
}

// ------------------------------------------------------------------ sha1

/// SHA-1 (FIPS 180-4). Used only to derive etcd-compatible ids, never for
/// security.
fn sha1(data: &[u8]) -> [u8; 20] {
    let mut h: [u32; 5] = [
        0x6745_2301,
        0xEFCD_AB89,
        0x98BA_DCFE,
        0x1032_5476,
        0xC3D2_E1F0,
    ];
    let bit_len = (data.len() as u64).wrapping_mul(8);
    let mut msg = data.to_vec();
    msg.push(0x80);
    while msg.len() % 64 != 56 {
        msg.push(0);
    }
    msg.extend_from_slice(&bit_len.to_be_bytes());
    let mut w = [0u32; 80];
    for block in msg.chunks_exact(64) {
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes(word.try_into().expect("4 bytes"));
        }
        for i in 16..80 {
            w[i] = (w[i - 3] ^ w[i - 8] ^ w[i - 14] ^ w[i - 16]).rotate_left(1);
        }
        let [mut a, mut b, mut c, mut d, mut e] = h;
        for (i, wi) in w.iter().enumerate() {
            let (f, k) = match i {
                0..=19 => ((b & c) | (!b & d), 0x5A82_7999),
                20..=39 => (b ^ c ^ d, 0x6ED9_EBA1),
                40..=59 => ((b & c) | (b & d) | (c & d), 0x8F1B_BCDC),
                _ => (b ^ c ^ d, 0xCA62_C1D6),
            };
            let t = a
                .rotate_left(5)
                .wrapping_add(f)
                .wrapping_add(e)
                .wrapping_add(k)
                .wrapping_add(*wi);
            e = d;
            d = c;
            c = b.rotate_left(30);
            b = a;
            a = t;
        }
        for (x, y) in h.iter_mut().zip([a, b, c, d, e]) {
            *x = x.wrapping_add(y);
        }
    }
    let mut out = [0u8; 20];
    for (chunk, x) in out.chunks_exact_mut(4).zip(h) {
        chunk.copy_from_slice(&x.to_be_bytes());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn s(v: &[&str]) -> Vec<String> {
        v.iter().map(|x| x.to_string()).collect()
    }

    /// Connections as a member connected to every peer for long enough.
    fn everyone_healthy() -> PeerHealth<'static> {
        PeerHealth {
            me: 0,
            connected: &|_| true,
            healthy: &|_| true,
        }
    }

    #[test]
    fn reconfiguration_waits_for_healthy_connections_like_etcd() {
        let peers = [
            ("a".to_string(), s(&["http://127.0.0.1:23801"])),
            ("b".to_string(), s(&["http://127.0.0.1:23802"])),
            ("c".to_string(), s(&["http://127.0.0.1:23803"])),
        ];
        let set = MemberSet::bootstrap("T", &peers).unwrap();
        let ids = set.voting_ids();
        let (me, up, down) = (ids[0], ids[1], ids[2]);
        // `down` is not connected at all; `up` is healthy.
        let one_down = PeerHealth {
            me,
            connected: &|id| id == up,
            healthy: &|id| id == up,
        };
        let learner = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), true, 1).unwrap();
        assert_eq!(
            set.check_add(&learner, true, &one_down),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(set.check_add(&learner, false, &one_down), Ok(()));
        // Removing a live voter would leave one active of two: refused.
        assert_eq!(
            set.check_remove(up, true, &one_down),
            Err(MembershipError::Unhealthy)
        );
        // A member that is down is no part of the active quorum.
        assert_eq!(set.check_remove(down, true, &one_down), Ok(()));
        // Connected, but for less than the health interval: not yet healthy.
        let fresh = PeerHealth {
            me,
            connected: &|_| true,
            healthy: &|_| false,
        };
        assert_eq!(
            set.check_add(&learner, true, &fresh),
            Err(MembershipError::Unhealthy)
        );
        assert_eq!(
            set.check_remove(up, true, &fresh),
            Err(MembershipError::Unhealthy)
        );
        let all = PeerHealth {
            me,
            connected: &|_| true,
            healthy: &|_| true,
        };
        assert_eq!(set.check_add(&learner, true, &all), Ok(()));
        assert_eq!(set.check_remove(up, true, &all), Ok(()));
    }

    fn hex(b: &[u8]) -> String {
        b.iter().map(|x| format!("{x:02x}")).collect()
    }

    #[test]
    fn sha1_matches_fips_vectors() {
        assert_eq!(hex(&sha1(b"")), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(
            hex(&sha1(b"abc")),
            "a9993e364706816aba3e25717850c26c9cd0d89d"
        );
        assert_eq!(
            hex(&sha1(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1"
        );
        assert_eq!(
            hex(&sha1(&vec![b'a'; 1_000_000])),
            "34aa973cd4c4daa4f61eeb2bdbad27316534016f"
        );
        // Lengths around the padding boundary.
        assert_eq!(
            hex(&sha1(&[b'a'; 55])),
            "c1c8bbdc22796e28c0e15163d20899b65621d65a"
        );
        assert_eq!(
            hex(&sha1(&[b'a'; 64])),
            "0098ba824b5c16427bd7a1122a5a442a25ec644d"
        );
    }

    /// Ids read back from etcd 3.7.2 with `etcdctl member list -w json`.
    #[test]
    fn ids_match_etcd_single_member() {
        // --name a --initial-cluster a=http://127.0.0.1:23801
        // --initial-cluster-token T
        let set =
            MemberSet::bootstrap("T", &[("a".into(), s(&["http://127.0.0.1:23801"]))]).unwrap();
        let a = set.member_by_name("a").unwrap();
        assert_eq!(a.id, 11450483429361049818);
        assert_eq!(set.cluster_id(), 16707958427550287532);
    }

    #[test]
    fn ids_match_etcd_three_members() {
        // --initial-cluster a=http://127.0.0.1:23821,a=http://127.0.0.1:23820,
        // b=http://127.0.0.1:23822,c=http://127.0.0.1:23823
        // --initial-cluster-token tok-3
        let set = MemberSet::bootstrap(
            "tok-3",
            &[
                ("a".into(), s(&["http://127.0.0.1:23821"])),
                ("a".into(), s(&["http://127.0.0.1:23820"])),
                ("b".into(), s(&["http://127.0.0.1:23822"])),
                ("c".into(), s(&["http://127.0.0.1:23823"])),
            ],
        )
        .unwrap();
        let id = |n| set.member_by_name(n).unwrap().id;
        assert_eq!(id("a"), 653948705081796131);
        assert_eq!(id("b"), 12622676963777245431);
        assert_eq!(id("c"), 1142571991792441683);
        assert_eq!(set.cluster_id(), 6478430599219012977);
        assert_eq!(
            set.member(653948705081796131).unwrap().peer_urls,
            s(&["http://127.0.0.1:23820", "http://127.0.0.1:23821"])
        );
        // etcd lists members by ascending id.
        let listed: Vec<&str> = set.members().map(|m| m.name.as_str()).collect();
        assert_eq!(listed, ["a", "c", "b"]);
    }

    #[test]
    fn member_add_ids_match_etcd() {
        // `etcdctl member add l1 --learner --peer-urls=http://127.0.0.1:23811`
        // answered at unix second 1795234503.
        let m = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), true, 1795234503).unwrap();
        assert_eq!(m.id, 3820556227698692463);
        assert!(m.is_learner);
        assert_eq!(m.name, "");
        // `member add b --peer-urls=http://127.0.0.1:23802` at 1795234506.
        let m = Member::for_member_add(&s(&["http://127.0.0.1:23802"]), false, 1795234506).unwrap();
        assert_eq!(m.id, 9685245189064281193);
    }

    #[test]
    fn same_urls_in_the_same_second_collide_like_etcd() {
        // etcd answered a second add of the same URL within the same second
        // with "member ID already exist", not "Peer URLs already exists".
        let mut set =
            MemberSet::bootstrap("T", &[("a".into(), s(&["http://127.0.0.1:23801"]))]).unwrap();
        let l1 = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), true, 7).unwrap();
        set.check_add(&l1, true, &everyone_healthy()).unwrap();
        set.apply_add(l1).unwrap();
        let again = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), false, 7).unwrap();
        let err = set
            .check_add(&again, true, &everyone_healthy())
            .unwrap_err();
        assert_eq!(err.to_string(), "etcdserver: member ID already exist");
        let later = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), false, 8).unwrap();
        assert_eq!(
            set.check_add(&later, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: Peer URLs already exists"
        );
    }

    /// The sequence run against etcd 3.7.2, with the texts it answered.
    #[test]
    fn reconfiguration_rules_match_etcd_session() {
        let mut set =
            MemberSet::bootstrap("T", &[("a".into(), s(&["http://127.0.0.1:23801"]))]).unwrap();
        let a = 11450483429361049818;
        let l1 = Member::for_member_add(&s(&["http://127.0.0.1:23811"]), true, 1795234503).unwrap();
        let l1_id = l1.id;
        set.check_add(&l1, true, &everyone_healthy()).unwrap();
        set.apply_add(l1).unwrap();

        let l2 = Member::for_member_add(&s(&["http://127.0.0.1:23812"]), true, 1795234503).unwrap();
        assert_eq!(
            set.check_add(&l2, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: too many learner members in cluster"
        );
        // Promote the voting member a: in the leader's progress at full match.
        assert_eq!(
            set.check_promote(a, Some((10, 10)), true)
                .unwrap_err()
                .to_string(),
            "etcdserver: can only promote a learner member"
        );
        // Promote the learner that never started: match 0.
        assert_eq!(
            set.check_promote(l1_id, Some((0, 10)), true)
                .unwrap_err()
                .to_string(),
            "etcdserver: can only promote a learner member which is in sync with leader"
        );
        assert_eq!(
            set.check_remove(0x1234, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: member not found"
        );
        assert_eq!(
            set.check_update(0x1234, &s(&["http://127.0.0.1:29999"]))
                .unwrap_err()
                .to_string(),
            "etcdserver: member not found"
        );
        assert_eq!(
            set.check_update(l1_id, &s(&["http://127.0.0.1:23801"]))
                .unwrap_err()
                .to_string(),
            "etcdserver: Peer URLs already exists"
        );
        let y = Member::for_member_add(&s(&["http://127.0.0.1:23801"]), false, 1795234505).unwrap();
        assert_eq!(
            set.check_add(&y, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: Peer URLs already exists"
        );
        set.check_remove(l1_id, true, &everyone_healthy()).unwrap();
        set.apply_remove(l1_id).unwrap();
        let err = set
            .check_remove(l1_id, true, &everyone_healthy())
            .unwrap_err();
        assert_eq!(err, MembershipError::IdRemoved);
        assert_eq!(err.to_string(), "etcdserver: member not found");

        let b = Member::for_member_add(&s(&["http://127.0.0.1:23802"]), false, 1795234506).unwrap();
        set.check_add(&b, true, &everyone_healthy()).unwrap();
        set.apply_add(b).unwrap();
        let c = Member::for_member_add(&s(&["http://127.0.0.1:23803"]), false, 1795234506).unwrap();
        assert_eq!(
            set.check_add(&c, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: re-configuration failed due to not enough started members"
        );
        assert_eq!(
            set.check_remove(a, true, &everyone_healthy())
                .unwrap_err()
                .to_string(),
            "etcdserver: re-configuration failed due to not enough started members"
        );
        // Without the strict check only the structural rules apply.
        set.check_add(&c, false, &everyone_healthy()).unwrap();
        // The removed id can never come back.
        let mut back = Member::for_member_add(&s(&["http://127.0.0.1:23899"]), false, 1).unwrap();
        back.id = l1_id;
        assert_eq!(set.apply_add(back), Err(MembershipError::IdRemoved));
        let ids: Vec<u64> = set.members().map(|m| m.id).collect();
        assert_eq!(ids, [9685245189064281193, a]);
    }

    #[test]
    fn promote_and_update_apply() {
        let mut set =
            MemberSet::bootstrap("T", &[("a".into(), s(&["http://10.0.0.1:2380"]))]).unwrap();
        let l = Member::for_member_add(&s(&["http://10.0.0.2:2380"]), true, 1).unwrap();
        let id = l.id;
        set.apply_add(l).unwrap();
        set.check_promote(id, Some((9, 10)), true).unwrap();
        assert_eq!(
            set.check_promote(id, None, true),
            Err(MembershipError::IdNotFound)
        );
        set.apply_promote(id).unwrap();
        assert!(!set.member(id).unwrap().is_learner);
        assert_eq!(
            set.apply_promote(id),
            Err(MembershipError::MemberNotLearner)
        );
        // An update's URLs are checked, then kept as given (as etcd does).
        set.apply_update_peer_urls(id, &s(&[" HTTP://10.0.0.3:2380"]))
            .unwrap();
        assert_eq!(
            set.member(id).unwrap().peer_urls,
            s(&[" HTTP://10.0.0.3:2380"])
        );
        set.apply_attributes(id, "b", &s(&["http://10.0.0.3:2379"]))
            .unwrap();
        assert!(set.member(id).unwrap().is_started());
        assert_eq!(
            set.apply_attributes(id, &"n".repeat(TEXT_BYTES_MAX + 1), &[]),
            Err(MembershipError::AttributesTooLarge)
        );
        assert_eq!(set.voting_ids().len(), 2);
    }

    #[test]
    fn quorum_rules_follow_etcd() {
        let mut set = MemberSet::bootstrap(
            "t",
            &[
                ("a".into(), s(&["http://h1:1"])),
                ("b".into(), s(&["http://h2:1"])),
                ("c".into(), s(&["http://h3:1"])),
            ],
        )
        .unwrap();
        assert!(set.ready_to_add_voting_member());
        // Two members added but never started: 5 voting, 3 started.
        for (i, u) in ["http://h4:1", "http://h5:1"].iter().enumerate() {
            let m = Member::for_member_add(&s(&[u]), false, i as i64).unwrap();
            set.apply_add(m).unwrap();
        }
        // A sixth voting member would need 4 started of 6.
        assert!(!set.ready_to_add_voting_member());
        let a = set.member_by_name("a").unwrap().id;
        // Removing a started member leaves 2 started of 4.
        assert!(!set.ready_to_remove_voting_member(a));
        // A learner add is not quorum-checked.
        let l = Member::for_member_add(&s(&["http://h6:1"]), true, 0).unwrap();
        set.check_add(&l, true, &everyone_healthy()).unwrap();
        // Promote: 6 voting members with the learner, 4 started.
        assert!(set.ready_to_promote_member());
    }

    #[test]
    fn urls_are_checked_like_etcd() {
        for bad in [
            "foo",
            "ftp://h:1",
            "http://h",
            "http://h:1/path",
            "http://h:1/",
            "http://::1:2380",
            "http://h:x",
        ] {
            let err = normalize_urls(&s(&[bad])).unwrap_err();
            assert_eq!(err.to_string(), "etcdserver: given member URLs are invalid");
        }
        assert!(normalize_urls(&[]).is_err());
        let long = format!("http://{}:1", "h".repeat(TEXT_BYTES_MAX));
        assert!(normalize_urls(&[long]).is_err());
        let many: Vec<String> = (0..=URLS_PER_MEMBER_MAX)
            .map(|i| format!("http://h:{i}"))
            .collect();
        assert!(normalize_urls(&many).is_err());
        assert_eq!(
            normalize_urls(&s(&[" HTTP://b:2 ", "https://[::1]:2380", "unix://x"])).unwrap(),
            s(&["http://b:2", "https://[::1]:2380", "unix://x"])
        );
        // The id hashes the normalized, sorted URLs.
        let m1 = Member::new("", &s(&["http://b:2", "http://a:1"]), "t", None).unwrap();
        let m2 = Member::new("", &s(&[" http://a:1", "HTTP://b:2"]), "t", None).unwrap();
        assert_eq!(m1.id, m2.id);
        assert_eq!(
            m1.id,
            member_id(&s(&["http://a:1", "http://b:2"]), "t", None)
        );
    }

    #[test]
    fn bootstrap_refuses_duplicate_ids() {
        let err = MemberSet::bootstrap(
            "t",
            &[
                ("a".into(), s(&["http://h:1"])),
                ("b".into(), s(&["http://h:1"])),
            ],
        )
        .unwrap_err();
        assert!(matches!(err, MembershipError::DuplicateId(_)));
        assert!(err
            .to_string()
            .starts_with("member exists with identical ID"));
    }

    fn sample_set() -> MemberSet {
        let mut set = MemberSet::bootstrap(
            "tok",
            &[
                (
                    "a".into(),
                    s(&["http://127.0.0.1:2380", "http://10.0.0.1:2380"]),
                ),
                ("b".into(), s(&["http://127.0.0.2:2380"])),
            ],
        )
        .unwrap();
        let a = set.member_by_name("a").unwrap().id;
        set.apply_attributes(a, "a", &s(&["http://127.0.0.1:2379"]))
            .unwrap();
        let l = Member::for_member_add(&s(&["http://127.0.0.3:2380"]), true, 42).unwrap();
        let lid = l.id;
        set.apply_add(l).unwrap();
        set.apply_remove(lid).unwrap();
        let l = Member::for_member_add(&s(&["http://127.0.0.4:2380"]), true, 43).unwrap();
        set.apply_add(l).unwrap();
        set
    }

    #[test]
    fn encoding_round_trips() {
        let set = sample_set();
        let bytes = set.encode();
        assert_eq!(MemberSet::decode(&bytes).unwrap(), set);
        let empty = MemberSet::new(7);
        assert_eq!(MemberSet::decode(&empty.encode()).unwrap(), empty);
        for m in set.members() {
            assert_eq!(&Member::decode(&m.encode()).unwrap(), m);
        }
    }

    #[test]
    fn encoding_refuses_damage() {
        let bytes = sample_set().encode();
        for cut in 0..bytes.len() {
            assert!(MemberSet::decode(&bytes[..cut]).is_err(), "cut at {cut}");
        }
        let mut flipped = bytes.clone();
        flipped[10] ^= 0x40;
        assert_eq!(MemberSet::decode(&flipped), Err(DecodeError::BadChecksum));
        let mut v2 = bytes[..bytes.len() - 4].to_vec();
        v2[0] = 2;
        assert_eq!(
            MemberSet::decode(&seal(v2)),
            Err(DecodeError::BadVersion(2))
        );
        let mut trailing = bytes[..bytes.len() - 4].to_vec();
        trailing.push(0);
        assert!(matches!(
            MemberSet::decode(&seal(trailing)),
            Err(DecodeError::Invalid(_))
        ));
        // A huge count is refused before anything is allocated.
        let mut huge = vec![ENCODING_VERSION];
        huge.extend_from_slice(&1u64.to_le_bytes());
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(
            MemberSet::decode(&seal(huge)),
            Err(DecodeError::TooMany("members"))
        );
    }

    /// Random bytes, and valid encodings with damaged bodies and a repaired
    /// checksum (so the parser, not the checksum, sees the damage): never a
    /// panic, and whatever decodes re-encodes to the same bytes.
    #[test]
    fn decoding_fuzz_never_panics() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x6b76_696b);
        let valid = sample_set().encode();
        let member = sample_set().members().next().unwrap().encode();
        let mut decoded = 0;
        for i in 0..200_000 {
            let bytes: Vec<u8> = match i % 3 {
                0 => {
                    let n = rng.random_range(0..96);
                    (0..n).map(|_| rng.random()).collect()
                }
                _ => {
                    let src = if i % 3 == 1 { &valid } else { &member };
                    let mut body = src[..src.len() - 4].to_vec();
                    for _ in 0..rng.random_range(1..4) {
                        match rng.random_range(0..3) {
                            0 if !body.is_empty() => {
                                let at = rng.random_range(0..body.len());
                                body[at] = rng.random();
                            }
                            1 => {
                                let at = rng.random_range(0..=body.len());
                                body.truncate(at);
                            }
                            _ => {
                                let at = rng.random_range(0..=body.len());
                                body.insert(at, rng.random());
                            }
                        }
                    }
                    seal(body)
                }
            };
            if let Ok(set) = MemberSet::decode(&bytes) {
                assert_eq!(set.encode(), bytes);
                decoded += 1;
            }
            if let Ok(m) = Member::decode(&bytes) {
                assert_eq!(m.encode(), bytes);
            }
        }
        // Byte changes inside names and URLs still decode.
        assert!(decoded > 0);
    }
}
