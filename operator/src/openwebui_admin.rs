//! Registering a gateway in a running Open WebUI through its admin API.
//!
//! Open WebUI copies its connection settings from the environment into its
//! database on the first start and reads the database from then on, so the
//! environment wiring reaches fresh installs only. The admin API writes the
//! database: `GET /openai/config` returns the OpenAI connections (base URLs
//! and keys paired by position, per-connection settings keyed by the index
//! as a string) and `POST /openai/config/update` replaces them, for every
//! replica at once, and clears Open WebUI's model cache. The retrieval
//! settings have their own pair, `GET /api/v1/retrieval/embedding` and
//! `POST /api/v1/retrieval/embedding/update`.
//!
//! A gateway's connection is recognised by the owner entry it carries in its
//! settings (`bedrock_gateway: <namespace>/<name>`), or, when an edit in Open
//! WebUI's UI dropped that, by its URL. Every other connection and setting is
//! sent back as it came. The merging is done by pure functions on the JSON
//! Open WebUI returns; the HTTP client and the reconcile steps follow them.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use k8s_openapi::api::core::v1::{Secret, Service};
use kube::api::ListParams;
use kube::{Api, Client, ResourceExt};
use serde_json::{Map, Value, json};

use crate::cache::Cache;
use crate::conditions::{self, Judgement};
use crate::crd::{BedrockGateway, OpenWebUiAdminApi, SecretKeyRef};
use crate::error::Error;
use crate::resources;
use crate::wiring::{self, RAG_ENGINE_OPENAI};
use crate::workload::Workload;

pub const CONFIG_PATH: &str = "/openai/config";
pub const CONFIG_UPDATE_PATH: &str = "/openai/config/update";
/// Followed by `/<index>`: Open WebUI lists one connection's models, asking it live.
pub const CONNECTION_MODELS_PATH: &str = "/openai/models";
/// The models users see in the model picker.
pub const MODELS_PATH: &str = "/api/models";
pub const EMBEDDING_PATH: &str = "/api/v1/retrieval/embedding";
pub const EMBEDDING_UPDATE_PATH: &str = "/api/v1/retrieval/embedding/update";

/// The entry in a connection's settings naming the gateway that owns it.
pub const OWNER_KEY: &str = "bedrock_gateway";

const URLS_FIELD: &str = "OPENAI_API_BASE_URLS";
const KEYS_FIELD: &str = "OPENAI_API_KEYS";
const CONFIGS_FIELD: &str = "OPENAI_API_CONFIGS";
const ENABLE_FIELD: &str = "ENABLE_OPENAI_API";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Listing models makes Open WebUI ask every connection in turn.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_RESPONSE_BYTES: usize = 16 * 1024 * 1024;
const MAX_DETAIL_CHARS: usize = 300;

/// Open WebUI's answer does not have the shape this module understands.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ShapeError(String);

/// The connection a gateway wants in Open WebUI.
#[derive(Clone, PartialEq, Eq)]
pub struct Connection {
    /// `<namespace>/<name>` of the gateway.
    pub owner: String,
    /// The gateway's base URL, without a trailing `/`.
    pub url: String,
    pub key: String,
    pub prefix_id: Option<String>,
    pub model_ids: Vec<String>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter
            .debug_struct("Connection")
            .field("owner", &self.owner)
            .field("url", &self.url)
            .field("key", &"<redacted>")
            .field("prefix_id", &self.prefix_id)
            .field("model_ids", &self.model_ids)
            .finish()
    }
}

/// Open WebUI's OpenAI connections, one entry per position, and every other
/// field of the settings as it came.
#[derive(Clone, PartialEq)]
struct Connections {
    urls: Vec<String>,
    keys: Vec<String>,
    settings: Vec<Option<Value>>,
    other_fields: Map<String, Value>,
}

fn strings(value: Option<&Value>, field: &str) -> Result<Vec<String>, ShapeError> {
    match value {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(items)) => items
            .iter()
            .map(|item| match item {
                Value::String(text) => Ok(text.clone()),
                Value::Null => Ok(String::new()),
                _ => Err(ShapeError(format!(
                    "{field} holds a value that is not text"
                ))),
            })
            .collect(),
        Some(_) => Err(ShapeError(format!("{field} is not a list"))),
    }
}

fn same_url(left: &str, right: &str) -> bool {
    left.trim().trim_end_matches('/') == right.trim().trim_end_matches('/')
}

impl Connections {
    fn parse(config: &Value) -> Result<Self, ShapeError> {
        let Value::Object(fields) = config else {
            return Err(ShapeError(
                "the OpenAI settings are not a JSON object".into(),
            ));
        };
        let urls = strings(fields.get(URLS_FIELD), URLS_FIELD)?;
        // Open WebUI pairs keys with URLs by position and pads or cuts the
        // keys list to the URLs' length; so does this.
        let mut keys = strings(fields.get(KEYS_FIELD), KEYS_FIELD)?;
        keys.resize(urls.len(), String::new());
        let configs = match fields.get(CONFIGS_FIELD) {
            None | Some(Value::Null) => Map::new(),
            Some(Value::Object(configs)) => configs.clone(),
            Some(_) => return Err(ShapeError(format!("{CONFIGS_FIELD} is not an object"))),
        };
        // Settings are keyed by the position as a string; older installs
        // keyed them by URL, which Open WebUI still reads but drops on the
        // next update, so they are carried over to their position.
        let settings = urls
            .iter()
            .enumerate()
            .map(|(index, url)| {
                configs
                    .get(&index.to_string())
                    .or_else(|| configs.get(url))
                    .cloned()
            })
            .collect();
        let other_fields = fields
            .iter()
            .filter(|(name, _)| ![URLS_FIELD, KEYS_FIELD, CONFIGS_FIELD].contains(&name.as_str()))
            .map(|(name, value)| (name.clone(), value.clone()))
            .collect();
        Ok(Self {
            urls,
            keys,
            settings,
            other_fields,
        })
    }

    fn to_value(&self) -> Value {
        let mut fields = self.other_fields.clone();
        fields.insert(URLS_FIELD.into(), json!(self.urls));
        fields.insert(KEYS_FIELD.into(), json!(self.keys));
        let configs: Map<String, Value> = self
            .settings
            .iter()
            .enumerate()
            .filter_map(|(index, settings)| Some((index.to_string(), settings.clone()?)))
            .collect();
        fields.insert(CONFIGS_FIELD.into(), Value::Object(configs));
        Value::Object(fields)
    }

    fn owner_of(&self, index: usize) -> Option<&str> {
        self.settings.get(index)?.as_ref()?.get(OWNER_KEY)?.as_str()
    }

    /// Positions of the gateway's connections: those its owner entry marks,
    /// else the first one at its URL that no other gateway owns.
    fn owned_by(&self, owner: &str, url: &str) -> Vec<usize> {
        let marked: Vec<usize> = (0..self.urls.len())
            .filter(|&index| self.owner_of(index) == Some(owner))
            .collect();
        if !marked.is_empty() {
            return marked;
        }
        (0..self.urls.len())
            .find(|&index| self.owner_of(index).is_none() && same_url(&self.urls[index], url))
            .into_iter()
            .collect()
    }

    /// Removes one connection; the ones after it move up a position, their
    /// settings with them.
    fn remove(&mut self, index: usize) {
        self.urls.remove(index);
        self.keys.remove(index);
        self.settings.remove(index);
    }
}

/// What registering a gateway does to Open WebUI's OpenAI settings.
#[derive(Debug, Clone, PartialEq)]
pub struct Upsert {
    /// The settings to send back; `None` when they already hold the gateway as wanted.
    pub update: Option<Value>,
    /// The gateway's position among the connections.
    pub index: usize,
    /// The connection was not there before.
    pub created: bool,
    /// Whether Open WebUI has OpenAI connections switched on.
    pub openai_enabled: bool,
}

/// Adds the gateway's connection to Open WebUI's OpenAI settings (`GET
/// /openai/config`), or brings it up to date, and leaves everything else as it is.
pub fn upsert(config: &Value, wanted: &Connection) -> Result<Upsert, ShapeError> {
    let original = Connections::parse(config)?;
    let mut connections = original.clone();
    let owned = connections.owned_by(&wanted.owner, &wanted.url);
    let created = owned.is_empty();
    // Duplicates of the gateway's own connection go; the first one stays in place.
    for &index in owned.iter().skip(1).rev() {
        connections.remove(index);
    }
    let index = match owned.first() {
        Some(&index) => index,
        None => {
            connections.urls.push(String::new());
            connections.keys.push(String::new());
            connections.settings.push(None);
            connections.urls.len() - 1
        }
    };
    connections.urls[index] = wanted.url.clone();
    connections.keys[index] = wanted.key.clone();
    let settings = match connections.settings[index].take() {
        Some(Value::Object(settings)) => settings,
        _ => Map::new(),
    };
    connections.settings[index] = Some(Value::Object(wanted_settings(settings, wanted)));
    let openai_enabled = connections
        .other_fields
        .get(ENABLE_FIELD)
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Upsert {
        update: (connections != original).then(|| connections.to_value()),
        index,
        created,
        openai_enabled,
    })
}

