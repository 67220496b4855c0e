//! `requestMetadata`: the key-value pairs Bedrock writes to its invocation logs.

use std::collections::BTreeMap;

use crate::error::Error;

const MAX_ENTRIES: usize = 16;
const MAX_CHARS: usize = 256;
const PATTERN: &str = r"[a-zA-Z0-9\s:_@$#=/+,-.]";

/// Bedrock's character class `[a-zA-Z0-9\s:_@$#=/+,-.]` (`,-.` is a range: `,` `-` `.`).
fn allowed(character: char) -> bool {
    character.is_ascii_alphanumeric()
        || matches!(character, ' ' | '\t' | '\n' | '\u{0B}' | '\u{0C}' | '\r')
        || ":_@$#=/+,-.".contains(character)
}

fn map_constraint(rule: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value at 'requestMetadata' failed to satisfy constraint: {rule}"
    ))
}

fn check_text(text: &str, min: usize, what: &str) -> Result<(), Error> {
    let length = text.chars().count();
    if length < min || length > MAX_CHARS || !text.chars().all(allowed) {
        return Err(map_constraint(&format!(
            "Map {what} must satisfy constraint: [Member must have length less than or equal to {MAX_CHARS}, Member must have length greater than or equal to {min}, Member must satisfy regular expression pattern: {PATTERN}{{{min},{MAX_CHARS}}}]"
        )));
    }
    Ok(())
}

/// Checks Bedrock's limits: at most 16 entries, keys of 1-256 and values of 0-256 characters
/// from the allowed set.
pub fn validate(metadata: &BTreeMap<String, String>) -> Result<(), Error> {
    if metadata.len() > MAX_ENTRIES {
        return Err(map_constraint(&format!(
            "Member must have length less than or equal to {MAX_ENTRIES}"
        )));
    }
    for (key, value) in metadata {
        check_text(key, 1, "keys")?;
        check_text(value, 0, "values")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn metadata(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(key, value)| (key.to_string(), value.to_string()))
            .collect()
    }

    #[test]
    fn accepts_bedrock_conformant_metadata() {
        let valid = metadata(&[
            ("user", "alice@example.com"),
            ("team", ""),
            ("path", "a/b+c,d-e.f:g_h$i#j=k l"),
        ]);
        assert!(validate(&valid).is_ok());
        let full: BTreeMap<String, String> = (0..16)
            .map(|index| (format!("k{index}"), "v".repeat(256)))
            .collect();
        assert!(validate(&full).is_ok());
    }

    #[test]
    fn refuses_what_bedrock_refuses() {
        let too_many: BTreeMap<String, String> = (0..17)
            .map(|index| (format!("k{index}"), String::new()))
            .collect();
        let message = validate(&too_many).unwrap_err().as_service().1;
        assert!(message.contains("less than or equal to 16"), "{message}");
        let cases = [
            (metadata(&[("", "v")]), "Map keys"),
            (metadata(&[(&"k".repeat(257), "v")]), "Map keys"),
            (metadata(&[("k<", "v")]), "Map keys"),
            (metadata(&[("k", &"v".repeat(257))]), "Map values"),
            (metadata(&[("k", "caf\u{e9}")]), "Map values"),
            (metadata(&[("k", "a;b")]), "Map values"),
        ];
        for (metadata, expected) in cases {
            let message = validate(&metadata).unwrap_err().as_service().1;
            assert!(message.contains(expected), "{message}");
            assert!(message.contains("'requestMetadata'"));
        }
    }
}
