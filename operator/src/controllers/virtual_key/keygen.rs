//! Generation of virtual keys: the recognisable prefix plus 256 bits from the operating system's CSPRNG.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sluice_crds::compile::KEY_PREFIX;

/// Random bytes per key: 256 bits, as many as the SHA-256 the gateway compares.
const KEY_BYTES: usize = 32;

/// A new key: `sk-sluice-` followed by 43 URL-safe base64 characters.
pub fn generate() -> Result<String, String> {
    let mut bytes = [0u8; KEY_BYTES];
    OsRng
        .try_fill_bytes(&mut bytes)
        .map_err(|error| format!("the operating system's random source failed: {error}"))?;
    Ok(format!("{KEY_PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes)))
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;

    #[test]
    fn keys_have_the_prefix_43_url_safe_characters_and_do_not_repeat() {
        let keys: HashSet<String> = (0..1_000).map(|_| generate().expect("key")).collect();
        assert_eq!(keys.len(), 1_000);
        for key in &keys {
            let random = key.strip_prefix(KEY_PREFIX).expect("prefix");
            assert_eq!(random.len(), 43);
            assert!(
                random
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'),
                "{random}"
            );
            assert_eq!(
                URL_SAFE_NO_PAD.decode(random).expect("base64").len(),
                KEY_BYTES
            );
        }
    }
}
