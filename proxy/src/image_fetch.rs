//! Fetching the http(s) URLs of `image_url` parts, guarded against
//! server-side request forgery.
//!
//! Every hop (the URL and each redirect) is parsed and checked: http or https
//! only, no userinfo. The host is resolved once, every address DNS returns is
//! classified, and the connection goes to an address that passed the check, so
//! a second lookup cannot swap in another address. Loopback, private,
//! link-local (the instance metadata service included), shared, multicast,
//! documentation and reserved ranges are refused, in IPv4 and in every IPv6
//! form that embeds an IPv4 address, unless an allowed CIDR covers them.
//! Bodies are streamed and abandoned at the size limit; the format comes from
//! the bytes, never from `Content-Type`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::header::{ACCEPT, CONTENT_LENGTH, HOST, LOCATION, USER_AGENT};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use prometheus::IntCounterVec;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use url::{Host, Url};

use crate::error::ApiError;
use crate::openai::{ChatCompletionRequest, ContentPart, MessageContent, Role};
use crate::translate::content::is_http_url;

/// Bedrock's limit for one image: 3.75 MB.
pub const DEFAULT_MAX_IMAGE_BYTES: usize = 3_932_160;
/// All the images of one request: the default request body limit.
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 20 * 1024 * 1024;
/// Bedrock accepts at most 20 images in one Converse request.
pub const DEFAULT_MAX_IMAGES_PER_REQUEST: usize = 20;

const USER_AGENT_VALUE: &str = concat!("bedrock-gateway-proxy/", env!("CARGO_PKG_VERSION"));
const ACCEPTED_TYPES: &str = "image/png, image/jpeg, image/gif, image/webp";

/// A network in CIDR notation (`10.0.0.0/8`, `fd00::/8`); a bare address is a
/// single host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    network: IpAddr,
    prefix: u8,
}

impl Cidr {
    pub fn contains(&self, address: IpAddr) -> bool {
        match (self.network, address) {
            (IpAddr::V4(network), IpAddr::V4(address)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(network) & mask == u32::from(address) & mask
            }
            (IpAddr::V6(network), IpAddr::V6(address)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(network) & mask == u128::from(address) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let text = text.trim();
        let (address, prefix) = match text.split_once('/') {
            Some((address, prefix)) => (address, Some(prefix)),
            None => (text, None),
        };
        let network: IpAddr = address
            .parse()
            .map_err(|_| format!("'{text}' is not an IP address or CIDR"))?;
        let longest = if network.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => longest,
            Some(prefix) => prefix
                .parse::<u8>()
                .ok()
                .filter(|prefix| *prefix <= longest)
                .ok_or_else(|| format!("'{text}' has an invalid prefix length"))?,
        };
        Ok(Cidr { network, prefix })
    }
}

/// Why an address is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressClass {
    Unspecified,
    Loopback,
    Private,
    SharedAddressSpace,
    LinkLocal,
    UniqueLocal,
    Multicast,
    Broadcast,
    Documentation,
    Reserved,
}

impl AddressClass {
    pub fn describe(self) -> &'static str {
        match self {
            AddressClass::Unspecified => "an unspecified address",
            AddressClass::Loopback => "a loopback address",
            AddressClass::Private => "a private address",
            AddressClass::SharedAddressSpace => "a shared (carrier-grade NAT) address",
            AddressClass::LinkLocal => "a link-local address",
            AddressClass::UniqueLocal => "a unique-local address",
            AddressClass::Multicast => "a multicast address",
            AddressClass::Broadcast => "the broadcast address",
            AddressClass::Documentation => "a documentation address",
            AddressClass::Reserved => "a reserved address",
        }
    }
}

/// The class of an address that is not publicly routable; `None` for a public one.
pub fn classify(address: IpAddr) -> Option<AddressClass> {
    match address {
        IpAddr::V4(address) => classify_v4(address),
        IpAddr::V6(address) => classify_v6(address),
    }
}

fn classify_v4(address: Ipv4Addr) -> Option<AddressClass> {
    let [a, b, c, _] = address.octets();
    let class = match (a, b, c) {
        _ if address.is_broadcast() => AddressClass::Broadcast,
        (0, _, _) => AddressClass::Unspecified,
        (10, _, _) => AddressClass::Private,
        (100, 64..=127, _) => AddressClass::SharedAddressSpace,
        (127, _, _) => AddressClass::Loopback,
        (169, 254, _) => AddressClass::LinkLocal,
        (172, 16..=31, _) => AddressClass::Private,
        (192, 0, 0) | (192, 88, 99) => AddressClass::Reserved,
        (192, 0, 2) | (198, 51, 100) | (203, 0, 113) => AddressClass::Documentation,
        (192, 168, _) => AddressClass::Private,
        (198, 18..=19, _) => AddressClass::Reserved,
        (224..=239, _, _) => AddressClass::Multicast,
        (240..=255, _, _) => AddressClass::Reserved,
        _ => return None,
    };
    Some(class)
}

