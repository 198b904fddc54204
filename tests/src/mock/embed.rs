//! Deterministic embedding vectors: the same text always maps to the same unit vector.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// A unit-length vector of `dimensions` values derived from `text` alone.
pub(crate) fn vector(text: &str, dimensions: usize) -> Vec<f32> {
    let seed = fnv1a(text.as_bytes());
    let raw: Vec<f32> = (0..dimensions as u64)
        .map(|index| {
            let mixed = splitmix(seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15));
            // Top 24 bits → [-1, 1): exactly representable in f32.
            ((mixed >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect();
    let norm = raw.iter().map(|v| v * v).sum::<f32>().sqrt();
    if norm == 0.0 {
        raw
    } else {
        raw.iter().map(|v| v / norm).collect()
    }
}

/// OpenAI's `encoding_format: "base64"`: little-endian f32 values, base64-encoded.
pub(crate) fn to_base64(values: &[f32]) -> String {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    STANDARD.encode(bytes)
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(*byte)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn splitmix(mut x: u64) -> u64 {
    x = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    x = (x ^ (x >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    x ^ (x >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vectors_are_deterministic_unit_length_and_text_specific() {
        let a = vector("hello", 16);
        assert_eq!(a, vector("hello", 16));
        assert_ne!(a, vector("hellp", 16));
        assert_eq!(a.len(), 16);
        let norm: f32 = a.iter().map(|v| v * v).sum();
        assert!((norm - 1.0).abs() < 1e-5);
    }

    #[test]
    fn base64_round_trips_little_endian_floats() {
        let values = [0.5f32, -1.25];
        let bytes = STANDARD.decode(to_base64(&values)).unwrap();
        assert_eq!(
            bytes,
            [0.5f32.to_le_bytes(), (-1.25f32).to_le_bytes()].concat()
        );
    }
}
