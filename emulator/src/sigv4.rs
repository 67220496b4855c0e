//! Verification of AWS Signature Version 4 request signatures.
//!
//! The canonical request is rebuilt the way the AWS SDKs build it for every service except S3:
//! the path as sent on the wire (already percent-encoded once) is dot-segment normalised and
//! percent-encoded a second time, so `%3A` in a model id becomes `%253A`.

use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::clock;
use crate::error::{Error, ErrorKind};
use crate::uri_encoding::{parse_query, percent_encode};

pub const ALGORITHM: &str = "AWS4-HMAC-SHA256";
const MAX_CLOCK_SKEW_SECONDS: i64 = 15 * 60;

/// The parts of an HTTP request that take part in the signature.
#[derive(Debug, Clone, Copy)]
pub struct SignableRequest<'a> {
    pub method: &'a str,
    /// Path exactly as received, still percent-encoded.
    pub raw_path: &'a str,
    /// Query string exactly as received, without the `?`.
    pub raw_query: &'a str,
    /// Header names in lower case, in the order received.
    pub headers: &'a [(String, String)],
    pub body: &'a [u8],
}

impl SignableRequest<'_> {
    fn header_values(&self, name: &str) -> impl Iterator<Item = &str> {
        self.headers
            .iter()
            .filter(move |(key, _)| key == name)
            .map(|(_, value)| value.as_str())
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.header_values(name).next()
    }
}

/// What the server accepts.
#[derive(Debug, Clone)]
pub struct ExpectedCredentials<'a> {
    pub access_key_id: &'a str,
    pub secret_access_key: &'a str,
    /// When set, requests must carry exactly this `x-amz-security-token`.
    pub session_token: Option<&'a str>,
    /// Unix time from which the session token is refused as expired.
    pub expires_at: Option<i64>,
    pub region: &'a str,
    pub service: &'a str,
}

/// The identity a request presented (whether or not its signature is valid).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PresentedIdentity {
    pub access_key_id: String,
    pub session_token: Option<String>,
}

/// A parsed `Authorization: AWS4-HMAC-SHA256 ...` header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub access_key_id: String,
    pub date: String,
    pub region: String,
    pub service: String,
    pub terminator: String,
    pub signed_headers: Vec<String>,
    pub signature: String,
}

fn incomplete(message: String) -> Error {
    Error::service(ErrorKind::IncompleteSignature, message)
}

fn invalid_signature(message: impl Into<String>) -> Error {
    Error::service(ErrorKind::InvalidSignature, message)
}

fn unrecognized_client() -> Error {
    Error::service(
        ErrorKind::UnrecognizedClient,
        ErrorKind::UnrecognizedClient.default_message(),
    )
}

/// Parses the `Authorization` header value.
pub fn parse_authorization(value: &str) -> Result<Authorization, Error> {
    let value = value.trim();
    let Some(rest) = value.strip_prefix(ALGORITHM) else {
        return Err(incomplete(format!(
            "Authorization header requires the '{ALGORITHM}' algorithm. Authorization={value}"
        )));
    };
    let (mut credential, mut signed_headers, mut signature) = (None, None, None);
    for part in rest.split(',') {
        let part = part.trim();
        if let Some(v) = part.strip_prefix("Credential=") {
            credential = Some(v);
        } else if let Some(v) = part.strip_prefix("SignedHeaders=") {
            signed_headers = Some(v);
        } else if let Some(v) = part.strip_prefix("Signature=") {
            signature = Some(v);
        }
    }
    let mut missing = Vec::new();
    for (name, found) in [
        ("Credential", credential.is_some()),
        ("Signature", signature.is_some()),
        ("SignedHeaders", signed_headers.is_some()),
    ] {
        if !found {
            missing.push(format!("Authorization header requires '{name}' parameter."));
        }
    }
    let (Some(credential), Some(signed_headers), Some(signature)) =
        (credential, signed_headers, signature)
    else {
        return Err(incomplete(format!(
            "{} Authorization={value}",
            missing.join(" ")
        )));
    };
    let scope: Vec<&str> = credential.split('/').collect();
    let [access_key_id, date, region, service, terminator] = scope.as_slice() else {
        return Err(incomplete(format!(
            "Credential should be scoped to a valid region, service and terminator. Authorization={value}"
        )));
    };
    Ok(Authorization {
        access_key_id: (*access_key_id).to_string(),
        date: (*date).to_string(),
        region: (*region).to_string(),
        service: (*service).to_string(),
        terminator: (*terminator).to_string(),
        signed_headers: signed_headers
            .split(';')
            .map(|name| name.trim().to_ascii_lowercase())
            .filter(|name| !name.is_empty())
            .collect(),
        signature: signature.trim().to_string(),
    })
}

