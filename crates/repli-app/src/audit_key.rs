//! The audit checkpoint signing key: 32 random bytes in a file only its owner can read,
//! created on first start. The same kind of file holds the key sealing TOTP secrets
//! ([`load_or_create_seed`], `second_factor`).

use std::io::Write;
use std::path::Path;

use ed25519_dalek::SigningKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the key file {path}: {source}")]
    Read { path: String, source: std::io::Error },
    #[error("cannot create the key file {path}: {source}")]
    Create { path: String, source: std::io::Error },
    #[error("the key file {path} is not 64 hexadecimal characters")]
    Format { path: String },
    #[error("there is no key file at {path}")]
    Missing { path: String },
    #[error("no randomness available: {0}")]
    Random(getrandom::Error),
}

/// Loads the key at `path`, or creates it (mode 0600) when the file does not exist.
pub fn load_or_create(path: &Path) -> Result<SigningKey, KeyError> {
    match load(path) {
        Err(KeyError::Missing { .. }) => {
            let key = SigningKey::from_bytes(&create(path)?);
            tracing::info!(path = %path.display(), public_key = %hex::encode(key.verifying_key().to_bytes()), "audit signing key created");
            Ok(key)
        }
        other => other,
    }
}

/// Loads the key at `path`; a missing file is [`KeyError::Missing`], never a new key.
pub fn load(path: &Path) -> Result<SigningKey, KeyError> {
    load_seed(path).map(|seed| SigningKey::from_bytes(&seed))
}

/// 32 secret bytes from a key file of this kind, or a new file (mode 0600) when there is none.
pub fn load_or_create_seed(path: &Path) -> Result<[u8; 32], KeyError> {
    match load_seed(path) {
        Err(KeyError::Missing { .. }) => create(path),
        other => other,
    }
}

fn load_seed(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    // A key file is 65 bytes: anything much larger is not one (and is not read whole).
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 1024 => return Err(KeyError::Format { path: shown }),
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(KeyError::Missing { path: shown }),
        Err(source) => return Err(KeyError::Read { path: shown, source }),
    }
    match std::fs::read_to_string(path) {
        Ok(text) => {
            warn_if_loose(path);
            let bytes = hex::decode(text.trim()).map_err(|_| KeyError::Format { path: shown.clone() })?;
            <[u8; 32]>::try_from(bytes.as_slice()).map_err(|_| KeyError::Format { path: shown })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Err(KeyError::Missing { path: shown }),
        Err(source) => Err(KeyError::Read { path: shown, source }),
    }
}

fn create(path: &Path) -> Result<[u8; 32], KeyError> {
    let shown = path.display().to_string();
    let mut seed = [0u8; 32];
    getrandom::fill(&mut seed).map_err(KeyError::Random)?;
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        opts.mode(0o600);
    }
    let mut f = opts.open(path).map_err(|source| KeyError::Create { path: shown.clone(), source })?;
    f.write_all(format!("{}\n", hex::encode(seed)).as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|source| KeyError::Create { path: shown, source })?;
    Ok(seed)
}

fn warn_if_loose(path: &Path) {
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(m) = std::fs::metadata(path)
            && m.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(path = %path.display(), "a key file is readable by others: chmod 600 it");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn created_once_private_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("k");
        let a = load_or_create(&p).unwrap();
        let b = load_or_create(&p).unwrap();
        assert_eq!(a.verifying_key(), b.verifying_key());
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&p).unwrap().permissions().mode() & 0o777, 0o600);
        }
        std::fs::write(&p, "not hex").unwrap();
        assert!(matches!(load_or_create(&p), Err(KeyError::Format { .. })));
        // `load` never makes a key.
        let absent = dir.path().join("absent");
        assert!(matches!(load(&absent), Err(KeyError::Missing { .. })));
        assert!(!absent.exists());
    }
}
