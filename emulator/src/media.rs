//! `image` and `document` content blocks: validated like Bedrock, echoed by size.

use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::base64::{self, Base64Problem};
use crate::error::Error;

pub const IMAGE_FORMATS: [&str; 4] = ["gif", "jpeg", "png", "webp"];
pub const DOCUMENT_FORMATS: [&str; 9] = [
    "csv", "doc", "docx", "html", "md", "pdf", "txt", "xls", "xlsx",
];
/// 3.75 MB.
pub const MAX_IMAGE_BYTES: usize = 3_932_160;
/// 4.5 MB.
pub const MAX_DOCUMENT_BYTES: usize = 4_718_592;
pub const MAX_IMAGES: usize = 20;
pub const MAX_DOCUMENTS: usize = 5;
const MAX_DOCUMENT_NAME_CHARS: usize = 200;

/// A validated image or document, as the echo reply describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Attachment {
    Image {
        format: String,
        bytes: usize,
        /// Hex SHA-256 of the decoded bytes, so tests can tell exactly which
        /// image arrived.
        sha256: String,
    },
    Document {
        name: String,
        format: String,
        bytes: usize,
    },
}

impl Attachment {
    /// ` [image/png 12 bytes]` or ` [document report pdf 12 bytes]`.
    pub fn annotation(&self) -> String {
        match self {
            Attachment::Image { format, bytes, .. } => format!(" [image/{format} {bytes} bytes]"),
            Attachment::Document {
                name,
                format,
                bytes,
            } => format!(" [document {name} {format} {bytes} bytes]"),
        }
    }
}

/// Where a block sits, for error messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BlockPosition {
    pub message: usize,
    pub block: usize,
}

impl BlockPosition {
    /// `messages.1.member.content.2.member.<member>` (1-based, as in constraint messages).
    fn member_path(self, member: &str) -> String {
        format!(
            "messages.{}.member.content.{}.member.{member}",
            self.message + 1,
            self.block + 1
        )
    }

    /// `messages.0.content.1` (0-based, as in Bedrock's prose messages).
    fn prose_path(self) -> String {
        format!("messages.{}.content.{}", self.message, self.block)
    }
}

fn constraint(value: &str, path: &str, rule: &str) -> Error {
    Error::validation(format!(
        "1 validation error detected: Value {value} at '{path}' failed to satisfy constraint: {rule}"
    ))
}

fn enum_format(
    block: &Value,
    kind: &str,
    position: BlockPosition,
    allowed: &[&str],
) -> Result<String, Error> {
    let path = position.member_path(&format!("{kind}.format"));
    match block.get("format") {
        None | Some(Value::Null) => Err(constraint("null", &path, "Member must not be null")),
        Some(Value::String(format)) if allowed.contains(&format.as_str()) => Ok(format.clone()),
        Some(other) => {
            let shown = other
                .as_str()
                .map_or_else(|| other.to_string(), str::to_string);
            Err(constraint(
                &format!("'{shown}'"),
                &path,
                &format!(
                    "Member must satisfy enum value set: [{}]",
                    allowed.join(", ")
                ),
            ))
        }
    }
}

/// The size and hex SHA-256 of a block's content.
struct Measured {
    bytes: usize,
    sha256: String,
}

impl Measured {
    fn of(content: &[u8]) -> Self {
        Self {
            bytes: content.len(),
            sha256: hex::encode(Sha256::digest(content)),
        }
    }
}