/// The identity a request claims, read without checking anything.
pub fn presented_identity(request: &SignableRequest<'_>) -> Option<PresentedIdentity> {
    let authorization = parse_authorization(request.header("authorization")?).ok()?;
    Some(PresentedIdentity {
        access_key_id: authorization.access_key_id,
        session_token: request.header("x-amz-security-token").map(str::to_string),
    })
}

/// Canonical URI: dot segments removed, then the already-encoded path encoded again.
pub fn canonical_uri(raw_path: &str) -> String {
    let path = if raw_path.is_empty() { "/" } else { raw_path };
    let normalized = if path.contains('.') || path.contains("//") {
        remove_dot_segments(path)
    } else {
        path.to_string()
    };
    percent_encode(&normalized, true)
}

fn remove_dot_segments(path: &str) -> String {
    let mut segments: Vec<&str> = Vec::new();
    for segment in path.split('/') {
        match segment {
            "" | "." => {}
            ".." => {
                segments.pop();
            }
            other => segments.push(other),
        }
    }
    let mut result = format!("/{}", segments.join("/"));
    let keeps_trailing_slash = ["/", "/.", "/./", "/..", "/../"]
        .iter()
        .any(|suffix| path.ends_with(suffix));
    if keeps_trailing_slash && !result.ends_with('/') {
        result.push('/');
    }
    result
}

/// Canonical query string: decoded, re-encoded, sorted by encoded key then value.
pub fn canonical_query(raw_query: &str) -> String {
    let mut pairs: Vec<(String, String)> = parse_query(raw_query)
        .into_iter()
        .map(|(key, value)| (percent_encode(&key, false), percent_encode(&value, false)))
        .collect();
    pairs.sort();
    pairs
        .iter()
        .map(|(key, value)| format!("{key}={value}"))
        .collect::<Vec<_>>()
        .join("&")
}

/// Trims and collapses runs of spaces, as SigV4 requires for header values.
fn normalize_header_value(value: &str) -> String {
    let trimmed = value.trim_matches(' ');
    let mut out = String::with_capacity(trimmed.len());
    let mut previous_space = false;
    for ch in trimmed.chars() {
        if ch == ' ' && previous_space {
            continue;
        }
        previous_space = ch == ' ';
        out.push(ch);
    }
    out
}

fn canonical_headers(request: &SignableRequest<'_>, signed_headers: &[String]) -> String {
    let mut out = String::new();
    for name in signed_headers {
        let values: Vec<String> = request
            .header_values(name)
            .map(normalize_header_value)
            .collect();
        out.push_str(name);
        out.push(':');
        out.push_str(&values.join(","));
        out.push('\n');
    }
    out
}