/// The connection's settings with the gateway's own fields as wanted; fields
/// the gateway does not set (tags, connection type, headers, ...) stay.
fn wanted_settings(mut settings: Map<String, Value>, wanted: &Connection) -> Map<String, Value> {
    settings.insert("enable".into(), Value::Bool(true));
    settings.insert(OWNER_KEY.into(), Value::String(wanted.owner.clone()));
    match &wanted.prefix_id {
        Some(prefix) => {
            settings.insert("prefix_id".into(), Value::String(prefix.clone()));
        }
        // An empty prefix is what Open WebUI's UI stores for none.
        None => {
            if settings
                .get("prefix_id")
                .is_some_and(|prefix| prefix.as_str() != Some(""))
            {
                settings.remove("prefix_id");
            }
        }
    }
    let listed = settings
        .get("model_ids")
        .and_then(Value::as_array)
        .is_some_and(|ids| !ids.is_empty());
    if !wanted.model_ids.is_empty() || listed {
        settings.insert("model_ids".into(), json!(wanted.model_ids));
    }
    settings
}

/// Takes the gateway's connections out of Open WebUI's OpenAI settings;
/// `None` when it has none there.
pub fn remove(config: &Value, owner: &str, url: &str) -> Result<Option<Value>, ShapeError> {
    let mut connections = Connections::parse(config)?;
    let owned = connections.owned_by(owner, url);
    if owned.is_empty() {
        return Ok(None);
    }
    for &index in owned.iter().rev() {
        connections.remove(index);
    }
    Ok(Some(connections.to_value()))
}

/// The embedding settings a gateway wants in Open WebUI.
#[derive(Clone, PartialEq, Eq)]
pub struct EmbeddingTarget {
    pub url: String,
    pub key: String,
    pub model: String,
}

const EMBEDDING_ENGINE_FIELD: &str = "RAG_EMBEDDING_ENGINE";
const EMBEDDING_MODEL_FIELD: &str = "RAG_EMBEDDING_MODEL";
/// Settings the update form resets to its defaults unless they are sent.
const EMBEDDING_KEPT_FIELDS: [&str; 3] = [
    "RAG_EMBEDDING_BATCH_SIZE",
    "ENABLE_ASYNC_EMBEDDING",
    "RAG_EMBEDDING_CONCURRENT_REQUESTS",
];

struct EmbeddingSettings<'a> {
    engine: &'a str,
    model: &'a str,
    url: &'a str,
    key: &'a str,
}

fn embedding_settings(current: &Value) -> Result<EmbeddingSettings<'_>, ShapeError> {
    let engine = current
        .get(EMBEDDING_ENGINE_FIELD)
        .and_then(Value::as_str)
        .ok_or_else(|| {
            ShapeError(format!(
                "the embedding settings lack {EMBEDDING_ENGINE_FIELD} (Open WebUI 0.10 or newer is needed)"
            ))
        })?;
    let openai = current.get("openai_config");
    fn text_of(value: Option<&Value>) -> &str {
        value.and_then(Value::as_str).unwrap_or("")
    }
    Ok(EmbeddingSettings {
        engine,
        model: text_of(current.get(EMBEDDING_MODEL_FIELD)),
        url: text_of(openai.and_then(|openai| openai.get("url"))),
        key: text_of(openai.and_then(|openai| openai.get("key"))),
    })
}

fn embedding_form(current: &Value, engine: &str, model: &str, url: &str, key: &str) -> Value {
    let mut form = Map::new();
    form.insert(EMBEDDING_ENGINE_FIELD.into(), json!(engine));
    form.insert(EMBEDDING_MODEL_FIELD.into(), json!(model));
    for field in EMBEDDING_KEPT_FIELDS {
        if let Some(value) = current.get(field).filter(|value| !value.is_null()) {
            form.insert(field.into(), value.clone());
        }
    }
    form.insert("openai_config".into(), json!({"url": url, "key": key}));
    Value::Object(form)
}

/// The body for `POST /api/v1/retrieval/embedding/update` that makes the
/// gateway Open WebUI's embedding engine, from the current settings (`GET
/// /api/v1/retrieval/embedding`); `None` when it already is.
pub fn embedding_update(
    current: &Value,
    wanted: &EmbeddingTarget,
) -> Result<Option<Value>, ShapeError> {
    let settings = embedding_settings(current)?;
    let in_place = settings.engine == RAG_ENGINE_OPENAI
        && settings.model == wanted.model
        && same_url(settings.url, &wanted.url)
        && settings.key == wanted.key;
    Ok((!in_place).then(|| {
        embedding_form(
            current,
            RAG_ENGINE_OPENAI,
            &wanted.model,
            &wanted.url,
            &wanted.key,
        )
    }))
}

/// The body that takes the gateway's URL and key out of Open WebUI's
/// embedding settings, when they are there; engine and model stay, so Open
/// WebUI reports a missing URL rather than falling back to a local model.
pub fn embedding_removal(current: &Value, url: &str) -> Result<Option<Value>, ShapeError> {
    let settings = embedding_settings(current)?;
    if settings.engine != RAG_ENGINE_OPENAI || !same_url(settings.url, url) {
        return Ok(None);
    }
    Ok(Some(embedding_form(
        current,
        settings.engine,
        settings.model,
        "",
        "",
    )))
}

/// The gateway's models among those Open WebUI lists (`GET /api/models`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Visibility {
    /// Ids, as Open WebUI shows them, of the models that come from the gateway's connection.
    pub ids: Vec<String>,
    /// Ids of `modelIds`, with the prefix, that Open WebUI does not list.
    pub missing: Vec<String>,
}

/// Which of the gateway's models (connection `index`) Open WebUI lists.
pub fn visible_models(
    models: &Value,
    index: usize,
    prefix_id: Option<&str>,
    model_ids: &[String],
) -> Result<Visibility, ShapeError> {
    let list = match models {
        Value::Array(list) => list,
        Value::Object(fields) => fields
            .get("data")
            .and_then(Value::as_array)
            .ok_or_else(|| ShapeError("the model list has no data array".into()))?,
        _ => {
            return Err(ShapeError(
                "the model list is not JSON list or object".into(),
            ));
        }
    };
    let shown = |id: &str| match prefix_id {
        Some(prefix) => format!("{prefix}.{id}"),
        None => id.to_owned(),
    };
    let ids: Vec<String> = list
        .iter()
        .filter(|model| model.get("owned_by").and_then(Value::as_str) == Some("openai"))
        .filter(|model| model.get("urlIdx").and_then(Value::as_u64) == u64::try_from(index).ok())
        .filter_map(|model| model.get("id").and_then(Value::as_str))
        .filter(|id| prefix_id.is_none_or(|prefix| id.starts_with(&format!("{prefix}."))))
        .map(str::to_owned)
        .collect();
    let missing = model_ids
        .iter()
        .map(|id| shown(id))
        .filter(|id| !ids.contains(id))
        .collect();
    Ok(Visibility { ids, missing })
}

/// Open WebUI's URL from the Service in the namespace that selects the
/// workload's pods (a ClusterIP Service over a headless one).
pub fn url_from_services(
    services: &[Service],
    pod_labels: &BTreeMap<String, String>,
    namespace: &str,
) -> Result<String, String> {
    let selecting: Vec<&Service> = services
        .iter()
        .filter(|service| {
            service.spec.as_ref().is_some_and(|spec| {
                spec.type_.as_deref() != Some("ExternalName")
                    && spec.selector.as_ref().is_some_and(|selector| {
                        !selector.is_empty()
                            && selector
                                .iter()
                                .all(|(key, value)| pod_labels.get(key) == Some(value))
                    })
                    && spec.ports.as_ref().is_some_and(|ports| !ports.is_empty())
            })
        })
        .collect();
    let headless = |service: &&Service| {
        service
            .spec
            .as_ref()
            .and_then(|spec| spec.cluster_ip.as_deref())
            == Some("None")
    };
    let mut candidates: Vec<&Service> = selecting
        .iter()
        .copied()
        .filter(|service| !headless(service))
        .collect();
    if candidates.is_empty() {
        candidates = selecting;
    }
    let service = match candidates.as_slice() {
        [] => return Err("no Service in the namespace selects the Open WebUI pods".into()),
        [only] => *only,
        several => {
            let names: Vec<String> = several.iter().map(|service| service.name_any()).collect();
            return Err(format!(
                "several Services select the Open WebUI pods ({})",
                names.join(", ")
            ));
        }
    };
    let ports = service
        .spec
        .as_ref()
        .and_then(|spec| spec.ports.as_deref())
        .unwrap_or_default();
    let port = ports
        .iter()
        .find(|port| matches!(port.name.as_deref(), Some("http" | "https")))
        .or_else(|| ports.iter().find(|port| port.port == 80))
        .or_else(|| ports.first())
        .ok_or_else(|| format!("Service {} has no ports", service.name_any()))?;
    let https = port.name.as_deref() == Some("https") || port.port == 443;
    let scheme = if https { "https" } else { "http" };
    let default_port = if https { 443 } else { 80 };
    let host = format!("{}.{namespace}.svc.cluster.local", service.name_any());
    Ok(if port.port == default_port {
        format!("{scheme}://{host}")
    } else {
        format!("{scheme}://{host}:{}", port.port)
    })
}

