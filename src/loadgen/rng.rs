//! The one seeded random number generator of the project: loadgen's
//! generated workloads and the integration tests (through
//! `tests/common`) both use it, so a seed names one exact byte sequence
//! everywhere, on every platform, forever.
//!
//! SplitMix64 (Steele, Lea and Flood, 2014): one `u64` of state, a few
//! multiplications per value, passes BigCrush, and needs no crate. A crate
//! (`fastrand`, `rand_xoshiro`) would add a dependency without doing this
//! job better: `fastrand` does not promise the same sequence across
//! versions, and neither is needed for statistics finer than a load test's.

/// A deterministic SplitMix64 generator. Not for anything secret.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// The generator of `seed`: equal seeds give equal sequences.
    pub fn new(seed: u64) -> Self {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` by multiply-high (Lemire); the bias, below
    /// `n / 2^64`, is far beneath anything a test can see. `below(0)` is 0.
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    /// One element of `items`, uniformly.
    ///
    /// # Panics
    /// If `items` is empty.
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        assert!(!items.is_empty(), "pick from an empty slice");
        &items[self.below(items.len() as u64) as usize]
    }

    /// Fills `buf` with random bytes.
    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        if !rest.is_empty() {
            let v = self.next_u64().to_le_bytes();
            rest.copy_from_slice(&v[..rest.len()]);
        }
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut out = vec![0; n];
        self.fill(&mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splitmix64_reference_values() {
        // The first outputs for seed 1234567, from the reference C code.
        let mut r = Rng::new(1_234_567);
        assert_eq!(r.next_u64(), 6_457_827_717_110_365_317);
        assert_eq!(r.next_u64(), 3_203_168_211_198_807_973);
        assert_eq!(r.next_u64(), 9_817_491_932_198_370_423);
    }

    #[test]
    fn below_pick_and_bytes_stay_in_range_and_repeat() {
        let mut r = Rng::new(9);
        assert!((0..10_000).all(|_| r.below(7) < 7));
        assert_eq!(r.below(0), 0);
        let mut seen = [false; 3];
        for _ in 0..100 {
            seen[*r.pick(&[0usize, 1, 2])] = true;
        }
        assert_eq!(seen, [true; 3]);
        let (a, b) = (Rng::new(5).bytes(13), Rng::new(5).bytes(13));
        assert_eq!(a, b);
        assert_eq!(a.len(), 13);
        assert_eq!(&a[..8], &Rng::new(5).next_u64().to_le_bytes());
        assert_ne!(a, Rng::new(6).bytes(13));
    }
}