fn embedded_v4(bits: u128) -> Ipv4Addr {
    Ipv4Addr::from((bits & 0xffff_ffff) as u32)
}

fn classify_v6(address: Ipv6Addr) -> Option<AddressClass> {
    let bits = u128::from(address);
    let segments = address.segments();
    if let Some(v4) = address.to_ipv4_mapped() {
        return classify_v4(v4);
    }
    if address.is_unspecified() {
        return Some(AddressClass::Unspecified);
    }
    if address.is_loopback() {
        return Some(AddressClass::Loopback);
    }
    // IPv4-compatible (::a.b.c.d) addresses are deprecated: refused whatever they embed.
    if bits >> 32 == 0 {
        return Some(classify_v4(embedded_v4(bits)).unwrap_or(AddressClass::Reserved));
    }
    // NAT64 (64:ff9b::/96) reaches the embedded IPv4 address.
    if bits >> 32 == 0x0064_ff9b_0000_0000_0000_0000 {
        return classify_v4(embedded_v4(bits));
    }
    // 6to4 (2002::/16) carries an IPv4 address in bits 16 to 48.
    if segments[0] == 0x2002 {
        return classify_v4(embedded_v4(bits >> 80));
    }
    let class = match segments[0] {
        0xff00..=0xffff => AddressClass::Multicast,
        0xfe80..=0xfebf => AddressClass::LinkLocal,
        // Site-local, deprecated but still private.
        0xfec0..=0xfeff => AddressClass::Private,
        0xfc00..=0xfdff => AddressClass::UniqueLocal,
        0x2001 if segments[1] == 0x0db8 => AddressClass::Documentation,
        0x3fff if segments[1] < 0x1000 => AddressClass::Documentation,
        // IETF protocol assignments (Teredo, ORCHID, benchmarking, ...).
        0x2001 if segments[1] < 0x0200 => AddressClass::Reserved,
        0x2000..=0x3fff => return None,
        // Everything outside global unicast 2000::/3.
        _ => AddressClass::Reserved,
    };
    Some(class)
}

/// Checks an address the proxy is about to connect to: refused unless it is
/// public or an allowed CIDR covers it (an IPv4-mapped address counts as its
/// IPv4 address).
pub fn check_address(address: IpAddr, allowed: &[Cidr]) -> Result<(), AddressClass> {
    let canonical = match address {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(address, IpAddr::V4),
        IpAddr::V4(_) => address,
    };
    if allowed
        .iter()
        .any(|cidr| cidr.contains(address) || cidr.contains(canonical))
    {
        return Ok(());
    }
    match classify(canonical) {
        Some(class) => Err(class),
        None => Ok(()),
    }
}

/// Why a fetch failed; the message is shown to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FetchError {
    #[error("the URL is invalid: {0}")]
    InvalidUrl(String),
    #[error("the host {host} is {}, which this gateway does not fetch from", class.describe())]
    RefusedAddress { host: String, class: AddressClass },
    #[error("the host {0} could not be resolved")]
    Unresolved(String),
    #[error("the connection to {host} failed: {reason}")]
    Connect { host: String, reason: String },
    #[error("the TLS handshake with {host} failed: {reason}")]
    Tls { host: String, reason: String },
    #[error("the HTTP exchange failed: {0}")]
    Protocol(String),
    #[error("the server answered HTTP {0}")]
    Status(u16),
    #[error("more than {0} redirects")]
    TooManyRedirects(usize),
    #[error("the image exceeds the limit of {0} bytes")]
    TooLarge(usize),
    #[error("the images of this request exceed the limit of {0} bytes in total")]
    RequestTooLarge(usize),
    #[error("the fetch took longer than {0} seconds")]
    Timeout(u64),
    #[error("the data is not a png, jpeg, gif or webp image")]
    NotAnImage,
}

impl FetchError {
    /// The `outcome` label of the fetch metric.
    pub fn outcome(&self) -> &'static str {
        match self {
            FetchError::InvalidUrl(_) => "invalid_url",
            FetchError::RefusedAddress { .. } => "refused_address",
            FetchError::Unresolved(_) => "unresolved",
            FetchError::Connect { .. } => "connect_failed",
            FetchError::Tls { .. } => "tls_failed",
            FetchError::Protocol(_) => "protocol_error",
            FetchError::Status(_) => "http_status",
            FetchError::TooManyRedirects(_) => "too_many_redirects",
            FetchError::TooLarge(_) | FetchError::RequestTooLarge(_) => "too_large",
            FetchError::Timeout(_) => "timeout",
            FetchError::NotAnImage => "not_an_image",
        }
    }
}

