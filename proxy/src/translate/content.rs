//! OpenAI content parts (text, images, files) -> Converse content blocks.

use aws_sdk_bedrockruntime::types::{
    ContentBlock, DocumentBlock, DocumentFormat, DocumentSource, ImageBlock, ImageFormat,
    ImageSource,
};
use aws_smithy_types::Blob;
use base64::Engine;
use serde_json::Value;

use crate::error::ApiError;
use crate::openai::ContentPart;

/// A `data:` URL split into its media type and decoded bytes.
#[derive(Debug, PartialEq, Eq)]
pub struct DataUrl {
    pub media_type: String,
    pub bytes: Vec<u8>,
}

pub fn parse_data_url(url: &str) -> Result<DataUrl, String> {
    let rest = url
        .strip_prefix("data:")
        .ok_or_else(|| "expected a data: URL".to_owned())?;
    let (header, payload) = rest
        .split_once(',')
        .ok_or_else(|| "the data: URL has no ',' before its data".to_owned())?;
    let media_type = header
        .strip_suffix(";base64")
        .ok_or_else(|| "only base64 data: URLs are supported".to_owned())?
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    let compact: String = payload
        .chars()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|error| format!("the base64 data is invalid: {error}"))?;
    if bytes.is_empty() {
        return Err("the data is empty".to_owned());
    }
    Ok(DataUrl { media_type, bytes })
}

pub fn image_format(media_type: &str) -> Option<ImageFormat> {
    match media_type {
        "image/png" => Some(ImageFormat::Png),
        "image/jpeg" | "image/jpg" => Some(ImageFormat::Jpeg),
        "image/gif" => Some(ImageFormat::Gif),
        "image/webp" => Some(ImageFormat::Webp),
        _ => None,
    }
}

pub fn document_format(media_type: &str) -> Option<DocumentFormat> {
    match media_type {
        "application/pdf" => Some(DocumentFormat::Pdf),
        "text/csv" => Some(DocumentFormat::Csv),
        "application/msword" => Some(DocumentFormat::Doc),
        "application/vnd.openxmlformats-officedocument.wordprocessingml.document" => {
            Some(DocumentFormat::Docx)
        }
        "text/html" => Some(DocumentFormat::Html),
        "text/markdown" => Some(DocumentFormat::Md),
        "text/plain" => Some(DocumentFormat::Txt),
        "application/vnd.ms-excel" => Some(DocumentFormat::Xls),
        "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet" => {
            Some(DocumentFormat::Xlsx)
        }
        _ => None,
    }
}

/// Bedrock document names allow letters, digits, single spaces, hyphens,
/// parentheses and square brackets.
pub fn document_name(filename: Option<&str>, fallback_index: usize) -> String {
    let stem = filename
        .map(|name| name.rsplit_once('.').map_or(name, |(stem, _)| stem))
        .unwrap_or_default();
    let mut name = String::new();
    for character in stem.chars() {
        let keep = character.is_ascii_alphanumeric() || "-()[]".contains(character);
        let next = if keep { character } else { ' ' };
        if next == ' ' && (name.is_empty() || name.ends_with(' ')) {
            continue;
        }
        name.push(next);
    }
    let name = name.trim_end().chars().take(200).collect::<String>();
    if name.is_empty() {
        format!("document-{}", fallback_index + 1)
    } else {
        name
    }
}

/// Whether an image URL is one the gateway fetches (http or https, any case).
pub fn is_http_url(url: &str) -> bool {
    let url = url.trim_start();
    ["http://", "https://"].iter().any(|scheme| {
        url.get(..scheme.len())
            .is_some_and(|start| start.eq_ignore_ascii_case(scheme))
    })
}

/// One content part as a Bedrock block; `None` for parts that carry nothing.
pub fn part_to_block(
    part: &ContentPart,
    param: &str,
    index: usize,
) -> Result<Option<ContentBlock>, ApiError> {
    match part {
        ContentPart::Text { text } | ContentPart::Refusal { refusal: text } => {
            Ok((!text.trim().is_empty()).then(|| ContentBlock::Text(text.clone())))
        }
        ContentPart::ImageUrl { image_url } => image_block(image_url, param).map(Some),
        ContentPart::File { file } => document_block(file, param, index).map(Some),
        ContentPart::InputAudio { .. } => Err(ApiError::invalid(
            "Audio input is not supported by Bedrock Converse.",
            Some(param),
        )),
    }
}

fn image_block(image_url: &Value, param: &str) -> Result<ContentBlock, ApiError> {
    let url = match image_url {
        Value::String(url) => url.as_str(),
        Value::Object(fields) => fields
            .get("url")
            .and_then(Value::as_str)
            .unwrap_or_default(),
        _ => "",
    };
    if is_http_url(url) {
        return Err(ApiError::invalid(
            "This image URL was not fetched (fetching image URLs is turned off on this gateway, or the image is in a system message); send the image inline as a data: URL.",
            Some(param),
        ));
    }
    let data = parse_data_url(url)
        .map_err(|reason| ApiError::invalid(format!("Invalid image: {reason}."), Some(param)))?;
    let format = image_format(&data.media_type).ok_or_else(|| {
        ApiError::invalid(
            format!(
                "Unsupported image type '{}': use png, jpeg, gif or webp.",
                data.media_type
            ),
            Some(param),
        )
    })?;
    ImageBlock::builder()
        .format(format)
        .source(ImageSource::Bytes(Blob::new(data.bytes)))
        .build()
        .map(ContentBlock::Image)
        .map_err(|error| ApiError::invalid(error.to_string(), Some(param)))
}

