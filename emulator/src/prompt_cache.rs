//! Prompt caching: `cachePoint` blocks mark a prefix that later requests read from the cache.

use std::collections::{HashSet, VecDeque};
use std::sync::Mutex;

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::converse::{Message, word_count};
use crate::error::Error;

/// Prefixes remembered per emulator; the oldest is forgotten first.
pub const CAPACITY: usize = 4096;

/// The prompt up to the last `cachePoint` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CachePrefix {
    /// SHA-256 of the model id and every block before the cache point.
    pub key: [u8; 32],
    /// Words in the text blocks before the cache point.
    pub words: usize,
}

/// Whether a prefix was written to the cache or read from it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CacheOutcome {
    Write,
    Read,
}

fn block_words(block: &Value) -> usize {
    block
        .get("text")
        .and_then(Value::as_str)
        .map_or(0, word_count)
}

/// Checks a `cachePoint` block member: `type` must be `default`.
pub fn check_cache_point(cache_point: &Value, path: &str) -> Result<(), Error> {
    match cache_point.get("type").and_then(Value::as_str) {
        Some("default") => Ok(()),
        other => Err(Error::validation(format!(
            "1 validation error detected: Value '{}' at '{path}.cachePoint.type' failed to satisfy constraint: Member must satisfy enum value set: [default]",
            other.unwrap_or("null")
        ))),
    }
}

/// The prefix ending at the last `cachePoint` of the system blocks and messages, if any.
pub fn cache_prefix(model_id: &str, system: &[Value], messages: &[Message]) -> Option<CachePrefix> {
    let is_cache_point = |block: &Value| block.get("cachePoint").is_some();
    let has_cache_point = system.iter().any(is_cache_point)
        || messages
            .iter()
            .any(|message| message.content.iter().flatten().any(is_cache_point));
    if !has_cache_point {
        return None;
    }
    let mut hasher = Sha256::new();
    hasher.update(model_id.as_bytes());
    let mut words = 0;
    let mut found = None;
    let mut visit = |hasher: &mut Sha256, block: &Value| {
        if block.get("cachePoint").is_some() {
            found = Some(CachePrefix {
                key: hasher.clone().finalize().into(),
                words,
            });
        } else {
            hasher.update(block.to_string().as_bytes());
            hasher.update(b"\n");
            words += block_words(block);
        }
    };
    hasher.update(b"\nsystem\n");
    for block in system {
        visit(&mut hasher, block);
    }
    for message in messages {
        hasher.update(b"\nrole:");
        hasher.update(message.role.as_bytes());
        hasher.update(b"\n");
        for block in message.content.as_deref().unwrap_or_default() {
            visit(&mut hasher, block);
        }
    }
    found
}

#[derive(Debug, Default)]
struct Seen {
    keys: HashSet<[u8; 32]>,
    order: VecDeque<[u8; 32]>,
}

/// The prefixes one emulator has cached, at most [`CAPACITY`].
#[derive(Debug, Default)]
pub struct PromptCache {
    seen: Mutex<Seen>,
}

impl PromptCache {
    /// Records a request with `prefix`: a write the first time, a read afterwards.
    pub fn touch(&self, prefix: &CachePrefix) -> CacheOutcome {
        // A poisoned lock only means another thread panicked mid-update; the set stays usable.
        let mut seen = self
            .seen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        if seen.keys.contains(&prefix.key) {
            return CacheOutcome::Read;
        }
        if seen.order.len() >= CAPACITY
            && let Some(oldest) = seen.order.pop_front()
        {
            seen.keys.remove(&oldest);
        }
        seen.keys.insert(prefix.key);
        seen.order.push_back(prefix.key);
        CacheOutcome::Write
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn message(role: &str, content: Value) -> Message {
        serde_json::from_value(json!({"role": role, "content": content})).unwrap()
    }

    #[test]
    fn finds_the_last_cache_point() {
        let system = vec![
            json!({"text": "You are a careful assistant."}),
            json!({"cachePoint": {"type": "default"}}),
        ];
        let messages = vec![message(
            "user",
            json!([{"text": "long shared context here"}, {"cachePoint": {"type": "default"}}, {"text": "question"}]),
        )];
        let prefix = cache_prefix("m", &system, &messages).unwrap();
        assert_eq!(prefix.words, 5 + 4);
        let system_only = cache_prefix("m", &system, &[message("user", json!([{"text": "q"}]))]);
        assert_eq!(system_only.unwrap().words, 5);
        assert_eq!(
            cache_prefix("m", &[], &[message("user", json!([{"text": "q"}]))]),
            None
        );
    }

    #[test]
    fn keys_depend_on_the_prefix_and_the_model_only() {
        let point = json!({"cachePoint": {"type": "default"}});
        let with_tail = |tail: &str| {
            vec![message(
                "user",
                json!([{"text": "shared"}, point, {"text": tail}]),
            )]
        };
        let first = cache_prefix("m", &[], &with_tail("one")).unwrap();
        let second = cache_prefix("m", &[], &with_tail("two")).unwrap();
        assert_eq!(first, second);
        assert_ne!(
            cache_prefix("other", &[], &with_tail("one")).unwrap(),
            first
        );
        let changed = vec![message("user", json!([{"text": "shared!"}, point]))];
        assert_ne!(cache_prefix("m", &[], &changed).unwrap().key, first.key);
    }

    #[test]
    fn first_touch_writes_later_ones_read_and_capacity_is_bounded() {
        let cache = PromptCache::default();
        let prefix = |n: u32| CachePrefix {
            key: Sha256::digest(n.to_be_bytes()).into(),
            words: 1,
        };
        assert_eq!(cache.touch(&prefix(0)), CacheOutcome::Write);
        assert_eq!(cache.touch(&prefix(0)), CacheOutcome::Read);
        for n in 1..=CAPACITY as u32 {
            cache.touch(&prefix(n));
        }
        assert_eq!(cache.touch(&prefix(0)), CacheOutcome::Write, "evicted");
        assert_eq!(cache.touch(&prefix(CAPACITY as u32)), CacheOutcome::Read);
    }

    #[test]
    fn cache_point_types_are_checked() {
        assert!(check_cache_point(&json!({"type": "default"}), "system.1.member").is_ok());
        let message = check_cache_point(&json!({"type": "ephemeral"}), "system.1.member")
            .unwrap_err()
            .as_service()
            .1;
        assert!(message.contains("'ephemeral' at 'system.1.member.cachePoint.type'"));
    }
}