/// Parses and checks one URL (the client's or a redirect target).
pub fn parse_image_url(text: &str) -> Result<Url, FetchError> {
    let url = Url::parse(text.trim()).map_err(|error| FetchError::InvalidUrl(error.to_string()))?;
    check_url(&url)?;
    Ok(url)
}

fn check_url(url: &Url) -> Result<(), FetchError> {
    if !matches!(url.scheme(), "http" | "https") {
        return Err(FetchError::InvalidUrl(format!(
            "the scheme '{}' is not fetched; use http or https",
            url.scheme()
        )));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(FetchError::InvalidUrl(
            "credentials in URLs are not accepted".into(),
        ));
    }
    match url.host() {
        None => Err(FetchError::InvalidUrl("the URL has no host".into())),
        Some(Host::Domain("")) => Err(FetchError::InvalidUrl("the URL has no host".into())),
        Some(_) => Ok(()),
    }
}

/// The image formats Bedrock takes, recognised by their signatures.
pub fn sniff_image(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"\xff\xd8\xff") {
        Some("image/jpeg")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if bytes.len() >= 12 && bytes.starts_with(b"RIFF") && &bytes[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub enabled: bool,
    pub max_image_bytes: usize,
    pub max_request_bytes: usize,
    pub max_images: usize,
    pub timeout: Duration,
    pub connect_timeout: Duration,
    pub max_redirects: usize,
    pub allowed: Vec<Cidr>,
}

impl Default for FetchSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            max_image_bytes: DEFAULT_MAX_IMAGE_BYTES,
            max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
            max_images: DEFAULT_MAX_IMAGES_PER_REQUEST,
            timeout: Duration::from_secs(15),
            connect_timeout: Duration::from_secs(5),
            max_redirects: 3,
            allowed: Vec::new(),
        }
    }
}

/// A fetched image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchedImage {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl FetchedImage {
    pub fn data_url(&self) -> String {
        format!(
            "data:{};base64,{}",
            self.media_type,
            base64::engine::general_purpose::STANDARD.encode(&self.bytes)
        )
    }
}

pub struct ImageFetcher {
    settings: FetchSettings,
    outcomes: IntCounterVec,
    tls: OnceLock<Result<Arc<rustls::ClientConfig>, String>>,
}

enum Hop {
    Redirect(String),
    Image(Vec<u8>),
}

trait Connection: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Connection for T {}

impl ImageFetcher {
    /// `outcomes` counts fetches by their outcome label.
    pub fn new(settings: FetchSettings, outcomes: IntCounterVec) -> Self {
        Self {
            settings,
            outcomes,
            tls: OnceLock::new(),
        }
    }

    /// Replaces the http(s) image URLs of user and assistant messages by
    /// `data:` URLs of the fetched images, fetching them concurrently. With
    /// fetching off the URLs are left for the translation to refuse.
    pub async fn inline_image_urls(
        &self,
        request: &mut ChatCompletionRequest,
    ) -> Result<(), ApiError> {
        if !self.settings.enabled {
            return Ok(());
        }
        let mut wanted = Vec::new();
        for (message_index, message) in request.messages.iter().enumerate() {
            if !matches!(message.role, Role::User | Role::Assistant) {
                continue;
            }
            let Some(MessageContent::Parts(parts)) = &message.content else {
                continue;
            };
            for (part_index, part) in parts.iter().enumerate() {
                if let ContentPart::ImageUrl { image_url } = part
                    && let Some(url) = image_url_text(image_url).filter(|url| is_http_url(url))
                {
                    let param =
                        format!("messages[{message_index}].content[{part_index}].image_url");
                    if wanted.len() == self.settings.max_images {
                        return Err(ApiError::invalid(
                            format!(
                                "At most {} image URLs are fetched per request.",
                                self.settings.max_images
                            ),
                            Some(&param),
                        ));
                    }
                    wanted.push((message_index, part_index, param, url.to_owned()));
                }
            }
        }
        if wanted.is_empty() {
            return Ok(());
        }
        let request_bytes = AtomicUsize::new(0);
        let fetched =
            futures_util::future::try_join_all(wanted.iter().map(|(_, _, param, url)| {
                let request_bytes = &request_bytes;
                async move {
                    self.fetch(url, request_bytes).await.map_err(|error| {
                        ApiError::invalid(
                            format!("The image could not be fetched: {error}."),
                            Some(param),
                        )
                    })
                }
            }))
            .await?;
        for ((message_index, part_index, _, _), image) in wanted.iter().zip(fetched) {
            if let Some(MessageContent::Parts(parts)) =
                &mut request.messages[*message_index].content
                && let Some(ContentPart::ImageUrl { image_url }) = parts.get_mut(*part_index)
            {
                *image_url = serde_json::json!({ "url": image.data_url() });
            }
        }
        Ok(())
    }

