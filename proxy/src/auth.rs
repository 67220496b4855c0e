//! Bearer API keys: loaded from the environment and a mounted file, reloaded
//! when the file changes, compared in constant time.
//!
//! Only SHA-256 digests of the keys are kept; a presented key is hashed once
//! and compared with every digest without early exit, so neither the key nor
//! its length leaks through timing.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

type KeyDigest = [u8; 32];

/// An accepted key as the rest of the gateway knows it: the SHA-256 digest of
/// the key, never the key. Its `Debug` output does not show the digest either.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct KeyId(KeyDigest);

impl KeyId {
    pub fn from_digest(digest: [u8; 32]) -> Self {
        Self(digest)
    }
}

impl std::fmt::Debug for KeyId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyId(..)")
    }
}

#[derive(Debug, Clone)]
pub struct ApiKeys {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    from_env: Vec<KeyDigest>,
    file: Option<PathBuf>,
    from_file: RwLock<FileKeys>,
}

#[derive(Debug, Default)]
struct FileKeys {
    content_digest: Option<KeyDigest>,
    keys: Vec<KeyDigest>,
}

fn digest(bytes: &[u8]) -> KeyDigest {
    Sha256::digest(bytes).into()
}

/// Keys in a key file: one per line, blank lines and `#` comments ignored.
pub fn parse_key_file(content: &str) -> Vec<&str> {
    content
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty() && !line.starts_with('#'))
        .collect()
}

/// The key of an `Authorization: Bearer <key>` header value.
pub fn bearer_token(header_value: &str) -> Option<&str> {
    let (scheme, token) = header_value.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl ApiKeys {
    pub fn new(env_keys: &[String], file: Option<PathBuf>) -> Self {
        let from_env = env_keys
            .iter()
            .map(|key| key.trim())
            .filter(|key| !key.is_empty())
            .map(|key| digest(key.as_bytes()))
            .collect();
        let keys = Self {
            inner: Arc::new(Inner {
                from_env,
                file,
                from_file: RwLock::new(FileKeys::default()),
            }),
        };
        keys.reload();
        keys
    }

    pub fn file(&self) -> Option<&Path> {
        self.inner.file.as_deref()
    }

    /// Number of keys currently accepted.
    pub fn len(&self) -> usize {
        let from_file = self
            .inner
            .from_file
            .read()
            .map_or(0, |keys| keys.keys.len());
        self.inner.from_env.len() + from_file
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The identity of `presented` when it is an accepted key.
    pub fn authenticate(&self, presented: &str) -> Option<KeyId> {
        let presented = digest(presented.as_bytes());
        let mut matched = subtle::Choice::from(0u8);
        for key in &self.inner.from_env {
            matched |= key.ct_eq(&presented);
        }
        if let Ok(from_file) = self.inner.from_file.read() {
            for key in &from_file.keys {
                matched |= key.ct_eq(&presented);
            }
        }
        bool::from(matched).then_some(KeyId(presented))
    }

    /// Re-reads the key file; returns true when the accepted keys changed.
    /// A file that cannot be read keeps the previous keys, so a Secret being
    /// swapped never opens a window without keys.
    pub fn reload(&self) -> bool {
        let Some(path) = self.inner.file.as_deref() else {
            return false;
        };
        let content = match std::fs::read(path) {
            Ok(content) => content,
            Err(error) => {
                tracing::warn!(path = %path.display(), %error, "cannot read the API keys file; keeping the current keys");
                return false;
            }
        };
        let content_digest = digest(&content);
        let Ok(mut from_file) = self.inner.from_file.write() else {
            return false;
        };
        if from_file.content_digest == Some(content_digest) {
            return false;
        }
        let text = String::from_utf8_lossy(&content);
        from_file.keys = parse_key_file(&text)
            .into_iter()
            .map(|key| digest(key.as_bytes()))
            .collect();
        from_file.content_digest = Some(content_digest);
        tracing::info!(path = %path.display(), keys = from_file.keys.len(), "API keys loaded");
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp_file(name: &str, content: &str) -> PathBuf {
        let path = std::env::temp_dir().join(format!(
            "bedrock-gateway-auth-{name}-{}",
            std::process::id()
        ));
        std::fs::write(&path, content).unwrap();
        path
    }

    #[test]
    fn bearer_tokens_are_extracted_strictly() {
        assert_eq!(bearer_token("Bearer abc"), Some("abc"));
        assert_eq!(bearer_token("bearer   abc "), Some("abc"));
        assert_eq!(bearer_token("Basic abc"), None);
        assert_eq!(bearer_token("Bearer "), None);
        assert_eq!(bearer_token("abc"), None);
        assert_eq!(bearer_token(""), None);
    }

    #[test]
    fn key_files_ignore_comments_and_blank_lines() {
        assert_eq!(parse_key_file("# keys\n\n k1 \nk2\r\n#k3\n"), ["k1", "k2"]);
        assert!(parse_key_file("").is_empty());
    }

    #[test]
    fn env_keys_are_accepted_and_others_refused() {
        let keys = ApiKeys::new(&["one".into(), " two ".into(), "".into()], None);
        assert_eq!(keys.len(), 2);
        assert!(keys.authenticate("one").is_some());
        assert!(keys.authenticate("two").is_some());
        assert!(keys.authenticate("three").is_none());
        assert!(keys.authenticate("").is_none());
        assert!(keys.authenticate("one ").is_none());
    }

    #[test]
    fn authenticated_keys_are_identified_by_their_digest_only() {
        let keys = ApiKeys::new(&["one".into(), "two".into()], None);
        let one = keys.authenticate("one").unwrap();
        assert_eq!(keys.authenticate("one"), Some(one));
        assert_ne!(keys.authenticate("two"), Some(one));
        assert_eq!(one, KeyId::from_digest(digest(b"one")));
        assert_eq!(keys.authenticate("three"), None);
        assert_eq!(format!("{one:?}"), "KeyId(..)");
    }

    #[test]
    fn file_keys_reload_when_the_file_changes_and_survive_its_absence() {
        let path = temp_file("reload", "old\n");
        let keys = ApiKeys::new(&[], Some(path.clone()));
        assert!(keys.authenticate("old").is_some());
        assert!(!keys.reload(), "unchanged file is not a change");

        std::fs::write(&path, "new\nsecond\n").unwrap();
        assert!(keys.reload());
        assert!(keys.authenticate("old").is_none());
        assert!(keys.authenticate("new").is_some());
        assert!(keys.authenticate("second").is_some());

        std::fs::remove_file(&path).unwrap();
        assert!(!keys.reload());
        assert!(
            keys.authenticate("new").is_some(),
            "a missing file keeps the last keys"
        );
    }

    #[test]
    fn a_missing_file_at_start_means_no_keys() {
        let keys = ApiKeys::new(
            &[],
            Some(PathBuf::from("/nonexistent/bedrock-gateway/keys")),
        );
        assert!(keys.is_empty());
        assert!(keys.authenticate("anything").is_none());
    }
}