/// Decodes `source.bytes`, or measures `source.text` when `text_allowed`.
fn measure_source(
    block: &Value,
    kind: &str,
    position: BlockPosition,
    text_allowed: bool,
) -> Result<Measured, Error> {
    let source = block.get("source").and_then(Value::as_object);
    let Some(source) = source else {
        return Err(constraint(
            "null",
            &position.member_path(&format!("{kind}.source")),
            "Member must not be null",
        ));
    };
    if let Some(encoded) = source.get("bytes") {
        let encoded = encoded.as_str().unwrap_or_default();
        let bytes = base64::decode(encoded).map_err(|problem| {
            let detail = match problem {
                Base64Problem::InvalidCharacter(offset) => {
                    format!("invalid character at offset {offset}")
                }
                Base64Problem::InvalidLength => "invalid length".to_string(),
            };
            Error::validation(format!(
                "Malformed input request: the {kind} bytes at {} are not valid base64 ({detail}).",
                position.prose_path()
            ))
        })?;
        if bytes.is_empty() {
            return Err(constraint(
                "''",
                &position.member_path(&format!("{kind}.source.bytes")),
                "Member must have length greater than or equal to 1",
            ));
        }
        return Ok(Measured::of(&bytes));
    }
    if text_allowed && let Some(text) = source.get("text").and_then(Value::as_str) {
        return Ok(Measured::of(text.as_bytes()));
    }
    let found = source.keys().next().map_or("none", String::as_str);
    Err(Error::validation(format!(
        "The {kind} source at {} is not supported: '{found}'. Send the {kind} as bytes.",
        position.prose_path()
    )))
}

fn too_large(kind: &str, position: BlockPosition, bytes: usize, limit: &str) -> Error {
    Error::validation(format!(
        "The {kind} at {} is {bytes} bytes, which exceeds the maximum {kind} size of {limit}. Reduce the size of the {kind} and try again.",
        position.prose_path()
    ))
}

/// Validates an `image` block member.
pub fn check_image(image: &Value, position: BlockPosition) -> Result<Attachment, Error> {
    let format = enum_format(image, "image", position, &IMAGE_FORMATS)?;
    let Measured { bytes, sha256 } = measure_source(image, "image", position, false)?;
    if bytes > MAX_IMAGE_BYTES {
        return Err(too_large("image", position, bytes, "3.75 MB"));
    }
    Ok(Attachment::Image {
        format,
        bytes,
        sha256,
    })
}

/// Letters, digits, single spaces, hyphens, parentheses and square brackets.
pub fn is_valid_document_name(name: &str) -> bool {
    let length = name.chars().count();
    (1..=MAX_DOCUMENT_NAME_CHARS).contains(&length)
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || " -()[]".contains(c))
        && !name.contains("  ")
}

/// Validates a `document` block member.
pub fn check_document(document: &Value, position: BlockPosition) -> Result<Attachment, Error> {
    let format = enum_format(document, "document", position, &DOCUMENT_FORMATS)?;
    let name = document
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if !is_valid_document_name(name) {
        return Err(Error::validation(
            "The document file name can only contain alphanumeric characters, whitespace characters, hyphens, parentheses, and square brackets. The name can't contain more than one consecutive whitespace character.",
        ));
    }
    let bytes = measure_source(document, "document", position, true)?.bytes;
    if bytes > MAX_DOCUMENT_BYTES {
        return Err(too_large("document", position, bytes, "4.5 MB"));
    }
    Ok(Attachment::Document {
        name: name.to_string(),
        format,
        bytes,
    })
}