    /// Fetches one image within the time limit, counting the outcome.
    pub async fn fetch(
        &self,
        url: &str,
        request_bytes: &AtomicUsize,
    ) -> Result<FetchedImage, FetchError> {
        let limit = self.settings.timeout;
        let result = match tokio::time::timeout(limit, self.follow(url, request_bytes)).await {
            Ok(result) => result,
            Err(_) => Err(FetchError::Timeout(limit.as_secs().max(1))),
        };
        let outcome = match &result {
            Ok(_) => "fetched",
            Err(error) => error.outcome(),
        };
        self.outcomes.with_label_values(&[outcome]).inc();
        if let Err(error) = &result {
            tracing::info!(outcome, reason = %error, "image URL not fetched");
        }
        result
    }

    async fn follow(
        &self,
        url: &str,
        request_bytes: &AtomicUsize,
    ) -> Result<FetchedImage, FetchError> {
        let mut current = parse_image_url(url)?;
        let mut redirects = 0;
        loop {
            match self.hop(&current, request_bytes).await? {
                Hop::Image(bytes) => {
                    let media_type = sniff_image(&bytes).ok_or(FetchError::NotAnImage)?;
                    return Ok(FetchedImage { media_type, bytes });
                }
                Hop::Redirect(location) => {
                    if redirects == self.settings.max_redirects {
                        return Err(FetchError::TooManyRedirects(self.settings.max_redirects));
                    }
                    redirects += 1;
                    current = current.join(&location).map_err(|error| {
                        FetchError::InvalidUrl(format!("the redirect target is invalid: {error}"))
                    })?;
                    check_url(&current)?;
                }
            }
        }
    }

