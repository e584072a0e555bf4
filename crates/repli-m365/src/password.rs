//! One-time passwords for the kit's accounts.

use crate::{Error, Result, Secret};

const LOWER: &[u8] = b"abcdefghijkmnpqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHJKLMNPQRSTUVWXYZ";
const DIGITS: &[u8] = b"23456789";
const SYMBOLS: &[u8] = b"!#%+-=?@";

fn random_index(len: usize) -> Result<usize> {
    // Rejection sampling over one byte keeps the choice uniform.
    let limit = 256 - (256 % len);
    loop {
        let mut b = [0u8; 1];
        getrandom::fill(&mut b).map_err(|e| Error::Invalid(format!("no system randomness: {e}")))?;
        if (b[0] as usize) < limit {
            return Ok(b[0] as usize % len);
        }
    }
}

/// A 16-character password from the system CSPRNG with all four character classes (Graph
/// requires three), without look-alike characters (0/O, 1/l/I) since it is read off paper.
pub fn generate_password() -> Result<Secret> {
    let all: Vec<u8> = [LOWER, UPPER, DIGITS, SYMBOLS].concat();
    let mut chars: Vec<u8> = Vec::with_capacity(16);
    for class in [LOWER, UPPER, DIGITS, SYMBOLS] {
        chars.push(class[random_index(class.len())?]);
    }
    while chars.len() < 16 {
        chars.push(all[random_index(all.len())?]);
    }
    // Fisher–Yates, so the class positions are not predictable.
    for i in (1..chars.len()).rev() {
        let j = random_index(i + 1)?;
        chars.swap(i, j);
    }
    Ok(Secret::new(String::from_utf8_lossy(&chars).into_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_strong_and_distinct() {
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..200 {
            let p = generate_password().unwrap();
            let s = p.expose();
            assert_eq!(s.len(), 16);
            assert!(s.bytes().any(|c| LOWER.contains(&c)) && s.bytes().any(|c| UPPER.contains(&c)));
            assert!(s.bytes().any(|c| DIGITS.contains(&c)) && s.bytes().any(|c| SYMBOLS.contains(&c)));
            assert!(!s.contains(['0', 'O', '1', 'l', 'I']));
            assert!(seen.insert(s.to_string()), "repeated password");
        }
    }
}