fn document_block(file: &Value, param: &str, index: usize) -> Result<ContentBlock, ApiError> {
    let file_data = file.get("file_data").and_then(Value::as_str).ok_or_else(|| {
        ApiError::invalid(
            "File parts need inline 'file_data' (a base64 data: URL); uploaded file ids are not supported.",
            Some(param),
        )
    })?;
    let data = parse_data_url(file_data)
        .map_err(|reason| ApiError::invalid(format!("Invalid file: {reason}."), Some(param)))?;
    let format = document_format(&data.media_type).ok_or_else(|| {
        ApiError::invalid(
            format!(
                "Unsupported document type '{}': use pdf, csv, doc, docx, html, md, txt, xls or xlsx.",
                data.media_type
            ),
            Some(param),
        )
    })?;
    DocumentBlock::builder()
        .format(format)
        .name(document_name(
            file.get("filename").and_then(Value::as_str),
            index,
        ))
        .source(DocumentSource::Bytes(Blob::new(data.bytes)))
        .build()
        .map(ContentBlock::Document)
        .map_err(|error| ApiError::invalid(error.to_string(), Some(param)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn part(value: Value) -> ContentPart {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn data_urls_are_decoded() {
        assert_eq!(
            parse_data_url("data:image/PNG;base64,aGk=").unwrap(),
            DataUrl {
                media_type: "image/png".into(),
                bytes: b"hi".to_vec()
            }
        );
        assert_eq!(
            parse_data_url("data:application/pdf;name=x.pdf;base64,aG\nk=")
                .unwrap()
                .bytes,
            b"hi"
        );
        for bad in [
            "http://x",
            "data:image/png,hi",
            "data:image/png;base64",
            "data:image/png;base64,!!",
            "data:image/png;base64,",
        ] {
            assert!(parse_data_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn every_image_format_is_recognised() {
        for (media, format) in [
            ("image/png", ImageFormat::Png),
            ("image/jpeg", ImageFormat::Jpeg),
            ("image/jpg", ImageFormat::Jpeg),
            ("image/gif", ImageFormat::Gif),
            ("image/webp", ImageFormat::Webp),
        ] {
            assert_eq!(image_format(media), Some(format));
            let block = part_to_block(
                &part(json!({"type": "image_url", "image_url": {"url": format!("data:{media};base64,aGk=")}})),
                "p",
                0,
            )
            .unwrap()
            .unwrap();
            assert_eq!(
                block
                    .as_image()
                    .unwrap()
                    .source()
                    .unwrap()
                    .as_bytes()
                    .unwrap()
                    .as_ref(),
                b"hi"
            );
        }
        assert_eq!(image_format("image/tiff"), None);
    }

    #[test]
    fn files_become_named_documents() {
        let block = part_to_block(
            &part(
                json!({"type": "file", "file": {"filename": "Q3 report (final).pdf",
                "file_data": "data:application/pdf;base64,JVBERi0="}}),
            ),
            "p",
            0,
        )
        .unwrap()
        .unwrap();
        let document = block.as_document().unwrap();
        assert_eq!(document.format(), &DocumentFormat::Pdf);
        assert_eq!(document.name(), "Q3 report (final)");
        assert_eq!(document_name(None, 2), "document-3");
        assert_eq!(document_name(Some("a__b..c.txt"), 0), "a b c");
        assert_eq!(document_name(Some("%%%.md"), 0), "document-1");
        for (media, format) in [
            ("text/csv", DocumentFormat::Csv),
            ("text/plain", DocumentFormat::Txt),
            ("text/markdown", DocumentFormat::Md),
            ("text/html", DocumentFormat::Html),
            ("application/msword", DocumentFormat::Doc),
            ("application/vnd.ms-excel", DocumentFormat::Xls),
        ] {
            assert_eq!(document_format(media), Some(format));
        }
    }

    #[test]
    fn bad_media_is_refused_naming_the_part() {
        let cases = [
            json!({"type": "image_url", "image_url": {"url": "data:image/tiff;base64,aGk="}}),
            json!({"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}}),
            json!({"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}),
            json!({"type": "image_url", "image_url": 5}),
            json!({"type": "file", "file": {"file_id": "file-123"}}),
            json!({"type": "file", "file": {"file_data": "data:application/zip;base64,aGk="}}),
            json!({"type": "input_audio", "input_audio": {"data": "aGk=", "format": "wav"}}),
        ];
        for case in cases {
            match part_to_block(&part(case.clone()), "messages[0].content[1]", 0) {
                Err(ApiError::InvalidRequest { param, .. }) => {
                    assert_eq!(param.as_deref(), Some("messages[0].content[1]"), "{case}")
                }
                other => panic!("{case} should be refused, got {other:?}"),
            }
        }
    }

    #[test]
    fn http_urls_are_recognised_in_any_case() {
        for url in [
            "http://example.com/a.png",
            "https://example.com/a.png",
            "HTTPS://EXAMPLE.COM/A.PNG",
            " Http://x",
        ] {
            assert!(is_http_url(url), "{url}");
        }
        for url in [
            "data:image/png;base64,aGk=",
            "ftp://example.com/a.png",
            "http:/x",
            "https:",
            "",
            "é",
        ] {
            assert!(!is_http_url(url), "{url}");
        }
    }

    #[test]
    fn blank_text_parts_carry_nothing() {
        assert!(
            part_to_block(&part(json!({"type": "text", "text": "  "})), "p", 0)
                .unwrap()
                .is_none()
        );
    }
}