    /// The addresses to connect to: the literal, or what DNS returns, each checked.
    async fn addresses(&self, url: &Url) -> Result<Vec<SocketAddr>, FetchError> {
        let port = url.port_or_known_default().unwrap_or(80);
        let host_text = url.host_str().unwrap_or_default().to_owned();
        let candidates: Vec<SocketAddr> = match url.host() {
            Some(Host::Ipv4(address)) => vec![SocketAddr::new(IpAddr::V4(address), port)],
            Some(Host::Ipv6(address)) => vec![SocketAddr::new(IpAddr::V6(address), port)],
            Some(Host::Domain(domain)) => tokio::net::lookup_host((domain, port))
                .await
                .map_err(|_| FetchError::Unresolved(host_text.clone()))?
                .collect(),
            None => return Err(FetchError::InvalidUrl("the URL has no host".into())),
        };
        let mut refused = None;
        let allowed: Vec<SocketAddr> = candidates
            .into_iter()
            .filter(
                |candidate| match check_address(candidate.ip(), &self.settings.allowed) {
                    Ok(()) => true,
                    Err(class) => {
                        refused.get_or_insert(class);
                        false
                    }
                },
            )
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(class)) => Err(FetchError::RefusedAddress {
                host: host_text,
                class,
            }),
            (true, None) => Err(FetchError::Unresolved(host_text)),
        }
    }

    async fn connect(&self, url: &Url) -> Result<Box<dyn Connection>, FetchError> {
        let host = url.host_str().unwrap_or_default().to_owned();
        let mut last_error = String::from("no address to connect to");
        let mut stream = None;
        for address in self.addresses(url).await? {
            match tokio::time::timeout(self.settings.connect_timeout, TcpStream::connect(address))
                .await
            {
                Ok(Ok(connected)) => {
                    stream = Some(connected);
                    break;
                }
                Ok(Err(error)) => last_error = error.to_string(),
                Err(_) => {
                    last_error = format!(
                        "no connection within {} seconds",
                        self.settings.connect_timeout.as_secs_f32()
                    )
                }
            }
        }
        let stream = stream.ok_or_else(|| FetchError::Connect {
            host: host.clone(),
            reason: last_error,
        })?;
        let _ = stream.set_nodelay(true);
        if url.scheme() != "https" {
            return Ok(Box::new(stream));
        }
        let server_name = match url.host() {
            Some(Host::Ipv4(address)) => ServerName::from(IpAddr::V4(address)),
            Some(Host::Ipv6(address)) => ServerName::from(IpAddr::V6(address)),
            _ => ServerName::try_from(host.clone()).map_err(|error| FetchError::Tls {
                host: host.clone(),
                reason: error.to_string(),
            })?,
        };
        let config = self.tls_config().map_err(|reason| FetchError::Tls {
            host: host.clone(),
            reason,
        })?;
        let connector = tokio_rustls::TlsConnector::from(config);
        let tls = connector
            .connect(server_name, stream)
            .await
            .map_err(|error| FetchError::Tls {
                host,
                reason: error.to_string(),
            })?;
        Ok(Box::new(tls))
    }

    /// One request: the image bytes, or where the server redirects to.
    async fn hop(&self, url: &Url, request_bytes: &AtomicUsize) -> Result<Hop, FetchError> {
        let stream = self.connect(url).await?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake::<_, Empty<Bytes>>(TokioIo::new(stream))
                .await
                .map_err(|error| FetchError::Protocol(error.to_string()))?;
        let host_header = match url.port() {
            Some(port) => format!("{}:{port}", url.host_str().unwrap_or_default()),
            None => url.host_str().unwrap_or_default().to_owned(),
        };
        let target = &url[url::Position::BeforePath..url::Position::AfterQuery];
        let request = Request::get(if target.is_empty() { "/" } else { target })
            .header(HOST, host_header)
            .header(USER_AGENT, USER_AGENT_VALUE)
            .header(ACCEPT, ACCEPTED_TYPES)
            .body(Empty::new())
            .map_err(|error| FetchError::InvalidUrl(error.to_string()))?;
        let exchange = async {
            let response = sender
                .send_request(request)
                .await
                .map_err(|error| FetchError::Protocol(error.to_string()))?;
            let status = response.status();
            if is_redirect(status) {
                let location = response
                    .headers()
                    .get(LOCATION)
                    .and_then(|value| value.to_str().ok())
                    .ok_or(FetchError::Status(status.as_u16()))?;
                return Ok(Hop::Redirect(location.to_owned()));
            }
            if !status.is_success() {
                return Err(FetchError::Status(status.as_u16()));
            }
            let limit = self.settings.max_image_bytes;
            let declared = response
                .headers()
                .get(CONTENT_LENGTH)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| value.parse::<u64>().ok());
            if declared.is_some_and(|length| length > limit as u64) {
                return Err(FetchError::TooLarge(limit));
            }
            let mut body = response.into_body();
            let mut bytes = Vec::with_capacity(declared.map_or(0, |length| length as usize));
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|error| FetchError::Protocol(error.to_string()))?;
                let Ok(data) = frame.into_data() else {
                    continue;
                };
                if bytes.len() + data.len() > limit {
                    return Err(FetchError::TooLarge(limit));
                }
                let before = request_bytes.fetch_add(data.len(), Ordering::Relaxed);
                if before + data.len() > self.settings.max_request_bytes {
                    return Err(FetchError::RequestTooLarge(self.settings.max_request_bytes));
                }
                bytes.extend_from_slice(&data);
            }
            Ok(Hop::Image(bytes))
        };
        // The connection is driven here rather than spawned, so a timeout or a
        // failed sibling fetch drops the socket with everything else.
        let mut exchange = pin!(exchange);
        let mut connection = pin!(connection);
        tokio::select! {
            biased;
            hop = &mut exchange => hop,
            closed = &mut connection => match closed {
                Ok(()) => exchange.await,
                Err(error) => Err(FetchError::Protocol(error.to_string())),
            },
        }
    }

    fn tls_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        self.tls.get_or_init(tls_client_config).clone()
    }
}

fn is_redirect(status: StatusCode) -> bool {
    matches!(status.as_u16(), 301 | 302 | 303 | 307 | 308)
}

fn image_url_text(image_url: &serde_json::Value) -> Option<&str> {
    match image_url {
        serde_json::Value::String(url) => Some(url),
        serde_json::Value::Object(fields) => fields.get("url").and_then(serde_json::Value::as_str),
        _ => None,
    }
}