/// Refuses requests with more images or documents than Bedrock accepts.
pub fn check_counts(attachments: &[Attachment]) -> Result<(), Error> {
    let images = attachments
        .iter()
        .filter(|attachment| matches!(attachment, Attachment::Image { .. }))
        .count();
    let documents = attachments.len() - images;
    if images > MAX_IMAGES {
        return Err(Error::validation(format!(
            "Too many images in the request: {images}. The maximum number of images is {MAX_IMAGES}."
        )));
    }
    if documents > MAX_DOCUMENTS {
        return Err(Error::validation(format!(
            "Too many documents in the request: {documents}. The maximum number of documents is {MAX_DOCUMENTS}."
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const AT: BlockPosition = BlockPosition {
        message: 0,
        block: 1,
    };

    fn refusal(result: Result<Attachment, Error>) -> String {
        result.unwrap_err().as_service().1
    }

    #[test]
    fn images_are_measured() {
        let image = json!({"format": "png", "source": {"bytes": "aGVsbG8="}});
        let attachment = check_image(&image, AT).unwrap();
        assert_eq!(
            attachment,
            Attachment::Image {
                format: "png".into(),
                bytes: 5,
                sha256: "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824".into(),
            }
        );
        assert_eq!(attachment.annotation(), " [image/png 5 bytes]");
    }

    #[test]
    fn bad_images_are_refused() {
        let message = refusal(check_image(
            &json!({"format": "bmp", "source": {"bytes": "aGk="}}),
            AT,
        ));
        assert_eq!(
            message,
            "1 validation error detected: Value 'bmp' at 'messages.1.member.content.2.member.image.format' failed to satisfy constraint: Member must satisfy enum value set: [gif, jpeg, png, webp]"
        );
        assert!(refusal(check_image(&json!({"source": {"bytes": "aGk="}}), AT)).contains("null"));
        assert!(
            refusal(check_image(
                &json!({"format": "png", "source": {"bytes": "not base64!"}}),
                AT
            ))
            .contains("not valid base64")
        );
        assert!(
            refusal(check_image(
                &json!({"format": "png", "source": {"bytes": ""}}),
                AT
            ))
            .contains("greater than or equal to 1")
        );
        assert!(
            refusal(check_image(
                &json!({"format": "png", "source": {"s3Location": {"uri": "s3://b/k"}}}),
                AT
            ))
            .contains("s3Location")
        );
        assert!(refusal(check_image(&json!({"format": "png"}), AT)).contains("image.source"));
        let big = "A".repeat((MAX_IMAGE_BYTES + 3) / 3 * 4);
        assert!(
            refusal(check_image(
                &json!({"format": "jpeg", "source": {"bytes": big}}),
                AT
            ))
            .contains("3.75 MB")
        );
    }

    #[test]
    fn documents_are_measured_and_named() {
        let document = json!({"format": "pdf", "name": "Q3 report (final) [v2]", "source": {"bytes": "JVBERg=="}});
        let attachment = check_document(&document, AT).unwrap();
        assert_eq!(
            attachment.annotation(),
            " [document Q3 report (final) [v2] pdf 4 bytes]"
        );
        let text = json!({"format": "txt", "name": "notes", "source": {"text": "abc"}});
        assert_eq!(
            check_document(&text, AT).unwrap().annotation(),
            " [document notes txt 3 bytes]"
        );
    }

    #[test]
    fn bad_documents_are_refused() {
        for name in ["", "a.pdf", "two  spaces", "under_score", &"x".repeat(201)] {
            let document = json!({"format": "pdf", "name": name, "source": {"bytes": "aGk="}});
            assert!(
                refusal(check_document(&document, AT)).starts_with("The document file name"),
                "{name}"
            );
        }
        let bad_format = json!({"format": "exe", "name": "x", "source": {"bytes": "aGk="}});
        assert!(refusal(check_document(&bad_format, AT)).contains("document.format"));
        let big = "A".repeat((MAX_DOCUMENT_BYTES + 3) / 3 * 4);
        let large = json!({"format": "pdf", "name": "x", "source": {"bytes": big}});
        assert!(refusal(check_document(&large, AT)).contains("4.5 MB"));
    }

    #[test]
    fn counts_are_limited() {
        let image = Attachment::Image {
            format: "png".into(),
            bytes: 1,
            sha256: String::new(),
        };
        let document = Attachment::Document {
            name: "d".into(),
            format: "pdf".into(),
            bytes: 1,
        };
        assert!(check_counts(&vec![image.clone(); 20]).is_ok());
        assert!(
            check_counts(&vec![image; 21])
                .unwrap_err()
                .as_service()
                .1
                .contains("images")
        );
        assert!(check_counts(&vec![document.clone(); 5]).is_ok());
        assert!(
            check_counts(&vec![document; 6])
                .unwrap_err()
                .as_service()
                .1
                .contains("documents")
        );
    }

    #[test]
    fn document_names_follow_bedrock_rules() {
        assert!(is_valid_document_name("Annual Report-2024 (draft) [1]"));
        assert!(!is_valid_document_name("report.pdf"));
        assert!(!is_valid_document_name("a\tb"));
    }
}
