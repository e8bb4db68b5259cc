//! The Bloom filter of a closed partition's UUIDs (see the parent module).

use rusqlite::Connection;
use uuid::Uuid;

/// A Bloom filter of a closed partition's UUIDs, in 512-bit blocks (one
/// cache line per probe): 16 bits per UUID, 8 bits per key, about 0.2 %
/// false positives (each one costs a lookup in that partition, whose pages
/// are rarely in the cache). A tag UUID is a SHA-1 (v5) already, so its bits are
/// the hash.
#[derive(Debug, Clone)]
pub(super) struct Bloom {
    words: Vec<u64>,
}

impl Bloom {
    const BLOCK_WORDS: usize = 8;

    pub(super) fn with_capacity(keys: i64) -> Bloom {
        let blocks = ((keys.max(1) as usize) * 16).div_ceil(512).max(1);
        Bloom {
            words: vec![0; blocks * Self::BLOCK_WORDS],
        }
    }

    /// The block (from the high half's top bits) and eight bit positions
    /// in it (seven from the low half, one from the high half's low bits).
    fn probes(&self, uuid: &Uuid) -> (usize, [u16; 8]) {
        let (hi, lo) = uuid.as_u64_pair();
        let blocks = (self.words.len() / Self::BLOCK_WORDS) as u128;
        let block = ((hi as u128 * blocks) >> 64) as usize;
        let mut bits = [0u16; 8];
        for (i, b) in bits.iter_mut().take(7).enumerate() {
            *b = ((lo >> (9 * i)) & 511) as u16;
        }
        bits[7] = (hi & 511) as u16;
        (block * Self::BLOCK_WORDS, bits)
    }

    pub(super) fn insert(&mut self, uuid: &Uuid) {
        let (base, bits) = self.probes(uuid);
        for b in bits {
            self.words[base + (b as usize >> 6)] |= 1 << (b & 63);
        }
    }

    pub(super) fn may_contain(&self, uuid: &Uuid) -> bool {
        let (base, bits) = self.probes(uuid);
        bits.iter()
            .all(|&b| self.words[base + (b as usize >> 6)] & (1 << (b & 63)) != 0)
    }

    pub(super) fn of_table(conn: &Connection, table: &str, rows: i64) -> rusqlite::Result<Bloom> {
        let mut bloom = Bloom::with_capacity(rows);
        let mut stmt = conn.prepare(&format!("SELECT uuid FROM {table}"))?;
        let mut q = stmt.query([])?;
        while let Some(r) = q.next()? {
            // A UUID that does not parse was not written by a tagger (a
            // hand edit): its text is hashed as a v5 name instead; a
            // lookup of it takes the same path.
            let text: String = r.get(0)?;
            bloom.insert(&key(&text));
        }
        Ok(bloom)
    }

    pub(super) fn to_bytes(&self) -> Vec<u8> {
        self.words.iter().flat_map(|w| w.to_le_bytes()).collect()
    }

    pub(super) fn from_bytes(bytes: &[u8]) -> Option<Bloom> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(Self::BLOCK_WORDS * 8) {
            return None;
        }
        Some(Bloom {
            words: bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut w = [0u8; 8];
                    w.copy_from_slice(c);
                    u64::from_le_bytes(w)
                })
                .collect(),
        })
    }
}

/// The filter key of a stored UUID text.
fn key(text: &str) -> Uuid {
    Uuid::try_parse(text).unwrap_or_else(|_| Uuid::new_v5(&Uuid::NAMESPACE_OID, text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bloom_has_no_false_negatives_and_few_false_positives() {
        let keys: Vec<Uuid> = (0..20_000u32)
            .map(|i| Uuid::new_v5(&Uuid::NAMESPACE_URL, &i.to_le_bytes()))
            .collect();
        let mut bloom = Bloom::with_capacity(keys.len() as i64);
        for k in &keys {
            bloom.insert(k);
        }
        let back = Bloom::from_bytes(&bloom.to_bytes()).unwrap();
        assert!(keys.iter().all(|k| back.may_contain(k)));
        let false_hits = (20_000u32..120_000)
            .map(|i| Uuid::new_v5(&Uuid::NAMESPACE_URL, &i.to_le_bytes()))
            .filter(|k| back.may_contain(k))
            .count();
        // 16 bits a key, 8 probes in a 512-bit block: about 0.2 %.
        assert!(false_hits < 500, "{false_hits} false positives in 100,000");
        assert!(Bloom::from_bytes(&[1, 2, 3]).is_none());
    }
}