/// The first key of an API key Secret value (the proxy's key file format:
/// one key a line, `#` comments and blank lines ignored).
pub fn first_key(data: &[u8]) -> Option<String> {
    std::str::from_utf8(data)
        .ok()?
        .lines()
        .map(str::trim)
        .find(|line| !line.is_empty() && !line.starts_with('#'))
        .map(str::to_owned)
}

/// A bearer credential; never printed.
#[derive(Clone)]
pub struct Token(String);

impl Token {
    pub fn new(value: String) -> Self {
        Self(value)
    }
}

impl std::fmt::Debug for Token {
    fn fmt(&self, formatter: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        formatter.write_str("Token(<redacted>)")
    }
}

/// A failed call to Open WebUI. Messages name the URL and what went wrong,
/// never a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminApiError {
    #[error("cannot reach Open WebUI at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("Open WebUI at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error(
        "Open WebUI refused the admin key on {path} (HTTP 401: {detail}); the Secret must hold an API key or token of an admin"
    )]
    Unauthorized { path: String, detail: String },
    #[error(
        "Open WebUI forbade {path} to the admin key (HTTP 403: {detail}); API keys must be enabled and, with endpoint restrictions, allowed on this path"
    )]
    Forbidden { path: String, detail: String },
    #[error("Open WebUI answered HTTP {status} on {path}: {detail}")]
    Status {
        status: u16,
        path: String,
        detail: String,
    },
    #[error("Open WebUI's answer on {path} is not understood: {reason}")]
    Unexpected { path: String, reason: String },
}

impl AdminApiError {
    /// The condition reason for this failure.
    pub fn reason(&self) -> &'static str {
        match self {
            AdminApiError::Unreachable { .. } | AdminApiError::Timeout { .. } => {
                "OpenWebUIUnreachable"
            }
            AdminApiError::Unauthorized { .. } => "OpenWebUIUnauthorized",
            AdminApiError::Forbidden { .. } => "OpenWebUIForbidden",
            AdminApiError::Status { .. } => "OpenWebUIError",
            AdminApiError::Unexpected { .. } => "OpenWebUIUnexpectedAnswer",
        }
    }
}

/// The `detail` Open WebUI puts in its error answers, shortened and printable.
/// Validation errors name the field and the problem only: they also carry the
/// input, which holds keys.
fn error_detail(body: &[u8]) -> String {
    let detail = match serde_json::from_slice::<Value>(body) {
        Ok(value) => match value.get("detail") {
            Some(Value::String(text)) => text.clone(),
            Some(Value::Array(problems)) => problems
                .iter()
                .map(|problem| {
                    let location: Vec<String> = problem
                        .get("loc")
                        .and_then(Value::as_array)
                        .into_iter()
                        .flatten()
                        .map(|part| match part {
                            Value::String(text) => text.clone(),
                            other => other.to_string(),
                        })
                        .collect();
                    let message = problem
                        .get("msg")
                        .and_then(Value::as_str)
                        .unwrap_or("invalid");
                    format!("{}: {message}", location.join("."))
                })
                .collect::<Vec<_>>()
                .join("; "),
            Some(_) => "an error of unknown shape".to_owned(),
            None if value.is_object() => "no detail".to_owned(),
            None => String::from_utf8_lossy(body).into_owned(),
        },
        Err(_) => String::from_utf8_lossy(body).into_owned(),
    };
    let cleaned: String = detail
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(MAX_DETAIL_CHARS)
        .collect();
    if cleaned.trim().is_empty() {
        "no detail".into()
    } else {
        cleaned.trim().to_owned()
    }
}

type Https = hyper_rustls::HttpsConnector<HttpConnector>;

/// One lock per Open WebUI, so that two gateways registering in the same one
/// never interleave their read-modify-write of its settings.
type WriteLocks = std::sync::Mutex<BTreeMap<String, Arc<tokio::sync::Mutex<()>>>>;

/// HTTP(S) client for Open WebUI's API, shared by every reconcile.
#[derive(Clone)]
pub struct OpenWebUiClient {
    http: Result<HyperClient<Https, Full<Bytes>>, String>,
    write_locks: Arc<WriteLocks>,
}

impl Default for OpenWebUiClient {
    fn default() -> Self {
        Self::new()
    }
}

impl OpenWebUiClient {
    pub fn new() -> Self {
        let mut connector = HttpConnector::new();
        connector.enforce_http(false);
        connector.set_connect_timeout(Some(CONNECT_TIMEOUT));
        connector.set_nodelay(true);
        let http = tls_config().map(|tls| {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls)
                .https_or_http()
                .enable_http1()
                .wrap_connector(connector);
            HyperClient::builder(TokioExecutor::new())
                .pool_idle_timeout(Duration::from_secs(30))
                .build(https)
        });
        Self {
            http,
            write_locks: Arc::default(),
        }
    }

    /// Waits until no other reconcile changes the settings of the Open WebUI at `base`.
    pub async fn lock_settings(&self, base: &str) -> tokio::sync::OwnedMutexGuard<()> {
        let lock = match self.write_locks.lock() {
            Ok(mut locks) => locks
                .entry(base.trim_end_matches('/').to_owned())
                .or_default()
                .clone(),
            // A panicked holder leaves no state to protect: go on unserialised.
            Err(_) => Arc::default(),
        };
        lock.lock_owned().await
    }

    pub async fn get(&self, base: &str, token: &Token, path: &str) -> Result<Value, AdminApiError> {
        self.call(hyper::Method::GET, base, token, path, None).await
    }

    pub async fn post(
        &self,
        base: &str,
        token: &Token,
        path: &str,
        body: &Value,
    ) -> Result<Value, AdminApiError> {
        self.call(hyper::Method::POST, base, token, path, Some(body))
            .await
    }

    async fn call(
        &self,
        method: hyper::Method,
        base: &str,
        token: &Token,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, AdminApiError> {
        let base = base.trim_end_matches('/');
        let unreachable = |reason: String| AdminApiError::Unreachable {
            url: base.to_owned(),
            reason,
        };
        let client = self
            .http
            .as_ref()
            .map_err(|problem| unreachable(problem.clone()))?;
        let uri: hyper::Uri = format!("{base}{path}")
            .parse()
            .map_err(|error| unreachable(format!("invalid URL: {error}")))?;
        let mut authorization =
            hyper::header::HeaderValue::from_str(&format!("Bearer {}", token.0)).map_err(|_| {
                unreachable("the admin key holds characters a header cannot carry".into())
            })?;
        authorization.set_sensitive(true);
        let payload = match body {
            Some(body) => Bytes::from(
                serde_json::to_vec(body)
                    .map_err(|error| unreachable(format!("cannot encode the request: {error}")))?,
            ),
            None => Bytes::new(),
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri)
            .header(hyper::header::AUTHORIZATION, authorization)
            .header(hyper::header::ACCEPT, "application/json")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(payload))
            .map_err(|error| unreachable(format!("cannot build the request: {error}")))?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|error| unreachable(describe_client_error(&error)))?;
            let status = response.status();
            let bytes = Limited::new(response.into_body(), MAX_RESPONSE_BYTES)
                .collect()
                .await
                .map_err(|error| unreachable(format!("reading the answer failed: {error}")))?
                .to_bytes();
            Ok::<_, AdminApiError>((status, bytes))
        };
        let (status, bytes) = tokio::time::timeout(REQUEST_TIMEOUT, exchange)
            .await
            .map_err(|_| AdminApiError::Timeout {
                url: base.to_owned(),
                seconds: REQUEST_TIMEOUT.as_secs(),
            })??;
        let path = path.to_owned();
        match status.as_u16() {
            200..=299 => {
                serde_json::from_slice(&bytes).map_err(|error| AdminApiError::Unexpected {
                    path,
                    reason: format!("not JSON ({error})"),
                })
            }
            401 => Err(AdminApiError::Unauthorized {
                path,
                detail: error_detail(&bytes),
            }),
            403 => Err(AdminApiError::Forbidden {
                path,
                detail: error_detail(&bytes),
            }),
            status => Err(AdminApiError::Status {
                status,
                path,
                detail: error_detail(&bytes),
            }),
        }
    }
}

/// hyper's error with its causes ("client error (Connect): tcp connect error: Connection refused").
fn describe_client_error(error: &hyper_util::client::legacy::Error) -> String {
    let mut text = error.to_string();
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// TLS for `https` URLs: the system's CA certificates (none found leaves
/// `https` failing with an unknown issuer, while `http` works).
fn tls_config() -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    for certificate in rustls_native_certs::load_native_certs().certs {
        let _ = roots.add(certificate);
    }
    Ok(rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|error| format!("TLS setup failed: {error}"))?
    .with_root_certificates(roots)
    .with_no_client_auth())
}