pub fn hex_sha256(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The payload hash: `x-amz-content-sha256` when sent, else the SHA-256 of the body.
pub fn payload_hash(request: &SignableRequest<'_>) -> String {
    match request.header("x-amz-content-sha256") {
        Some(declared) => declared.trim().to_string(),
        None => hex_sha256(request.body),
    }
}

pub fn canonical_request(request: &SignableRequest<'_>, signed_headers: &[String]) -> String {
    format!(
        "{}\n{}\n{}\n{}\n{}\n{}",
        request.method,
        canonical_uri(request.raw_path),
        canonical_query(request.raw_query),
        canonical_headers(request, signed_headers),
        signed_headers.join(";"),
        payload_hash(request)
    )
}

pub fn string_to_sign(amz_date: &str, scope: &str, canonical_request: &str) -> String {
    format!(
        "{ALGORITHM}\n{amz_date}\n{scope}\n{}",
        hex_sha256(canonical_request.as_bytes())
    )
}

fn hmac_sha256(key: &[u8], data: &[u8]) -> Vec<u8> {
    // HMAC accepts keys of any length, so construction cannot fail.
    match Hmac::<Sha256>::new_from_slice(key) {
        Ok(mut mac) => {
            mac.update(data);
            mac.finalize().into_bytes().to_vec()
        }
        Err(_) => Vec::new(),
    }
}

pub fn signing_key(secret_access_key: &str, date: &str, region: &str, service: &str) -> Vec<u8> {
    let k_date = hmac_sha256(
        format!("AWS4{secret_access_key}").as_bytes(),
        date.as_bytes(),
    );
    let k_region = hmac_sha256(&k_date, region.as_bytes());
    let k_service = hmac_sha256(&k_region, service.as_bytes());
    hmac_sha256(&k_service, b"aws4_request")
}

pub fn sign(signing_key: &[u8], string_to_sign: &str) -> String {
    hex::encode(hmac_sha256(signing_key, string_to_sign.as_bytes()))
}

fn constant_time_eq(left: &str, right: &str) -> bool {
    left.len() == right.len()
        && left
            .bytes()
            .zip(right.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0
}

/// Verifies a request's SigV4 signature against the expected credentials.
pub fn verify(
    request: &SignableRequest<'_>,
    expected: &ExpectedCredentials<'_>,
    now_unix: i64,
) -> Result<PresentedIdentity, Error> {
    let Some(header) = request.header("authorization") else {
        return Err(Error::service(
            ErrorKind::MissingAuthenticationToken,
            ErrorKind::MissingAuthenticationToken.default_message(),
        ));
    };
    let authorization = parse_authorization(header)?;
    let Some(amz_date) = request.header("x-amz-date").map(str::trim) else {
        return Err(incomplete(format!(
            "Authorization header requires existence of either a 'X-Amz-Date' or a 'Date' header. Authorization={header}"
        )));
    };
    if !authorization
        .signed_headers
        .iter()
        .any(|name| name == "host")
    {
        return Err(incomplete(
            "'Host' or ':authority' must be a 'SignedHeader' in the AWS Authorization.".to_string(),
        ));
    }
    let session_token = request.header("x-amz-security-token").map(str::to_string);
    if authorization.access_key_id != expected.access_key_id {
        return Err(unrecognized_client());
    }
    if let Some(required) = expected.session_token
        && session_token.as_deref() != Some(required)
    {
        return Err(unrecognized_client());
    }
    if expected
        .expires_at
        .is_some_and(|expires_at| now_unix >= expires_at)
    {
        return Err(Error::service(
            ErrorKind::ExpiredToken,
            ErrorKind::ExpiredToken.default_message(),
        ));
    }
    check_scope(&authorization, expected, amz_date)?;
    check_clock_skew(amz_date, now_unix)?;

    let canonical = canonical_request(request, &authorization.signed_headers);
    let scope = format!(
        "{}/{}/{}/{}",
        authorization.date, authorization.region, authorization.service, authorization.terminator
    );
    let to_sign = string_to_sign(amz_date, &scope, &canonical);
    let key = signing_key(
        expected.secret_access_key,
        &authorization.date,
        &authorization.region,
        &authorization.service,
    );
    let computed = sign(&key, &to_sign);
    if !constant_time_eq(&computed, &authorization.signature.to_ascii_lowercase()) {
        return Err(invalid_signature(format!(
            "{}\n\nThe Canonical String for this request should have been\n'{canonical}'\n\nThe String-to-Sign should have been\n'{to_sign}'\n",
            ErrorKind::InvalidSignature.default_message()
        )));
    }
    Ok(PresentedIdentity {
        access_key_id: authorization.access_key_id,
        session_token,
    })
}

fn check_scope(
    authorization: &Authorization,
    expected: &ExpectedCredentials<'_>,
    amz_date: &str,
) -> Result<(), Error> {
    if authorization.region != expected.region {
        return Err(invalid_signature(format!(
            "Credential should be scoped to a valid region, not '{}'. ",
            authorization.region
        )));
    }
    if authorization.service != expected.service {
        return Err(invalid_signature(format!(
            "Credential should be scoped to correct service: '{}'. ",
            expected.service
        )));
    }
    if authorization.terminator != "aws4_request" {
        return Err(invalid_signature(format!(
            "Credential should be scoped with a valid terminator: 'aws4_request', not '{}'. ",
            authorization.terminator
        )));
    }
    let http_date = amz_date.get(..8).unwrap_or(amz_date);
    if authorization.date != http_date {
        return Err(invalid_signature(format!(
            "Date in Credential scope does not match YYYYMMDD from ISO-8601 version of date from HTTP: '{}' != '{http_date}', from '{amz_date}'.",
            authorization.date
        )));
    }
    Ok(())
}

fn check_clock_skew(amz_date: &str, now_unix: i64) -> Result<(), Error> {
    let Some(signed_at) = clock::parse_amz_date(amz_date) else {
        return Err(incomplete(format!(
            "Date must be in ISO-8601 'basic format'. Got '{amz_date}'. See http://en.wikipedia.org/wiki/ISO_8601"
        )));
    };
    let now = clock::format_amz_date(now_unix);
    if signed_at < now_unix - MAX_CLOCK_SKEW_SECONDS {
        return Err(invalid_signature(format!(
            "Signature expired: {amz_date} is now earlier than {} ({now} - 15 min.)",
            clock::format_amz_date(now_unix - MAX_CLOCK_SKEW_SECONDS)
        )));
    }
    if signed_at > now_unix + MAX_CLOCK_SKEW_SECONDS {
        return Err(invalid_signature(format!(
            "Signature not yet current: {amz_date} is still later than {} ({now} + 15 min.)",
            clock::format_amz_date(now_unix + MAX_CLOCK_SKEW_SECONDS)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY";
    const SUITE_DATE: &str = "20150830T123600Z";
    const SUITE_NOW: i64 = 1_440_938_160;

    fn headers(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn suite_expected() -> ExpectedCredentials<'static> {
        ExpectedCredentials {
            access_key_id: "AKIDEXAMPLE",
            secret_access_key: SECRET,
            session_token: None,
            expires_at: None,
            region: "us-east-1",
            service: "service",
        }
    }

    fn vanilla_headers(signature: &str) -> Vec<(String, String)> {
        headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE),
            (
                "authorization",
                &format!(
                    "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature={signature}"
                ),
            ),
        ])
    }

    const VANILLA_SIGNATURE: &str =
        "5fa00fa31553b73ebf1942676e86291e8372ff2a2260956d9b8aae1d763fbf31";

    #[test]
    fn get_vanilla_canonical_request_and_signature() {
        let headers = vanilla_headers(VANILLA_SIGNATURE);
        let request = SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            body: b"",
        };
        let signed = ["host".to_string(), "x-amz-date".to_string()];
        let canonical = canonical_request(&request, &signed);
        assert_eq!(
            canonical,
            "GET\n/\n\nhost:example.amazonaws.com\nx-amz-date:20150830T123600Z\n\nhost;x-amz-date\ne3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        let to_sign = string_to_sign(
            SUITE_DATE,
            "20150830/us-east-1/service/aws4_request",
            &canonical,
        );
        assert_eq!(
            to_sign,
            "AWS4-HMAC-SHA256\n20150830T123600Z\n20150830/us-east-1/service/aws4_request\nbb579772317eb040ac9ed261061d46c1f17a8133879d6129b6e1c25292927e63"
        );
        let key = signing_key(SECRET, "20150830", "us-east-1", "service");
        assert_eq!(sign(&key, &to_sign), VANILLA_SIGNATURE);
        let identity = verify(&request, &suite_expected(), SUITE_NOW).unwrap();
        assert_eq!(identity.access_key_id, "AKIDEXAMPLE");
        assert_eq!(identity.session_token, None);
    }

    #[test]
    fn get_vanilla_query_order_key_case() {
        let headers = headers(&[
            ("host", "example.amazonaws.com"),
            ("x-amz-date", SUITE_DATE),
            (
                "authorization",
                "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20150830/us-east-1/service/aws4_request, SignedHeaders=host;x-amz-date, Signature=b97d918cfa904a5beff61c982a1b6f458b799221646efd99d3219ec94cdf2500",
            ),
        ]);
        let request = SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "Param2=value2&Param1=value1",
            headers: &headers,
            body: b"",
        };
        assert!(verify(&request, &suite_expected(), SUITE_NOW).is_ok());
    }

    #[test]
    fn wrong_signature_is_rejected_with_the_canonical_request() {
        let headers = vanilla_headers(&"0".repeat(64));
        let request = get_root(&headers);
        let Err(Error::Service { kind, message }) = verify(&request, &suite_expected(), SUITE_NOW)
        else {
            panic!("expected a service error");
        };
        assert_eq!(kind, ErrorKind::InvalidSignature);
        assert!(message.starts_with("The request signature we calculated does not match"));
        assert!(message.contains("host;x-amz-date"));
    }

    fn kind_of(result: Result<PresentedIdentity, Error>) -> ErrorKind {
        match result {
            Err(error) => error.as_service().0,
            Ok(_) => panic!("expected an error"),
        }
    }

    fn get_root(headers: &[(String, String)]) -> SignableRequest<'_> {
        SignableRequest {
            method: "GET",
            raw_path: "/",
            raw_query: "",
            headers,
            body: b"",
        }
    }

    #[test]
    fn rejections_use_aws_error_types() {
        let signed = vanilla_headers(VANILLA_SIGNATURE);
        let request = get_root(&signed);

        let mut unknown_key = suite_expected();
        unknown_key.access_key_id = "AKIAOTHER";
        assert_eq!(
            kind_of(verify(&request, &unknown_key, SUITE_NOW)),
            ErrorKind::UnrecognizedClient
        );

        let mut needs_token = suite_expected();
        needs_token.session_token = Some("token");
        assert_eq!(
            kind_of(verify(&request, &needs_token, SUITE_NOW)),
            ErrorKind::UnrecognizedClient
        );

        let mut other_region = suite_expected();
        other_region.region = "eu-west-1";
        assert_eq!(
            kind_of(verify(&request, &other_region, SUITE_NOW)),
            ErrorKind::InvalidSignature
        );

        assert_eq!(
            kind_of(verify(&request, &suite_expected(), SUITE_NOW + 3600)),
            ErrorKind::InvalidSignature
        );

        assert_eq!(
            kind_of(verify(&get_root(&[]), &suite_expected(), SUITE_NOW)),
            ErrorKind::MissingAuthenticationToken
        );
    }

    #[test]
    fn expired_session_credentials_are_refused_from_their_expiry_on() {
        let signed = vanilla_headers(VANILLA_SIGNATURE);
        let request = get_root(&signed);
        let mut temporary = suite_expected();
        temporary.expires_at = Some(SUITE_NOW + 1);
        assert!(verify(&request, &temporary, SUITE_NOW).is_ok());
        temporary.expires_at = Some(SUITE_NOW);
        let error = verify(&request, &temporary, SUITE_NOW).unwrap_err();
        assert_eq!(
            error.as_service(),
            (
                ErrorKind::ExpiredToken,
                "The security token included in the request is expired".to_string()
            )
        );
    }

    #[test]
    fn malformed_authorization_is_incomplete() {
        for value in [
            "AWS4-HMAC-SHA256 Credential=AKID/20150830/us-east-1/service/aws4_request",
            "Basic dXNlcjpwYXNz",
            "AWS4-HMAC-SHA256 Credential=AKID, SignedHeaders=host, Signature=00",
        ] {
            let error = parse_authorization(value).unwrap_err();
            assert_eq!(
                error.as_service().0,
                ErrorKind::IncompleteSignature,
                "{value}"
            );
        }
    }

    #[test]
    fn path_is_encoded_twice_like_the_sdk() {
        assert_eq!(
            canonical_uri("/model/us.anthropic.claude-3-5-sonnet-20240620-v1%3A0/converse"),
            "/model/us.anthropic.claude-3-5-sonnet-20240620-v1%253A0/converse"
        );
        assert_eq!(canonical_uri(""), "/");
        assert_eq!(canonical_uri("/a/./b/../c//d/"), "/a/c/d/");
        assert_eq!(canonical_uri("/a b"), "/a%20b");
    }

    #[test]
    fn query_is_decoded_reencoded_and_sorted() {
        assert_eq!(
            canonical_query("typeEquals=SYSTEM_DEFINED&maxResults=2&nextToken=a%2Bb%3D"),
            "maxResults=2&nextToken=a%2Bb%3D&typeEquals=SYSTEM_DEFINED"
        );
        assert_eq!(canonical_query("b=&a=x y"), "a=x%20y&b=");
    }

    #[test]
    fn header_values_are_trimmed_and_collapsed() {
        assert_eq!(normalize_header_value("  a   b  c "), "a b c");
    }

    #[test]
    fn declared_payload_hash_wins() {
        let headers = headers(&[("x-amz-content-sha256", "UNSIGNED-PAYLOAD")]);
        let request = SignableRequest {
            method: "POST",
            raw_path: "/",
            raw_query: "",
            headers: &headers,
            body: b"ignored",
        };
        assert_eq!(payload_hash(&request), "UNSIGNED-PAYLOAD");
    }
}