/// TLS with the system's trusted roots (the image's CA bundle), as the AWS SDK uses.
fn tls_client_config() -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    let loaded = rustls_native_certs::load_native_certs();
    for error in &loaded.errors {
        tracing::warn!(%error, "a system CA certificate could not be loaded");
    }
    let (added, ignored) = roots.add_parsable_certificates(loaded.certs);
    if added == 0 {
        tracing::warn!(
            ignored,
            "no system CA certificates found: https image URLs will fail"
        );
    }
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map(|builder| Arc::new(builder.with_root_certificates(roots).with_no_client_auth()))
        .map_err(|error| error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(text: &str) -> IpAddr {
        text.parse().unwrap()
    }

    fn cidrs(list: &[&str]) -> Vec<Cidr> {
        list.iter().map(|text| text.parse().unwrap()).collect()
    }

    #[test]
    fn ipv4_special_ranges_are_classified() {
        use AddressClass::*;
        let cases = [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("100.64.0.1", SharedAddressSpace),
            ("100.127.255.254", SharedAddressSpace),
            ("127.0.0.1", Loopback),
            ("127.255.0.9", Loopback),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.0.0.8", Reserved),
            ("192.0.2.10", Documentation),
            ("192.88.99.1", Reserved),
            ("192.168.1.1", Private),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("240.0.0.1", Reserved),
            ("255.255.255.254", Reserved),
            ("255.255.255.255", Broadcast),
        ];
        for (address, class) in cases {
            assert_eq!(classify(ip(address)), Some(class), "{address}");
        }
    }

    #[test]
    fn public_ipv4_neighbours_of_special_ranges_pass() {
        for address in [
            "1.1.1.1",
            "8.8.8.8",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.0.1.1",
            "192.0.3.1",
            "192.88.98.1",
            "192.167.255.255",
            "192.169.0.0",
            "198.17.255.255",
            "198.20.0.0",
            "198.51.99.1",
            "203.0.112.1",
            "223.255.255.255",
        ] {
            assert_eq!(classify(ip(address)), None, "{address}");
        }
    }

    #[test]
    fn ipv6_special_ranges_are_classified() {
        use AddressClass::*;
        let cases = [
            ("::", Unspecified),
            ("::1", Loopback),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("ff02::1", Multicast),
            ("ff0e::101", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("3fff:fff::1", Documentation),
            ("2001::1", Reserved),
            ("2001:1ff::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Reserved),
            ("1000::1", Reserved),
            ("4000::1", Reserved),
            ("5f00::1", Reserved),
            ("fe00::1", Reserved),
        ];
        for (address, class) in cases {
            assert_eq!(classify(ip(address)), Some(class), "{address}");
        }
        for address in [
            "2600:1f18::1",
            "2a00:1450:4001::200e",
            "2001:200::1",
            "2001:4860:4860::8888",
            "3ffe::1",
            "3fff:1000::1",
        ] {
            assert_eq!(classify(ip(address)), None, "{address}");
        }
    }

    #[test]
    fn ipv6_forms_embedding_ipv4_are_classified_by_the_ipv4_address() {
        use AddressClass::*;
        let cases = [
            ("::ffff:127.0.0.1", Some(Loopback)),
            ("::ffff:7f00:1", Some(Loopback)),
            ("::ffff:169.254.169.254", Some(LinkLocal)),
            ("::ffff:10.1.2.3", Some(Private)),
            ("::ffff:100.64.0.1", Some(SharedAddressSpace)),
            ("::ffff:0.0.0.0", Some(Unspecified)),
            ("::ffff:255.255.255.255", Some(Broadcast)),
            ("::ffff:8.8.8.8", None),
            // IPv4-compatible: refused whatever they embed.
            ("::127.0.0.1", Some(Loopback)),
            ("::169.254.169.254", Some(LinkLocal)),
            ("::192.168.0.1", Some(Private)),
            ("::8.8.8.8", Some(Reserved)),
            // NAT64 well-known prefix.
            ("64:ff9b::127.0.0.1", Some(Loopback)),
            ("64:ff9b::a9fe:a9fe", Some(LinkLocal)),
            ("64:ff9b::8.8.8.8", None),
            // 6to4.
            ("2002:7f00:1::", Some(Loopback)),
            ("2002:a9fe:a9fe::1", Some(LinkLocal)),
            ("2002:c0a8:101::1", Some(Private)),
            ("2002:808:808::1", None),
        ];
        for (address, class) in cases {
            assert_eq!(classify(ip(address)), class, "{address}");
        }
    }

    #[test]
    fn allowed_cidrs_override_the_classification() {
        assert_eq!(
            check_address(ip("127.0.0.1"), &[]),
            Err(AddressClass::Loopback)
        );
        assert_eq!(check_address(ip("8.8.8.8"), &[]), Ok(()));
        let allowed = cidrs(&["127.0.0.0/8", "10.20.0.0/16", "fd00::/8", "169.254.169.254"]);
        assert_eq!(check_address(ip("127.0.0.1"), &allowed), Ok(()));
        assert_eq!(check_address(ip("::ffff:127.0.0.1"), &allowed), Ok(()));
        assert_eq!(check_address(ip("10.20.3.4"), &allowed), Ok(()));
        assert_eq!(
            check_address(ip("10.21.0.1"), &allowed),
            Err(AddressClass::Private)
        );
        assert_eq!(check_address(ip("fd00::5"), &allowed), Ok(()));
        assert_eq!(
            check_address(ip("fc00::5"), &allowed),
            Err(AddressClass::UniqueLocal)
        );
        assert_eq!(check_address(ip("169.254.169.254"), &allowed), Ok(()));
        assert_eq!(
            check_address(ip("169.254.169.253"), &allowed),
            Err(AddressClass::LinkLocal)
        );
        assert_eq!(
            check_address(ip("::1"), &allowed),
            Err(AddressClass::Loopback),
            "an IPv4 range does not allow IPv6 loopback"
        );
        let everything = cidrs(&["0.0.0.0/0", "::/0"]);
        assert_eq!(check_address(ip("192.168.0.1"), &everything), Ok(()));
        assert_eq!(check_address(ip("::1"), &everything), Ok(()));
    }

    #[test]
    fn cidrs_parse_and_match() {
        let cidr: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(cidr.contains(ip("10.1.255.1")));
        assert!(!cidr.contains(ip("10.2.0.1")));
        assert!(!cidr.contains(ip("::ffff:10.1.0.1")));
        let host: Cidr = " 192.168.1.5 ".parse().unwrap();
        assert!(host.contains(ip("192.168.1.5")));
        assert!(!host.contains(ip("192.168.1.6")));
        let loose: Cidr = "10.1.2.3/8".parse().unwrap();
        assert!(loose.contains(ip("10.200.0.1")));
        let v6: Cidr = "2001:db8:abcd::/48".parse().unwrap();
        assert!(v6.contains(ip("2001:db8:abcd:1::1")));
        assert!(!v6.contains(ip("2001:db8:abce::1")));
        assert!(v6.contains(ip("2001:db8:abcd::")));
        let all: Cidr = "::/0".parse().unwrap();
        assert!(all.contains(ip("ffff::1")));
        assert!(!all.contains(ip("1.2.3.4")));
        for bad in [
            "",
            "10.0.0.0/33",
            "::/129",
            "10.0.0/8",
            "example.com",
            "10.0.0.0/x",
            "/8",
        ] {
            assert!(bad.parse::<Cidr>().is_err(), "{bad}");
        }
    }

    #[test]
    fn urls_are_checked_before_any_connection() {
        for good in [
            "http://example.com/cat.png",
            "HTTPS://Example.COM:8443/a/b.png?size=2#frag",
            "http://203.0.114.1/x",
            "http://[2600:1f18::1]:8080/x",
        ] {
            assert!(parse_image_url(good).is_ok(), "{good}");
        }
        let invalid = |url: &str| match parse_image_url(url) {
            Err(FetchError::InvalidUrl(reason)) => reason,
            other => panic!("{url} should be invalid, got {other:?}"),
        };
        assert!(invalid("ftp://example.com/cat.png").contains("'ftp'"));
        assert!(invalid("file:///etc/passwd").contains("'file'"));
        assert!(invalid("gopher://example.com/").contains("'gopher'"));
        assert!(invalid("http://user@example.com/cat.png").contains("credentials"));
        assert!(invalid("http://user:secret@example.com/cat.png").contains("credentials"));
        assert!(invalid("http://:secret@example.com/cat.png").contains("credentials"));
        for malformed in [
            "http://",
            "not a url",
            "http://exa mple.com/",
            "http://[::1/",
        ] {
            assert!(
                matches!(parse_image_url(malformed), Err(FetchError::InvalidUrl(_))),
                "{malformed}"
            );
        }
    }

    #[test]
    fn obfuscated_ipv4_hosts_are_normalised_to_the_address() {
        for url in [
            "http://2130706433/",
            "http://0x7f000001/",
            "http://0177.0.0.1/",
            "http://127.1/",
            "http://[::ffff:127.0.0.1]/",
        ] {
            let parsed = parse_image_url(url).unwrap();
            let address = match parsed.host() {
                Some(Host::Ipv4(address)) => IpAddr::V4(address),
                Some(Host::Ipv6(address)) => IpAddr::V6(address),
                other => panic!("{url} parsed to {other:?}"),
            };
            assert_eq!(
                check_address(address, &[]),
                Err(AddressClass::Loopback),
                "{url}"
            );
        }
    }

    #[test]
    fn image_formats_come_from_the_bytes() {
        assert_eq!(sniff_image(b"\x89PNG\r\n\x1a\n\0\0"), Some("image/png"));
        assert_eq!(sniff_image(b"\xff\xd8\xff\xe0rest"), Some("image/jpeg"));
        assert_eq!(sniff_image(b"GIF87a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"GIF89a..."), Some("image/gif"));
        assert_eq!(sniff_image(b"RIFF\x10\0\0\0WEBPVP8 "), Some("image/webp"));
        for other in [
            &b""[..],
            b"\x89PNG",
            b"\xff\xd8",
            b"GIF88a",
            b"RIFF\x10\0\0\0WAVEfmt ",
            b"RIFF",
            b"<html><body>not an image</body></html>",
            b"%PDF-1.4",
            b"BM\x3e\0\0\0",
            b"II*\0",
        ] {
            assert_eq!(sniff_image(other), None, "{other:?}");
        }
    }

    #[test]
    fn fetched_images_become_data_urls() {
        let image = FetchedImage {
            media_type: "image/gif",
            bytes: b"GIF89a".to_vec(),
        };
        assert_eq!(image.data_url(), "data:image/gif;base64,R0lGODlh");
        let parsed = crate::translate::content::parse_data_url(&image.data_url()).unwrap();
        assert_eq!(parsed.media_type, "image/gif");
        assert_eq!(parsed.bytes, b"GIF89a");
    }

    #[test]
    fn every_failure_has_a_reason_and_an_outcome_label() {
        let errors = [
            (FetchError::InvalidUrl("x".into()), "invalid_url", "invalid"),
            (
                FetchError::RefusedAddress {
                    host: "localhost".into(),
                    class: AddressClass::Loopback,
                },
                "refused_address",
                "the host localhost is a loopback address",
            ),
            (FetchError::Unresolved("h".into()), "unresolved", "resolved"),
            (
                FetchError::Connect {
                    host: "h".into(),
                    reason: "refused".into(),
                },
                "connect_failed",
                "connection to h failed",
            ),
            (
                FetchError::Tls {
                    host: "h".into(),
                    reason: "bad".into(),
                },
                "tls_failed",
                "TLS",
            ),
            (
                FetchError::Protocol("eof".into()),
                "protocol_error",
                "HTTP exchange",
            ),
            (FetchError::Status(404), "http_status", "HTTP 404"),
            (
                FetchError::TooManyRedirects(3),
                "too_many_redirects",
                "more than 3 redirects",
            ),
            (FetchError::TooLarge(10), "too_large", "limit of 10 bytes"),
            (
                FetchError::RequestTooLarge(20),
                "too_large",
                "20 bytes in total",
            ),
            (FetchError::Timeout(15), "timeout", "15 seconds"),
            (FetchError::NotAnImage, "not_an_image", "not a png"),
        ];
        for (error, outcome, reason) in errors {
            assert_eq!(error.outcome(), outcome);
            assert!(error.to_string().contains(reason), "{error}");
        }
    }

    fn fetcher(settings: FetchSettings) -> ImageFetcher {
        let outcomes = IntCounterVec::new(Opts::new("f", "f"), &["outcome"]).unwrap();
        ImageFetcher::new(settings, outcomes)
    }

    use prometheus::Opts;

    fn request(value: serde_json::Value) -> ChatCompletionRequest {
        serde_json::from_value(value).unwrap()
    }

    #[tokio::test]
    async fn refused_hosts_fail_without_a_connection_and_name_the_part() {
        let fetcher = fetcher(FetchSettings::default());
        let mut chat = request(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": "hi"},
            {"role": "user", "content": [
                {"type": "text", "text": "look"},
                {"type": "image_url", "image_url": {"url": "http://169.254.169.254/latest/meta-data/"}}
            ]}
        ]}));
        let error = fetcher.inline_image_urls(&mut chat).await.unwrap_err();
        let ApiError::InvalidRequest { message, param } = error else {
            panic!("expected a 400");
        };
        assert_eq!(param.as_deref(), Some("messages[1].content[1].image_url"));
        assert!(message.contains("link-local"), "{message}");
        assert_eq!(
            fetcher
                .outcomes
                .with_label_values(&["refused_address"])
                .get(),
            1
        );
    }

    #[tokio::test]
    async fn too_many_image_urls_are_refused_before_fetching() {
        let fetcher = fetcher(FetchSettings {
            max_images: 2,
            ..FetchSettings::default()
        });
        let part = serde_json::json!({"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}});
        let mut chat = request(serde_json::json!({"model": "m", "messages": [
            {"role": "user", "content": [part.clone(), part.clone(), {"type": "text", "text": "x"}, part]}
        ]}));
        let error = fetcher.inline_image_urls(&mut chat).await.unwrap_err();
        assert_eq!(
            error,
            ApiError::invalid(
                "At most 2 image URLs are fetched per request.",
                Some("messages[0].content[3].image_url")
            )
        );
    }

    #[tokio::test]
    async fn with_fetching_off_or_in_system_messages_urls_are_left_alone() {
        let body = serde_json::json!({"model": "m", "messages": [
            {"role": "system", "content": [{"type": "image_url", "image_url": {"url": "http://127.0.0.1:9/x.png"}}]},
            {"role": "user", "content": [{"type": "image_url", "image_url": "data:image/png;base64,aGk="}]}
        ]});
        for settings in [
            FetchSettings::default(),
            FetchSettings {
                enabled: false,
                ..FetchSettings::default()
            },
        ] {
            let fetcher = fetcher(settings);
            let mut chat = request(body.clone());
            fetcher.inline_image_urls(&mut chat).await.unwrap();
            let Some(MessageContent::Parts(parts)) = &chat.messages[0].content else {
                panic!("parts expected");
            };
            let ContentPart::ImageUrl { image_url } = &parts[0] else {
                panic!("image expected");
            };
            assert_eq!(image_url["url"], "http://127.0.0.1:9/x.png");
        }
    }
}