/// Everything needed to talk to one Open WebUI as its admin.
#[derive(Debug, Clone)]
pub struct AdminTarget {
    pub base_url: String,
    pub token: Token,
}

fn judgement(ok: bool, reason: &str, message: impl Into<String>) -> Judgement {
    Judgement::new(conditions::OPEN_WEBUI_WIRED, ok, reason, message)
}

/// A Secret key's value, or why there is none (as a failed judgement).
async fn secret_value(
    client: &Client,
    namespace: &str,
    reference: &SecretKeyRef,
    what: &str,
    reasons: (&str, &str),
) -> Result<Result<Vec<u8>, Judgement>, Error> {
    let secrets: Api<Secret> = Api::namespaced(client.clone(), namespace);
    let Some(secret) = secrets.get_opt(&reference.name).await? else {
        return Ok(Err(judgement(
            false,
            reasons.0,
            format!(
                "Secret {namespace}/{} ({what}) does not exist",
                reference.name
            ),
        )));
    };
    match secret
        .data
        .as_ref()
        .and_then(|data| data.get(&reference.key))
    {
        Some(value) => Ok(Ok(value.0.clone())),
        None => Ok(Err(judgement(
            false,
            reasons.1,
            format!(
                "Secret {namespace}/{} has no key '{}' ({what})",
                reference.name, reference.key
            ),
        ))),
    }
}

/// Open WebUI's URL: `adminApi.url`, else the Service in front of the workload.
async fn open_webui_url(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    gateway: &BedrockGateway,
    admin: &OpenWebUiAdminApi,
) -> Result<Result<String, Judgement>, Error> {
    if let Some(url) = &admin.url {
        return Ok(Ok(url.trim_end_matches('/').to_owned()));
    }
    let unknown = |why: String| {
        judgement(
            false,
            "OpenWebUIURLUnknown",
            format!("{why}; set openWebUI.adminApi.url"),
        )
    };
    let Some(reference) = gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.workload_ref.as_ref())
    else {
        return Ok(Err(unknown(
            "no openWebUI.workloadRef to find Open WebUI's Service by".into(),
        )));
    };
    let Some(workload) = Workload::get(client, cache, namespace, reference).await? else {
        return Ok(Err(unknown(format!(
            "{} does not exist",
            Workload::describe(reference, namespace)
        ))));
    };
    let template_labels = match &workload {
        Workload::Deployment(deployment) => deployment
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref()),
        Workload::StatefulSet(set) => set
            .spec
            .as_ref()
            .and_then(|spec| spec.template.metadata.as_ref()),
    }
    .and_then(|metadata| metadata.labels.clone())
    .unwrap_or_default();
    let seen: Vec<Service> = cache
        .services
        .state()
        .iter()
        .filter(|service| service.namespace().as_deref() == Some(namespace))
        .map(|service| service.as_ref().clone())
        .collect();
    if let Ok(url) = url_from_services(&seen, &template_labels, namespace) {
        return Ok(Ok(url));
    }
    // The watch may not have seen a Service made a moment ago.
    let services: Api<Service> = Api::namespaced(client.clone(), namespace);
    let services = services.list(&ListParams::default()).await?.items;
    Ok(url_from_services(&services, &template_labels, namespace).map_err(unknown))
}

/// Where and as whom to call the admin API, or why that is not known.
pub async fn target(
    client: &Client,
    cache: &Cache,
    namespace: &str,
    gateway: &BedrockGateway,
) -> Result<Option<Result<AdminTarget, Judgement>>, Error> {
    let Some(admin) = gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.admin_api.as_ref())
    else {
        return Ok(None);
    };
    let base_url = match open_webui_url(client, cache, namespace, gateway, admin).await? {
        Ok(url) => url,
        Err(failure) => return Ok(Some(Err(failure))),
    };
    let token = match secret_value(
        client,
        namespace,
        &admin.api_key_secret_ref,
        "the Open WebUI admin key",
        ("AdminKeySecretNotFound", "AdminKeySecretKeyMissing"),
    )
    .await?
    {
        Ok(value) => value,
        Err(failure) => return Ok(Some(Err(failure))),
    };
    let Some(token) = first_key(&token) else {
        return Ok(Some(Err(judgement(
            false,
            "AdminKeySecretKeyMissing",
            format!(
                "key '{}' of Secret {namespace}/{} is empty",
                admin.api_key_secret_ref.key, admin.api_key_secret_ref.name
            ),
        ))));
    };
    Ok(Some(Ok(AdminTarget {
        base_url,
        token: Token::new(token),
    })))
}

/// Whether the Secret `name` holds the gateway's Open WebUI admin key.
pub fn names_admin_secret(gateway: &BedrockGateway, name: &str) -> bool {
    gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.admin_api.as_ref())
        .is_some_and(|admin| admin.api_key_secret_ref.name == name)
}

/// The gateway's owner entry in Open WebUI's settings.
pub fn owner_of(gateway: &BedrockGateway) -> String {
    format!(
        "{}/{}",
        gateway.namespace().unwrap_or_default(),
        gateway.name_any()
    )
}

/// An event to publish about the registration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    pub reason: &'static str,
    pub message: String,
}

/// What the registration did and found.
#[derive(Debug, Clone)]
pub struct Registration {
    pub judgement: Judgement,
    pub notes: Vec<Note>,
}

impl Registration {
    fn failed(judgement: Judgement, notes: Vec<Note>) -> Self {
        Self { judgement, notes }
    }
}

fn api_failure(error: &AdminApiError, doing: &str) -> Judgement {
    judgement(false, error.reason(), format!("{doing}: {error}"))
}

/// Registers the gateway in Open WebUI (and its embeddings, when asked),
/// writing only what differs, then checks that Open WebUI lists its models.
pub async fn register(
    http: &OpenWebUiClient,
    target: &AdminTarget,
    gateway: &BedrockGateway,
    gateway_key: &str,
) -> Registration {
    let spec = gateway.spec.open_web_ui.clone().unwrap_or_default();
    let admin = spec.admin_api.clone().unwrap_or_default();
    let base = target.base_url.as_str();
    let token = &target.token;
    let wanted = Connection {
        owner: owner_of(gateway),
        url: wiring::open_webui_gateway_url(gateway),
        key: gateway_key.to_owned(),
        prefix_id: admin.prefix_id.clone(),
        model_ids: admin.model_ids.clone(),
    };
    let mut notes = Vec::new();
    let settings_lock = http.lock_settings(base).await;
    let current = match http.get(base, token, CONFIG_PATH).await {
        Ok(current) => current,
        Err(error) => {
            return Registration::failed(
                api_failure(&error, "reading Open WebUI's connections failed"),
                notes,
            );
        }
    };
    let upsert = match upsert(&current, &wanted) {
        Ok(upsert) => upsert,
        Err(error) => {
            return Registration::failed(
                judgement(
                    false,
                    "OpenWebUIUnexpectedAnswer",
                    format!(
                        "Open WebUI's connections at {base}{CONFIG_PATH} are not understood: {error}"
                    ),
                ),
                notes,
            );
        }
    };
    if let Some(update) = &upsert.update {
        if let Err(error) = http.post(base, token, CONFIG_UPDATE_PATH, update).await {
            return Registration::failed(
                api_failure(&error, "updating Open WebUI's connections failed"),
                notes,
            );
        }
        notes.push(Note {
            warning: false,
            reason: "Registered",
            message: format!(
                "{} {} as OpenAI connection {} in Open WebUI at {base}",
                if upsert.created {
                    "registered"
                } else {
                    "updated"
                },
                wanted.url,
                upsert.index
            ),
        });
    }
    let mut embeddings_note = String::new();
    if let Some(embeddings) = &spec.embeddings {
        let target = EmbeddingTarget {
            url: wanted.url.clone(),
            key: gateway_key.to_owned(),
            model: embeddings.model.clone(),
        };
        match wire_embeddings(http, base, token, &target).await {
            Ok(changed) => {
                if changed {
                    notes.push(Note {
                        warning: false,
                        reason: "EmbeddingsRegistered",
                        message: format!(
                            "Open WebUI at {base} embeds documents with {} through {}",
                            target.model, target.url
                        ),
                    });
                }
                embeddings_note = format!("; documents are embedded with {}", target.model);
            }
            Err(failure) => return Registration::failed(failure, notes),
        }
    }
    drop(settings_lock);
    if !upsert.openai_enabled {
        return Registration::failed(
            judgement(
                false,
                "OpenAIAPIDisabled",
                format!(
                    "registered as OpenAI connection {} in Open WebUI at {base}, but OpenAI API connections are switched off there (ENABLE_OPENAI_API); switch them on in Admin Panel > Settings > Connections",
                    upsert.index
                ),
            ),
            notes,
        );
    }
    // Asked live, the connection proves Open WebUI reaches the gateway with its key.
    let live = format!("{CONNECTION_MODELS_PATH}/{}", upsert.index);
    if let Err(error) = http.get(base, token, &live).await {
        let detail = match &error {
            AdminApiError::Status { detail, .. } => detail.clone(),
            other => other.to_string(),
        };
        let reason = match &error {
            AdminApiError::Status { .. } => "GatewayUnreachableFromOpenWebUI",
            other => other.reason(),
        };
        return Registration::failed(
            judgement(
                false,
                reason,
                format!(
                    "registered as OpenAI connection {} in Open WebUI at {base}, but Open WebUI cannot list the gateway's models at {}: {detail}",
                    upsert.index, wanted.url
                ),
            ),
            notes,
        );
    }
    let visibility = match http.get(base, token, MODELS_PATH).await {
        Ok(models) => visible_models(
            &models,
            upsert.index,
            wanted.prefix_id.as_deref(),
            &wanted.model_ids,
        ),
        Err(error) => {
            return Registration::failed(
                api_failure(&error, "listing Open WebUI's models failed"),
                notes,
            );
        }
    };
    let visibility = match visibility {
        Ok(visibility) => visibility,
        Err(error) => {
            return Registration::failed(
                judgement(
                    false,
                    "OpenWebUIUnexpectedAnswer",
                    format!("Open WebUI's model list is not understood: {error}"),
                ),
                notes,
            );
        }
    };
    if visibility.ids.is_empty() || !visibility.missing.is_empty() {
        let what = if visibility.ids.is_empty() {
            "none of the gateway's models".to_owned()
        } else {
            format!("not {}", visibility.missing.join(", "))
        };
        return Registration::failed(
            judgement(
                false,
                "ModelsNotVisible",
                format!(
                    "registered as OpenAI connection {} in Open WebUI at {base}, but Open WebUI lists {what} (an earlier connection serving the same ids hides them: set openWebUI.adminApi.prefixId)",
                    upsert.index
                ),
            ),
            notes,
        );
    }
    let examples: Vec<&str> = visibility.ids.iter().take(3).map(String::as_str).collect();
    Registration {
        judgement: judgement(
            true,
            "AdminApiRegistered",
            format!(
                "registered {} as OpenAI connection {} in Open WebUI at {base}, which lists {} of its models (e.g. {}){embeddings_note}",
                wanted.url,
                upsert.index,
                visibility.ids.len(),
                examples.join(", ")
            ),
        ),
        notes,
    }
}

