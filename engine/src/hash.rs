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
pub(crate) fn bucket_value(key: &[u8], main: i64, entry: &Entry, value: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    put_bytes_field(&mut out, 1, key);
    if let Entry::Put {
        create_revision,
        version,
        lease,
    } = entry
    {
        put_int64_field(&mut out, 2, *create_revision);
        put_int64_field(&mut out, 3, main);
        put_int64_field(&mut out, 4, *version);
        put_bytes_field(&mut out, 5, value);
        put_int64_field(&mut out, 6, *lease);
    }
    out
}

/// crc32c of [`bucket_value`], kept with each record so that hashes combine
/// it instead of reading the value back.
pub(crate) fn bucket_value_crc(key: &[u8], main: i64, entry: &Entry, value: &[u8]) -> u32 {
    crc32c::crc32c(&bucket_value(key, main, entry, value))
}

fn varint_len(v: u64) -> usize {
    (64 - (v | 1).leading_zeros() as usize).div_ceil(7)
}

fn bytes_field_len(n: usize) -> usize {
    if n == 0 {
        0
    } else {
        1 + varint_len(n as u64) + n
    }
}

fn int64_field_len(v: i64) -> usize {
    if v == 0 {
        0
    } else {
        1 + varint_len(v as u64)
    }
}

/// Length of [`bucket_value`] for a record of `key`.
pub(crate) fn bucket_value_len(key: &[u8], record: &Record) -> usize {
    let mut n = bytes_field_len(key.len());
    if let Entry::Put {
        create_revision,
        version,
        lease,
    } = record.entry
    {
        n += int64_field_len(create_revision)
            + int64_field_len(record.rev.main)
            + int64_field_len(version)
            + bytes_field_len(record.value_len(key.len()))
            + int64_field_len(lease);
    }
    n
}

/// Appends a record's bucket key and value to a running crc.
fn append_record(h: u32, key: &[u8], record: &Record) -> u32 {
    let h = crc32c::crc32c_append(h, &bucket_key(record.rev, record.is_tombstone()));
    crc32c_combine(h, record.hash_crc, bucket_value_len(key, record))
}

/// CRC-32C's reflected polynomial.
const CRC32C_POLY: u32 = 0x82f6_3b78;

/// `a * b` modulo the polynomial, both reflected (zlib's `multmodp`).
fn mul_mod_p(a: u32, mut b: u32) -> u32 {
    let mut m = 1u32 << 31;
    let mut p = 0;
    loop {
        if a & m != 0 {
            p ^= b;
            if a & (m - 1) == 0 {
                return p;
            }
        }
        m >>= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ CRC32C_POLY
        } else {
            b >> 1
        };
    }
}

/// `x^(2^k)` modulo the polynomial, for k in 0..64.
static X_POW_2K: std::sync::LazyLock<[u32; 64]> = std::sync::LazyLock::new(|| {
    let mut t = [0u32; 64];
    t[0] = 1 << 30; // x^1
    for k in 1..64 {
        t[k] = mul_mod_p(t[k - 1], t[k - 1]);
    }
    t
});

/// The crc of `A || B` from `crc(A)`, `crc(B)` and `len(B)`: zlib's
/// combine, which multiplies by `x^(8 len)` through a table of squares
/// (about 20 small multiplications). The `crc32c` crate's combine squares
/// matrices on every call, which made hashing a large store slow.
fn crc32c_combine(crc1: u32, crc2: u32, len2: usize) -> u32 {
    let mut n = len2 as u64;
    let mut k = 3; // x^(8 n) = x^(n 2^3)
    let mut p = 1u32 << 31; // x^0
    while n != 0 {
        if n & 1 != 0 {
            p = mul_mod_p(X_POW_2K[k & 63], p);
        }
        n >>= 1;
        k += 1;
    }
    mul_mod_p(p, crc1) ^ crc2
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
        self.hasher = append_record(self.hasher, key, record);
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
        h = append_record(h, k, r);
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
        let put = Entry::Put {
            create_revision: 2,
            version: 1,
            lease: 777,
        };
        assert_eq!(
            bucket_value(b"a", 2, &put, b"v1"),
            [0x0a, 1, b'a', 0x10, 2, 0x18, 2, 0x20, 1, 0x2a, 2, b'v', b'1', 0x30, 0x89, 0x06]
        );
        assert_eq!(
            bucket_value(b"a", 3, &Entry::Tombstone, b""),
            [0x0a, 1, b'a']
        );
        assert_eq!(
            bucket_key(Revision { main: 3, sub: 1 }, true),
            [0, 0, 0, 0, 0, 0, 0, 3, b'_', 0, 0, 0, 0, 0, 0, 0, 1, b't']
        );
        let mut v = Vec::new();
        put_int64_field(&mut v, 6, -1);
        assert_eq!(
            v,
            [0x30, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01]
        );
    }

    #[test]
    fn lengths_and_combined_crcs_match_the_encoding() {
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for _ in 0..2000 {
            let key = vec![b'k'; (next() % 300) as usize];
            let value = vec![b'v'; (next() % 300) as usize];
            let big = |n: u64| (n as i64) >> (n % 64);
            let entry = if next() % 4 == 0 {
                Entry::Tombstone
            } else {
                Entry::Put {
                    create_revision: big(next()),
                    version: big(next()),
                    lease: big(next()),
                }
            };
            let main = big(next());
            let bytes = bucket_value(&key, main, &entry, &value);
            let r = Record {
                rev: Revision { main, sub: 0 },
                entry,
                hash_crc: crc32c::crc32c(&bytes),
                loc: crate::store::Loc::mem(if r_is_put(&entry) { &value } else { b"" }),
            };
            assert_eq!(bucket_value_len(&key, &r), bytes.len());
            let mut whole = bucket_key(r.rev, r.is_tombstone());
            whole.extend_from_slice(&bytes);
            assert_eq!(append_record(5, &key, &r), crc32c::crc32c_append(5, &whole));
        }
    }

    #[test]
    fn combine_matches_the_crc32c_crate() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        // crc(B) of an empty B is 0, and then both agree; bucket values
        // are never empty anyway.
        assert_eq!(crc32c_combine(7, 0, 0), 7);
        for len in (1..3000).chain([65_535, 65_536, 131_072, 1 << 20, usize::MAX >> 20]) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let (a, b) = (x as u32, (x >> 32) as u32);
            assert_eq!(
                crc32c_combine(a, b, len),
                crc32c::crc32c_combine(a, b, len),
                "len {len}"
            );
        }
    }

    fn r_is_put(e: &Entry) -> bool {
        matches!(e, Entry::Put { .. })
    }
}
