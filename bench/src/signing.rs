//! SigV4 signatures for requests sent straight to the emulator, made with the `aws-sigv4`
//! crate the AWS SDKs use. A request with a fixed body is signed once and replayed: a
//! signature stays valid for 15 minutes, longer than a whole benchmark run.

use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningSettings, sign};
use aws_sigv4::sign::v4;

use crate::error::{BenchError, Result};

/// The signing name Bedrock (runtime and control plane) uses.
const SIGNING_NAME: &str = "bedrock";

#[derive(Debug, Clone)]
pub struct AwsSigner {
    pub access_key_id: String,
    pub secret_access_key: String,
    pub region: String,
}

impl AwsSigner {
    /// The headers (`authorization`, `x-amz-date`, ...) that sign a request made of `url`,
    /// `headers` and `body`, as of `at`.
    pub fn signature_headers(
        &self,
        method: &str,
        url: &str,
        headers: &[(String, String)],
        body: &[u8],
        at: SystemTime,
    ) -> Result<Vec<(String, String)>> {
        let identity = Credentials::new(
            &self.access_key_id,
            &self.secret_access_key,
            None,
            None,
            "bedrock-gateway-bench",
        )
        .into();
        let params = v4::SigningParams::builder()
            .identity(&identity)
            .region(&self.region)
            .name(SIGNING_NAME)
            .time(at)
            .settings(SigningSettings::default())
            .build()
            .map_err(|error| BenchError::Signing(error.to_string()))?
            .into();
        let signable = SignableRequest::new(
            method,
            url,
            headers
                .iter()
                .map(|(name, value)| (name.as_str(), value.as_str())),
            SignableBody::Bytes(body),
        )
        .map_err(|error| BenchError::Signing(error.to_string()))?;
        let (instructions, _signature) = sign(signable, &params)
            .map_err(|error| BenchError::Signing(error.to_string()))?
            .into_parts();
        Ok(instructions
            .headers()
            .map(|(name, value)| (name.to_owned(), value.to_owned()))
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_host_and_date() {
        let signer = AwsSigner {
            access_key_id: "AKIDEXAMPLE".into(),
            secret_access_key: "secret".into(),
            region: "us-east-1".into(),
        };
        let headers = vec![("host".to_owned(), "127.0.0.1:4599".to_owned())];
        let signed = signer
            .signature_headers(
                "POST",
                "http://127.0.0.1:4599/model/m%3A0/converse",
                &headers,
                b"{}",
                SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_700_000_000),
            )
            .unwrap();
        let value = |name: &str| {
            signed
                .iter()
                .find(|(key, _)| key.eq_ignore_ascii_case(name))
                .map(|(_, value)| value.clone())
                .unwrap_or_default()
        };
        assert_eq!(value("x-amz-date"), "20231114T221320Z");
        let authorization = value("authorization");
        assert!(authorization.starts_with(
            "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20231114/us-east-1/bedrock/aws4_request"
        ));
        assert!(authorization.contains("SignedHeaders=host;x-amz-date"));
    }
}