async fn wire_embeddings(
    http: &OpenWebUiClient,
    base: &str,
    token: &Token,
    target: &EmbeddingTarget,
) -> Result<bool, Judgement> {
    let current = http
        .get(base, token, EMBEDDING_PATH)
        .await
        .map_err(|error| api_failure(&error, "reading Open WebUI's embedding settings failed"))?;
    let update = embedding_update(&current, target).map_err(|error| {
        judgement(
            false,
            "OpenWebUIUnexpectedAnswer",
            format!("Open WebUI's embedding settings are not understood: {error}"),
        )
    })?;
    let Some(update) = update else {
        return Ok(false);
    };
    http.post(base, token, EMBEDDING_UPDATE_PATH, &update)
        .await
        .map_err(|error| api_failure(&error, "updating Open WebUI's embedding settings failed"))?;
    Ok(true)
}

/// Takes the gateway's connection (and its embedding URL and key) out of
/// Open WebUI; returns what it removed, for the event.
pub async fn unregister(
    http: &OpenWebUiClient,
    target: &AdminTarget,
    gateway: &BedrockGateway,
) -> Result<Vec<String>, AdminApiError> {
    let base = target.base_url.as_str();
    let token = &target.token;
    let url = wiring::open_webui_gateway_url(gateway);
    let mut removed = Vec::new();
    let _settings_lock = http.lock_settings(base).await;
    let current = http.get(base, token, CONFIG_PATH).await?;
    let update =
        remove(&current, &owner_of(gateway), &url).map_err(|error| AdminApiError::Unexpected {
            path: CONFIG_PATH.into(),
            reason: error.to_string(),
        })?;
    if let Some(update) = update {
        http.post(base, token, CONFIG_UPDATE_PATH, &update).await?;
        removed.push(format!("OpenAI connection {url}"));
    }
    let embeddings_wanted = gateway
        .spec
        .open_web_ui
        .as_ref()
        .is_some_and(|spec| spec.embeddings.is_some());
    if embeddings_wanted {
        let current = http.get(base, token, EMBEDDING_PATH).await?;
        let update =
            embedding_removal(&current, &url).map_err(|error| AdminApiError::Unexpected {
                path: EMBEDDING_PATH.into(),
                reason: error.to_string(),
            })?;
        if let Some(update) = update {
            http.post(base, token, EMBEDDING_UPDATE_PATH, &update)
                .await?;
            removed.push("the embedding URL and key".into());
        }
    }
    Ok(removed)
}

