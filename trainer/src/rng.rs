//! Small seeded PRNG (SplitMix64) so shuffling, dropout and head initialisation reproduce exactly
//! for a given --seed without pulling in a random-number crate.

#[derive(Clone, Debug)]
#[derive(Default)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Rng(seed ^ 0x5851_F42D_4C95_7F2D)
    }
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 / (1u64 << 24) as f32
    }
    /// Dropout mask: 0 with probability ~p (16-bit resolution), else `keep`. Four draws per u64.
    pub fn dropout_mask(&mut self, n: usize, p: f32, keep: f32) -> Vec<f32> {
        let thr = (p * 65536.0) as u64;
        let mut out = Vec::with_capacity(n + 3);
        while out.len() < n {
            let r = self.next_u64();
            for k in 0..4 {
                out.push(if (r >> (16 * k)) & 0xFFFF < thr { 0.0 } else { keep });
            }
        }
        out.truncate(n);
        out
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        let u1 = ((self.next_u64() >> 11) as f64 + 1.0) / (1u64 << 53) as f64;
        let u2 = (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64;
        ((-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()) as f32
    }
    pub fn shuffle<T>(&mut self, v: &mut [T]) {
        for i in (1..v.len()).rev() {
            let j = self.below(i + 1);
            v.swap(i, j);
        }
    }
}
