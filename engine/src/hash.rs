//! etcd's key-value hashes (`server/storage/mvcc/hash.go`), bit for bit.
//!
//! etcd hashes its bbolt `key` bucket: CRC-32C over the bucket name, then for
//! each stored record in revision order its bbolt key and value. The bbolt key
//! is `main` (8 bytes big endian), `_`, `sub` (8 bytes big endian), plus `t`
//! for a tombstone; the value is the protobuf `mvccpb.KeyValue`, which for a
//! tombstone holds only the key. Both are rebuilt here from the records.

use std::collections::BTreeSet;

use crate::store::{Entry, Record, Revision};

/// etcd's bbolt bucket holding the revisions (`schema.Key`).
pub(crate) const KEY_BUCKET_NAME: &[u8] = b"key";

/// Length of a bbolt revision key without the tombstone mark, in bytes.
const REV_KEY_BYTES: usize = 8 + 1 + 8;

/// etcd's bbolt key for a record.
pub(crate) fn bucket_key(rev: Revision, tombstone: bool) -> Vec<u8> {
    let mut k = Vec::with_capacity(REV_KEY_BYTES + 1);
    k.extend_from_slice(&(rev.main as u64).to_be_bytes());
    k.push(b'_');
    k.extend_from_slice(&(rev.sub as u64).to_be_bytes());
    if tombstone {
        k.push(b't');
    }
    k
}

fn put_varint(out: &mut Vec<u8>, mut v: u64) {
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

fn put_bytes_field(out: &mut Vec<u8>, field: u8, b: &[u8]) {
    if !b.is_empty() {
        out.push(field << 3 | 2);
        put_varint(out, b.len() as u64);
        out.extend_from_slice(b);
    }
}

fn put_int64_field(out: &mut Vec<u8>, field: u8, v: i64) {
    if v != 0 {
        out.push(field << 3);
        // proto3 int64: two's complement as a 64-bit varint.
        put_varint(out, v as u64);
    }
}

/// etcd's bbolt value for a record of `key`: protobuf `mvccpb.KeyValue`
/// (key=1, create_revision=2, mod_revision=3, version=4, value=5, lease=6;
/// zero values omitted). A tombstone is stored as `KeyValue{key}` only.
pub(crate) fn bucket_value(key: &[u8], record: &Record) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes_field(&mut out, 1, key);
    if let Entry::Put {
        create_revision,
        version,
        value,
        lease,
    } = &record.entry
    {
        put_int64_field(&mut out, 2, *create_revision);
        put_int64_field(&mut out, 3, record.rev.main);
        put_int64_field(&mut out, 4, *version);
        put_bytes_field(&mut out, 5, value);
        put_int64_field(&mut out, 6, *lease);
    }
    out
}

/// etcd's `kvHasher`: which records a hash covers and the running CRC.
pub(crate) struct KvHasher<'k> {
    hasher: u32,
    compact_revision: i64,
    revision: i64,
    keep: &'k BTreeSet<Revision>,
}

impl<'k> KvHasher<'k> {
    pub fn new(compact_revision: i64, revision: i64, keep: &'k BTreeSet<Revision>) -> KvHasher<'k> {
        KvHasher {
            hasher: crc32c::crc32c(KEY_BUCKET_NAME),
            compact_revision,
            revision,
            keep,
        }
    }

    /// etcd `kvHasher.WriteKeyValue`; records must come in revision order.
    pub fn write(&mut self, key: &[u8], record: &Record) {
        let rev = record.rev;
        // upper bound: revision + 1 (exclusive)
        if rev.main > self.revision {
            return;
        }
        // Below the compaction, only what a compaction at `revision` keeps
        // counts, unless nothing would be kept at all.
        if rev.main <= self.compact_revision && !self.keep.is_empty() && !self.keep.contains(&rev) {
            return;
        }
        // A tombstone at the compact revision is skipped whether or not the
        // compaction kept it (etcd versions differ on keeping it).
        if rev.main == self.compact_revision && record.is_tombstone() {
            return;
        }
        self.hasher = crc32c::crc32c_append(self.hasher, &bucket_key(rev, record.is_tombstone()));
        self.hasher = crc32c::crc32c_append(self.hasher, &bucket_value(key, record));
    }

    pub fn sum(&self) -> u32 {
        self.hasher
    }
}

/// CRC-32C over the bucket name and every record, unfiltered: the `key`
/// bucket's share of etcd's whole-database `Maintenance.Hash`.
pub(crate) fn hash_all<'a>(records: impl Iterator<Item = (&'a [u8], &'a Record)>) -> u32 {
    let mut h = crc32c::crc32c(KEY_BUCKET_NAME);
    for (k, r) in records {
        h = crc32c::crc32c_append(h, &bucket_key(r.rev, r.is_tombstone()));
        h = crc32c::crc32c_append(h, &bucket_value(k, r));
    }
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_bucket_hash_is_etcds() {
        // etcd 3.7.2 `HashKV` on a fresh member answers 1084519789.
        let keep = BTreeSet::new();
        assert_eq!(KvHasher::new(-1, 1, &keep).sum(), 1084519789);
    }

    #[test]
    fn protobuf_encoding() {
        let r = Record {
            rev: Revision { main: 2, sub: 0 },
            entry: Entry::Put {
                create_revision: 2,
                version: 1,
                value: b"v1".to_vec(),
                lease: 777,
            },
        };
        assert_eq!(
            bucket_value(b"a", &r),
            [0x0a, 1, b'a', 0x10, 2, 0x18, 2, 0x20, 1, 0x2a, 2, b'v', b'1', 0x30, 0x89, 0x06]
        );
        let t = Record {
            rev: Revision { main: 3, sub: 1 },
            entry: Entry::Tombstone,
        };
        assert_eq!(bucket_value(b"a", &t), [0x0a, 1, b'a']);
        assert_eq!(
            bucket_key(t.rev, true),
            [0, 0, 0, 0, 0, 0, 0, 3, b'_', 0, 0, 0, 0, 0, 0, 0, 1, b't']
        );
        let mut v = Vec::new();
        put_int64_field(&mut v, 6, -1);
        assert_eq!(
            v,
            [0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }
}