/// The gateway's own API key, as Open WebUI must send it.
pub fn gateway_key(secret: &Secret, gateway: &BedrockGateway) -> Option<String> {
    let key = resources::api_key_secret_key(gateway);
    first_key(&secret.data.as_ref()?.get(&key)?.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::{ServicePort, ServiceSpec};
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

    const OURS: &str = "http://team-bedrock-gateway.ai.svc.cluster.local/v1";

    fn wanted() -> Connection {
        Connection {
            owner: "ai/team".into(),
            url: OURS.into(),
            key: "bgw-key".into(),
            prefix_id: Some("bedrock".into()),
            model_ids: Vec::new(),
        }
    }

    /// An install with two connections of the user's, their settings and a
    /// setting this module knows nothing of.
    fn users_config() -> Value {
        json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["https://api.openai.com/v1", "http://pipelines:9099"],
            "OPENAI_API_KEYS": ["sk-user", "0p3n-w3bu!"],
            "OPENAI_API_CONFIGS": {
                "0": {"enable": true, "tags": [{"name": "paid"}], "prefix_id": "oa"},
                "1": {"enable": false, "connection_type": "local"}
            },
            "SOMETHING_NEWER": {"kept": [1, 2]}
        })
    }

    fn applied(config: &Value, wanted: &Connection) -> (Value, Upsert) {
        let upsert = upsert(config, wanted).unwrap();
        let next = upsert.update.clone().unwrap_or_else(|| config.clone());
        (next, upsert)
    }

    #[test]
    fn a_fresh_install_gets_the_connection_at_position_zero() {
        let empty = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": [],
            "OPENAI_API_KEYS": [],
            "OPENAI_API_CONFIGS": {}
        });
        let upsert = upsert(&empty, &wanted()).unwrap();
        assert_eq!(
            (upsert.index, upsert.created, upsert.openai_enabled),
            (0, true, true)
        );
        assert_eq!(
            upsert.update.unwrap(),
            json!({
                "ENABLE_OPENAI_API": true,
                "OPENAI_API_BASE_URLS": [OURS],
                "OPENAI_API_KEYS": ["bgw-key"],
                "OPENAI_API_CONFIGS": {
                    "0": {"enable": true, "bedrock_gateway": "ai/team", "prefix_id": "bedrock"}
                }
            })
        );
    }

    #[test]
    fn the_connection_is_appended_and_everything_else_is_sent_back_as_it_came() {
        let (next, upsert) = applied(&users_config(), &wanted());
        assert_eq!((upsert.index, upsert.created), (2, true));
        let mut expected = users_config();
        expected["OPENAI_API_BASE_URLS"]
            .as_array_mut()
            .unwrap()
            .push(json!(OURS));
        expected["OPENAI_API_KEYS"]
            .as_array_mut()
            .unwrap()
            .push(json!("bgw-key"));
        expected["OPENAI_API_CONFIGS"]["2"] =
            json!({"enable": true, "bedrock_gateway": "ai/team", "prefix_id": "bedrock"});
        assert_eq!(next, expected);
    }

    #[test]
    fn registering_again_writes_nothing() {
        let (once, first) = applied(&users_config(), &wanted());
        let again = upsert(&once, &wanted()).unwrap();
        assert_eq!(again.update, None);
        assert_eq!((again.index, again.created), (first.index, false));
    }

    #[test]
    fn a_new_key_or_model_list_updates_only_the_gateways_entry() {
        let (once, _) = applied(&users_config(), &wanted());
        let mut rotated = wanted();
        rotated.key = "bgw-new".into();
        rotated.model_ids = vec!["gpt-4o".into()];
        rotated.prefix_id = None;
        let (next, upsert) = applied(&once, &rotated);
        assert_eq!((upsert.index, upsert.created), (2, false));
        assert_eq!(
            next["OPENAI_API_KEYS"],
            json!(["sk-user", "0p3n-w3bu!", "bgw-new"])
        );
        assert_eq!(
            next["OPENAI_API_CONFIGS"]["2"],
            json!({"enable": true, "bedrock_gateway": "ai/team", "model_ids": ["gpt-4o"]})
        );
        assert_eq!(
            next["OPENAI_API_CONFIGS"]["0"],
            users_config()["OPENAI_API_CONFIGS"]["0"]
        );
        // Dropping the model list again writes an empty one (Open WebUI's "all").
        let (all, _) = applied(&next, &wanted());
        assert_eq!(all["OPENAI_API_CONFIGS"]["2"]["model_ids"], json!([]));
        assert_eq!(upsert_of(&all).update, None);
    }

    fn upsert_of(config: &Value) -> Upsert {
        upsert(config, &wanted()).unwrap()
    }

    #[test]
    fn the_environment_wired_entry_is_adopted_in_place() {
        // What Open WebUI stores from the env on its first start: no settings,
        // and a trailing slash someone typed.
        let config = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["https://api.openai.com/v1", format!("{OURS}/")],
            "OPENAI_API_KEYS": ["sk-user", "bgw-key"],
            "OPENAI_API_CONFIGS": {}
        });
        let (next, upsert) = applied(&config, &wanted());
        assert_eq!((upsert.index, upsert.created), (1, false));
        assert_eq!(
            next["OPENAI_API_BASE_URLS"],
            json!(["https://api.openai.com/v1", OURS])
        );
        assert_eq!(
            next["OPENAI_API_CONFIGS"]["1"]["bedrock_gateway"],
            "ai/team"
        );
        assert!(next["OPENAI_API_CONFIGS"].get("0").is_none());
    }

    #[test]
    fn a_connection_an_edit_in_the_ui_stripped_of_its_owner_is_found_by_url_and_keeps_the_edit() {
        let (once, _) = applied(&users_config(), &wanted());
        let mut edited = once.clone();
        edited["OPENAI_API_CONFIGS"]["2"] = json!({"enable": false, "prefix_id": "bedrock", "tags": [{"name": "aws"}], "model_ids": []});
        let (next, upsert) = applied(&edited, &wanted());
        assert_eq!((upsert.index, upsert.created), (2, false));
        assert_eq!(
            next["OPENAI_API_CONFIGS"]["2"],
            json!({"enable": true, "bedrock_gateway": "ai/team", "prefix_id": "bedrock",
                   "tags": [{"name": "aws"}], "model_ids": []})
        );
    }

    #[test]
    fn another_gateways_connection_at_the_same_url_is_not_taken_over() {
        let config = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": [OURS],
            "OPENAI_API_KEYS": ["other-key"],
            "OPENAI_API_CONFIGS": {"0": {"bedrock_gateway": "ai/other"}}
        });
        let (next, upsert) = applied(&config, &wanted());
        assert_eq!((upsert.index, upsert.created), (1, true));
        assert_eq!(next["OPENAI_API_KEYS"], json!(["other-key", "bgw-key"]));
        assert_eq!(
            next["OPENAI_API_CONFIGS"]["0"],
            json!({"bedrock_gateway": "ai/other"})
        );
    }

    #[test]
    fn the_owner_entry_follows_the_gateway_to_a_new_url() {
        let (once, _) = applied(&users_config(), &wanted());
        let mut moved = wanted();
        moved.url = "https://bedrock.example.com/v1".into();
        let (next, upsert) = applied(&once, &moved);
        assert_eq!((upsert.index, upsert.created), (2, false));
        assert_eq!(
            next["OPENAI_API_BASE_URLS"][2],
            json!("https://bedrock.example.com/v1")
        );
        assert_eq!(next["OPENAI_API_BASE_URLS"].as_array().unwrap().len(), 3);
    }

    #[test]
    fn duplicates_of_the_gateways_connection_go_and_later_settings_move_up() {
        let config = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": [OURS, "http://a", OURS, "http://b"],
            "OPENAI_API_KEYS": ["bgw-key", "key-a", "bgw-key", "key-b"],
            "OPENAI_API_CONFIGS": {
                "0": {"bedrock_gateway": "ai/team", "enable": true, "prefix_id": "bedrock"},
                "1": {"prefix_id": "a"},
                "2": {"bedrock_gateway": "ai/team"},
                "3": {"prefix_id": "b"}
            }
        });
        let (next, upsert) = applied(&config, &wanted());
        assert_eq!((upsert.index, upsert.created), (0, false));
        assert_eq!(
            next["OPENAI_API_BASE_URLS"],
            json!([OURS, "http://a", "http://b"])
        );
        assert_eq!(
            next["OPENAI_API_KEYS"],
            json!(["bgw-key", "key-a", "key-b"])
        );
        assert_eq!(next["OPENAI_API_CONFIGS"]["1"], json!({"prefix_id": "a"}));
        assert_eq!(next["OPENAI_API_CONFIGS"]["2"], json!({"prefix_id": "b"}));
        assert!(next["OPENAI_API_CONFIGS"].get("3").is_none());
    }

    #[test]
    fn settings_keyed_by_url_move_to_their_position_only_when_something_is_written() {
        let legacy = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["http://a"],
            "OPENAI_API_KEYS": ["key-a"],
            "OPENAI_API_CONFIGS": {"http://a": {"prefix_id": "a"}, "7": {"stale": true}}
        });
        let (next, upsert) = applied(&legacy, &wanted());
        assert_eq!(upsert.index, 1);
        assert_eq!(
            next["OPENAI_API_CONFIGS"],
            json!({
                "0": {"prefix_id": "a"},
                "1": {"enable": true, "bedrock_gateway": "ai/team", "prefix_id": "bedrock"}
            })
        );
        // Already registered next to a legacy entry: nothing to write.
        let mut settled = legacy.clone();
        settled["OPENAI_API_BASE_URLS"] = json!(["http://a", OURS]);
        settled["OPENAI_API_KEYS"] = json!(["key-a", "bgw-key"]);
        settled["OPENAI_API_CONFIGS"]["1"] =
            json!({"enable": true, "bedrock_gateway": "ai/team", "prefix_id": "bedrock"});
        assert_eq!(upsert_of(&settled).update, None);
    }

    #[test]
    fn keys_pair_with_urls_by_position_however_long_the_list() {
        let short = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["http://a", "http://b"],
            "OPENAI_API_KEYS": ["key-a"]
        });
        let (next, upsert) = applied(&short, &wanted());
        assert_eq!(upsert.index, 2);
        assert_eq!(next["OPENAI_API_KEYS"], json!(["key-a", "", "bgw-key"]));
        let long = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": ["http://a"],
            "OPENAI_API_KEYS": ["key-a", "orphan", "orphan-2"],
            "OPENAI_API_CONFIGS": null
        });
        let (next, _) = applied(&long, &wanted());
        assert_eq!(next["OPENAI_API_KEYS"], json!(["key-a", "bgw-key"]));
        assert_eq!(next["OPENAI_API_BASE_URLS"], json!(["http://a", OURS]));
    }

    #[test]
    fn an_empty_prefix_counts_as_none_and_a_stale_one_goes() {
        let mut no_prefix = wanted();
        no_prefix.prefix_id = None;
        let config = |prefix: Value| {
            json!({
                "ENABLE_OPENAI_API": true,
                "OPENAI_API_BASE_URLS": [OURS],
                "OPENAI_API_KEYS": ["bgw-key"],
                "OPENAI_API_CONFIGS": {"0": {"enable": true, "bedrock_gateway": "ai/team", "prefix_id": prefix, "model_ids": []}}
            })
        };
        assert_eq!(upsert(&config(json!("")), &no_prefix).unwrap().update, None);
        let update = upsert(&config(json!("old")), &no_prefix)
            .unwrap()
            .update
            .unwrap();
        assert_eq!(
            update["OPENAI_API_CONFIGS"]["0"],
            json!({"enable": true, "bedrock_gateway": "ai/team", "model_ids": []})
        );
    }

    #[test]
    fn switched_off_openai_connections_are_reported_not_switched_on() {
        let mut config = users_config();
        config["ENABLE_OPENAI_API"] = json!(false);
        let upsert = upsert(&config, &wanted()).unwrap();
        assert!(!upsert.openai_enabled);
        assert_eq!(upsert.update.unwrap()["ENABLE_OPENAI_API"], json!(false));
        let mut unset = users_config();
        unset.as_object_mut().unwrap().remove("ENABLE_OPENAI_API");
        let upsert = upsert_of(&unset);
        assert!(!upsert.openai_enabled);
        assert!(upsert.update.unwrap().get("ENABLE_OPENAI_API").is_none());
    }

    #[test]
    fn settings_of_another_shape_are_errors() {
        for config in [
            json!([]),
            json!({"OPENAI_API_BASE_URLS": "http://a"}),
            json!({"OPENAI_API_BASE_URLS": [1]}),
            json!({"OPENAI_API_BASE_URLS": [], "OPENAI_API_KEYS": {}}),
            json!({"OPENAI_API_BASE_URLS": [], "OPENAI_API_CONFIGS": []}),
        ] {
            assert!(upsert(&config, &wanted()).is_err(), "{config}");
            assert!(remove(&config, "ai/team", OURS).is_err(), "{config}");
        }
    }

    #[test]
    fn removal_takes_out_only_the_gateways_entry_and_moves_the_rest_up() {
        let (registered, _) = applied(&users_config(), &wanted());
        // Someone adds a connection after the gateway's.
        let mut later = registered.clone();
        later["OPENAI_API_BASE_URLS"]
            .as_array_mut()
            .unwrap()
            .push(json!("http://ollama-openai:11434/v1"));
        later["OPENAI_API_KEYS"]
            .as_array_mut()
            .unwrap()
            .push(json!("key-late"));
        later["OPENAI_API_CONFIGS"]["3"] = json!({"prefix_id": "late"});
        let removed = remove(&later, "ai/team", OURS).unwrap().unwrap();
        let mut expected = users_config();
        expected["OPENAI_API_BASE_URLS"]
            .as_array_mut()
            .unwrap()
            .push(json!("http://ollama-openai:11434/v1"));
        expected["OPENAI_API_KEYS"]
            .as_array_mut()
            .unwrap()
            .push(json!("key-late"));
        expected["OPENAI_API_CONFIGS"]["2"] = json!({"prefix_id": "late"});
        assert_eq!(removed, expected);
        assert_eq!(remove(&removed, "ai/team", OURS).unwrap(), None);
        assert_eq!(remove(&users_config(), "ai/team", OURS).unwrap(), None);
    }

    #[test]
    fn removal_finds_an_entry_by_url_when_no_owner_is_recorded() {
        let config = json!({
            "ENABLE_OPENAI_API": true,
            "OPENAI_API_BASE_URLS": [format!("{OURS}/"), "http://a"],
            "OPENAI_API_KEYS": ["bgw-key", "key-a"],
            "OPENAI_API_CONFIGS": {"1": {"prefix_id": "a"}}
        });
        assert_eq!(
            remove(&config, "ai/team", OURS).unwrap().unwrap(),
            json!({
                "ENABLE_OPENAI_API": true,
                "OPENAI_API_BASE_URLS": ["http://a"],
                "OPENAI_API_KEYS": ["key-a"],
                "OPENAI_API_CONFIGS": {"0": {"prefix_id": "a"}}
            })
        );
    }

    #[test]
    fn removal_takes_every_duplicate() {
        let config = json!({
            "OPENAI_API_BASE_URLS": ["http://x", "http://a", OURS],
            "OPENAI_API_KEYS": ["k", "key-a", "k"],
            "OPENAI_API_CONFIGS": {"0": {"bedrock_gateway": "ai/team"}, "1": {"prefix_id": "a"}, "2": {"bedrock_gateway": "ai/team"}}
        });
        assert_eq!(
            remove(&config, "ai/team", OURS).unwrap().unwrap(),
            json!({
                "OPENAI_API_BASE_URLS": ["http://a"],
                "OPENAI_API_KEYS": ["key-a"],
                "OPENAI_API_CONFIGS": {"0": {"prefix_id": "a"}}
            })
        );
    }

    fn embedding_settings_of(engine: &str, model: &str, url: &str, key: &str) -> Value {
        json!({
            "status": true,
            "RAG_EMBEDDING_ENGINE": engine,
            "RAG_EMBEDDING_MODEL": model,
            "RAG_EMBEDDING_BATCH_SIZE": 8,
            "ENABLE_ASYNC_EMBEDDING": false,
            "RAG_EMBEDDING_CONCURRENT_REQUESTS": 2,
            "openai_config": {"url": url, "key": key},
            "ollama_config": {"url": "http://ollama:11434", "key": ""},
            "azure_openai_config": {"url": "", "key": "", "version": ""}
        })
    }

    fn embedding_target() -> EmbeddingTarget {
        EmbeddingTarget {
            url: OURS.into(),
            key: "bgw-key".into(),
            model: "amazon.titan-embed-text-v2:0".into(),
        }
    }

    #[test]
    fn embeddings_switch_to_the_gateway_keeping_the_other_settings() {
        let local = embedding_settings_of("", "sentence-transformers/all-MiniLM-L6-v2", "", "");
        assert_eq!(
            embedding_update(&local, &embedding_target())
                .unwrap()
                .unwrap(),
            json!({
                "RAG_EMBEDDING_ENGINE": "openai",
                "RAG_EMBEDDING_MODEL": "amazon.titan-embed-text-v2:0",
                "RAG_EMBEDDING_BATCH_SIZE": 8,
                "ENABLE_ASYNC_EMBEDDING": false,
                "RAG_EMBEDDING_CONCURRENT_REQUESTS": 2,
                "openai_config": {"url": OURS, "key": "bgw-key"}
            })
        );
        let in_place = embedding_settings_of(
            "openai",
            "amazon.titan-embed-text-v2:0",
            &format!("{OURS}/"),
            "bgw-key",
        );
        assert_eq!(
            embedding_update(&in_place, &embedding_target()).unwrap(),
            None
        );
        for changed in [
            embedding_settings_of("openai", "amazon.titan-embed-text-v2:0", OURS, "old-key"),
            embedding_settings_of("openai", "cohere.embed-english-v3", OURS, "bgw-key"),
            embedding_settings_of("ollama", "amazon.titan-embed-text-v2:0", OURS, "bgw-key"),
        ] {
            assert!(
                embedding_update(&changed, &embedding_target())
                    .unwrap()
                    .is_some()
            );
        }
    }

    #[test]
    fn removing_embeddings_clears_only_the_gateways_url_and_key() {
        let ours = embedding_settings_of("openai", "amazon.titan-embed-text-v2:0", OURS, "bgw-key");
        let cleared = embedding_removal(&ours, OURS).unwrap().unwrap();
        assert_eq!(cleared["RAG_EMBEDDING_ENGINE"], "openai");
        assert_eq!(
            cleared["RAG_EMBEDDING_MODEL"],
            "amazon.titan-embed-text-v2:0"
        );
        assert_eq!(cleared["openai_config"], json!({"url": "", "key": ""}));
        assert_eq!(cleared["RAG_EMBEDDING_BATCH_SIZE"], 8);
        let someone_elses = embedding_settings_of(
            "openai",
            "text-embedding-3-small",
            "https://api.openai.com/v1",
            "sk",
        );
        assert_eq!(embedding_removal(&someone_elses, OURS).unwrap(), None);
        let local = embedding_settings_of(
            "",
            "sentence-transformers/all-MiniLM-L6-v2",
            OURS,
            "bgw-key",
        );
        assert_eq!(embedding_removal(&local, OURS).unwrap(), None);
        assert!(embedding_removal(&json!({"embedding_engine": ""}), OURS).is_err());
        assert!(embedding_update(&json!({}), &embedding_target()).is_err());
    }

    fn model(id: &str, index: u64) -> Value {
        json!({"id": id, "name": id, "owned_by": "openai", "urlIdx": index})
    }

    #[test]
    fn visible_models_are_those_of_the_gateways_connection_with_its_prefix() {
        let models = json!({"data": [
            model("oa.gpt-4o", 0),
            model("bedrock.gpt-4o", 2),
            model("bedrock.anthropic.claude-3-haiku-20240307-v1:0", 2),
            model("stray", 2),
            {"id": "llama3:8b", "owned_by": "ollama", "urlIdx": 2},
            {"id": "my-agent", "owned_by": "openai", "pipe": {"type": "pipe"}}
        ]});
        let seen = visible_models(
            &models,
            2,
            Some("bedrock"),
            &["gpt-4o".into(), "nova".into()],
        )
        .unwrap();
        assert_eq!(
            seen.ids,
            [
                "bedrock.gpt-4o",
                "bedrock.anthropic.claude-3-haiku-20240307-v1:0"
            ]
        );
        assert_eq!(seen.missing, ["bedrock.nova"]);
        let bare = json!([model("gpt-4o", 1)]);
        let seen = visible_models(&bare, 1, None, &["gpt-4o".into()]).unwrap();
        assert_eq!((seen.ids.len(), seen.missing.len()), (1, 0));
        assert!(
            visible_models(&models, 5, None, &[])
                .unwrap()
                .ids
                .is_empty()
        );
        assert!(visible_models(&json!({"models": []}), 0, None, &[]).is_err());
        assert!(visible_models(&json!("x"), 0, None, &[]).is_err());
    }

    fn service(
        name: &str,
        selector: &[(&str, &str)],
        ports: &[(&str, i32)],
        headless: bool,
    ) -> Service {
        Service {
            metadata: ObjectMeta {
                name: Some(name.into()),
                ..ObjectMeta::default()
            },
            spec: Some(ServiceSpec {
                selector: Some(
                    selector
                        .iter()
                        .map(|(key, value)| (key.to_string(), value.to_string()))
                        .collect(),
                ),
                cluster_ip: headless.then(|| "None".to_owned()),
                ports: Some(
                    ports
                        .iter()
                        .map(|(name, port)| ServicePort {
                            name: (!name.is_empty()).then(|| name.to_string()),
                            port: *port,
                            ..ServicePort::default()
                        })
                        .collect(),
                ),
                ..ServiceSpec::default()
            }),
            ..Service::default()
        }
    }

    #[test]
    fn open_webuis_url_comes_from_the_service_selecting_its_pods() {
        let labels: BTreeMap<String, String> = [
            ("app.kubernetes.io/name", "open-webui"),
            ("app.kubernetes.io/instance", "owui"),
            ("pod-template-hash", "abc"),
        ]
        .iter()
        .map(|(key, value)| (key.to_string(), value.to_string()))
        .collect();
        let chart = service(
            "open-webui",
            &[
                ("app.kubernetes.io/name", "open-webui"),
                ("app.kubernetes.io/instance", "owui"),
            ],
            &[("http", 80)],
            false,
        );
        let headless = service(
            "open-webui-headless",
            &[("app.kubernetes.io/name", "open-webui")],
            &[("http", 8080)],
            true,
        );
        let unrelated = service(
            "pipelines",
            &[("app.kubernetes.io/name", "pipelines")],
            &[("http", 9099)],
            false,
        );
        let everything = service("everything", &[], &[("http", 80)], false);
        assert_eq!(
            url_from_services(
                &[
                    unrelated.clone(),
                    headless.clone(),
                    chart.clone(),
                    everything
                ],
                &labels,
                "ai"
            ),
            Ok("http://open-webui.ai.svc.cluster.local".to_owned())
        );
        assert_eq!(
            url_from_services(std::slice::from_ref(&headless), &labels, "ai"),
            Ok("http://open-webui-headless.ai.svc.cluster.local:8080".to_owned())
        );
        let https = service(
            "secure",
            &[("app.kubernetes.io/name", "open-webui")],
            &[("metrics", 9090), ("https", 443)],
            false,
        );
        assert_eq!(
            url_from_services(&[https], &labels, "ai"),
            Ok("https://secure.ai.svc.cluster.local".to_owned())
        );
        let unnamed = service(
            "plain",
            &[("app.kubernetes.io/name", "open-webui")],
            &[("", 3000)],
            false,
        );
        assert_eq!(
            url_from_services(&[unnamed], &labels, "ai"),
            Ok("http://plain.ai.svc.cluster.local:3000".to_owned())
        );
        let second = service(
            "open-webui-2",
            &[("app.kubernetes.io/instance", "owui")],
            &[("http", 80)],
            false,
        );
        assert!(
            url_from_services(&[chart, second], &labels, "ai")
                .unwrap_err()
                .contains("several Services")
        );
        assert!(
            url_from_services(&[unrelated], &labels, "ai")
                .unwrap_err()
                .contains("no Service")
        );
        let mut external = service(
            "ext",
            &[("app.kubernetes.io/name", "open-webui")],
            &[("http", 80)],
            false,
        );
        external.spec.as_mut().unwrap().type_ = Some("ExternalName".into());
        assert!(url_from_services(&[external], &labels, "ai").is_err());
    }

    #[test]
    fn the_first_key_of_a_secret_value_is_used() {
        assert_eq!(first_key(b"sk-admin\n"), Some("sk-admin".into()));
        assert_eq!(
            first_key(b"# rotated\n\n  bgw-one \nbgw-two\n"),
            Some("bgw-one".into())
        );
        assert_eq!(first_key(b" \n# only a comment\n"), None);
        assert_eq!(first_key(&[0xff, 0xfe]), None);
    }

    #[test]
    fn keys_never_show_in_debug_output() {
        let token = Token::new("sk-secret-admin".into());
        assert!(!format!("{token:?}").contains("sk-secret"));
        let target = AdminTarget {
            base_url: "http://open-webui".into(),
            token,
        };
        assert!(!format!("{target:?}").contains("sk-secret"));
        assert!(!format!("{:?}", wanted()).contains("bgw-key"));
    }

    #[test]
    fn error_details_are_short_and_printable() {
        assert_eq!(
            error_detail(br#"{"detail":"Not authenticated"}"#),
            "Not authenticated"
        );
        let validation = br#"{"detail":[{"type":"missing","loc":["body","OPENAI_API_KEYS",0],"msg":"Field required","input":{"OPENAI_API_KEYS":["sk-secret"]}}]}"#;
        assert_eq!(
            error_detail(validation),
            "body.OPENAI_API_KEYS.0: Field required"
        );
        assert_eq!(
            error_detail(br#"{"detail":{"key":"sk-secret"}}"#),
            "an error of unknown shape"
        );
        assert_eq!(error_detail(br#"{"error":"x"}"#), "no detail");
        assert_eq!(error_detail(b"Bad\r\nGateway"), "Bad  Gateway");
        assert_eq!(error_detail(b""), "no detail");
        assert_eq!(
            error_detail("x".repeat(1000).as_bytes()).len(),
            MAX_DETAIL_CHARS
        );
    }

    /// Answers each connection on a loopback port with `response`, recording the requests.
    async fn one_shot_server(response: &'static str) -> (String, tokio::task::JoinHandle<String>) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let handle = tokio::spawn(async move {
            let (mut socket, _) = listener.accept().await.unwrap();
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            loop {
                let read = socket.read(&mut buffer).await.unwrap();
                request.extend_from_slice(&buffer[..read]);
                let text = String::from_utf8_lossy(&request).to_string();
                if let Some(head_end) = text.find("\r\n\r\n") {
                    let length = text[..head_end]
                        .lines()
                        .find_map(|line| {
                            line.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(str::to_owned)
                        })
                        .and_then(|value| value.trim().parse::<usize>().ok())
                        .unwrap_or(0);
                    if request.len() >= head_end + 4 + length {
                        break;
                    }
                }
                if read == 0 {
                    break;
                }
            }
            socket.write_all(response.as_bytes()).await.unwrap();
            socket.shutdown().await.unwrap();
            String::from_utf8_lossy(&request).to_string()
        });
        (format!("http://{address}"), handle)
    }

    #[tokio::test]
    async fn the_client_sends_the_bearer_key_and_json_and_reads_json() {
        let (base, server) = one_shot_server(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\nconnection: close\r\n\r\n{\"ok\":true}",
        )
        .await;
        let client = OpenWebUiClient::new();
        let answer = client
            .post(
                &format!("{base}/"),
                &Token::new("sk-admin".into()),
                CONFIG_UPDATE_PATH,
                &json!({"a": 1}),
            )
            .await
            .unwrap();
        assert_eq!(answer, json!({"ok": true}));
        let request = server.await.unwrap();
        assert!(
            request.starts_with("POST /openai/config/update HTTP/1.1\r\n"),
            "{request}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("authorization: bearer sk-admin\r\n")
        );
        assert!(request.ends_with("{\"a\":1}"));
    }

    #[tokio::test]
    async fn refusals_and_unreachable_servers_are_told_apart() {
        let client = OpenWebUiClient::new();
        let token = Token::new("sk-admin".into());
        let (base, _server) = one_shot_server(
            "HTTP/1.1 401 Unauthorized\r\ncontent-length: 30\r\nconnection: close\r\n\r\n{\"detail\":\"Not authenticated\"}",
        )
        .await;
        let error = client.get(&base, &token, CONFIG_PATH).await.unwrap_err();
        assert_eq!(error.reason(), "OpenWebUIUnauthorized");
        assert!(error.to_string().contains("Not authenticated"));
        assert!(!error.to_string().contains("sk-admin"));
        let (base, _server) = one_shot_server(
            "HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\nconnection: close\r\n\r\n{}",
        )
        .await;
        assert_eq!(
            client
                .get(&base, &token, CONFIG_PATH)
                .await
                .unwrap_err()
                .reason(),
            "OpenWebUIForbidden"
        );
        let (base, _server) = one_shot_server(
            "HTTP/1.1 500 Internal Server Error\r\ncontent-length: 4\r\nconnection: close\r\n\r\noops",
        )
        .await;
        assert_eq!(
            client.get(&base, &token, CONFIG_PATH).await.unwrap_err(),
            AdminApiError::Status {
                status: 500,
                path: CONFIG_PATH.into(),
                detail: "oops".into()
            }
        );
        let (base, _server) = one_shot_server(
            "HTTP/1.1 200 OK\r\ncontent-length: 9\r\nconnection: close\r\n\r\n<!doctype",
        )
        .await;
        assert_eq!(
            client
                .get(&base, &token, CONFIG_PATH)
                .await
                .unwrap_err()
                .reason(),
            "OpenWebUIUnexpectedAnswer"
        );
        // A port nothing listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = closed.local_addr().unwrap();
        drop(closed);
        let error = client
            .get(&format!("http://{address}"), &token, CONFIG_PATH)
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "OpenWebUIUnreachable");
        let error = client
            .get("not a url", &token, CONFIG_PATH)
            .await
            .unwrap_err();
        assert_eq!(error.reason(), "OpenWebUIUnreachable");
    }

    #[tokio::test]
    async fn settings_of_one_open_webui_are_changed_by_one_reconcile_at_a_time() {
        let client = OpenWebUiClient::new();
        let held = client.lock_settings("http://open-webui/").await;
        let same = tokio::time::timeout(
            Duration::from_millis(200),
            client.lock_settings("http://open-webui"),
        )
        .await;
        assert!(
            same.is_err(),
            "a second writer of the same Open WebUI must wait"
        );
        let other = tokio::time::timeout(
            Duration::from_secs(5),
            client.clone().lock_settings("http://another-open-webui"),
        )
        .await;
        assert!(other.is_ok(), "another Open WebUI is not held up");
        drop(held);
        assert!(
            tokio::time::timeout(
                Duration::from_secs(5),
                client.lock_settings("http://open-webui")
            )
            .await
            .is_ok()
        );
    }
}
