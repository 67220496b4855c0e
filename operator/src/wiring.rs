//! Wiring a gateway into an Open WebUI pod template, and taking it out again.
//!
//! Open WebUI reads `OPENAI_API_BASE_URLS` and `OPENAI_API_KEYS`: lists
//! separated by `;` and paired by position. The gateway's entry is appended to
//! whatever connections the user has; its key never appears in plain text:
//! a variable of the gateway's own reads it from the Secret, and the keys list
//! refers to it with Kubernetes' `$(VAR)` expansion, which only sees variables
//! defined earlier in the list, so the keys list is kept last.
//!
//! With `openWebUI.embeddings` the gateway also becomes Open WebUI's RAG
//! embedding engine through the `RAG_*` variables (the key again from the Secret).
//! Open WebUI reads all of these on its first start only; `openwebui_admin`
//! changes a running install.

use k8s_openapi::api::core::v1::{Container, EnvVar, EnvVarSource, PodSpec, SecretKeySelector};
use serde::{Deserialize, Serialize};

use crate::crd::{BedrockGateway, OpenWebUiEmbeddings, WiringMode};
use crate::resources::{self, GatewayNames, PROXY_CONTAINER};

pub const URLS_VAR: &str = "OPENAI_API_BASE_URLS";
pub const KEYS_VAR: &str = "OPENAI_API_KEYS";
const SINGLE_URL_VAR: &str = "OPENAI_API_BASE_URL";
const SINGLE_KEY_VAR: &str = "OPENAI_API_KEY";
pub const PERSISTENT_CONFIG_VAR: &str = "ENABLE_PERSISTENT_CONFIG";
pub const RAG_ENGINE_VAR: &str = "RAG_EMBEDDING_ENGINE";
pub const RAG_URL_VAR: &str = "RAG_OPENAI_API_BASE_URL";
pub const RAG_KEY_VAR: &str = "RAG_OPENAI_API_KEY";
pub const RAG_MODEL_VAR: &str = "RAG_EMBEDDING_MODEL";
/// Open WebUI's name for an OpenAI-compatible embedding engine.
pub const RAG_ENGINE_OPENAI: &str = "openai";
const RAG_VARS: [&str; 4] = [RAG_ENGINE_VAR, RAG_URL_VAR, RAG_KEY_VAR, RAG_MODEL_VAR];
/// Annotation (on the workload, not its pod template) recording what a gateway added.
pub const WIRING_ANNOTATION_PREFIX: &str = "bedrock-gateway.io/wiring.";

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WiringError {
    #[error("container '{0}' not found in the Open WebUI pod template")]
    ContainerNotFound(String),
    #[error("the Open WebUI pod template has no containers")]
    NoContainers,
    #[error(
        "{0} is set from a ConfigMap or Secret; the gateway cannot add itself to it (set it as a plain value, or use the admin API wiring)"
    )]
    NotAPlainValue(&'static str),
    #[error(
        "{0} is already set on the Open WebUI container; remove it there, or drop openWebUI.embeddings"
    )]
    EmbeddingsAlreadySet(String),
}

/// What a gateway added to a workload, so that exactly that can be removed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WiringRecord {
    pub mode: WiringMode,
    pub container: String,
    pub url: String,
    pub key_var: String,
    pub created_urls: bool,
    pub created_keys: bool,
    /// The gateway set `ENABLE_PERSISTENT_CONFIG=False`.
    #[serde(default)]
    pub set_persistent_config: bool,
    /// The gateway set the `RAG_*` embedding variables.
    #[serde(default)]
    pub embeddings: bool,
}

/// The gateway's base URL as Open WebUI reaches it: the sidecar on
/// localhost, `openWebUI.gatewayUrl`, or the in-cluster Service URL.
pub fn open_webui_gateway_url(gateway: &BedrockGateway) -> String {
    let spec = gateway.spec.open_web_ui.as_ref();
    if spec.is_some_and(|spec| spec.mode == WiringMode::Sidecar) {
        return resources::sidecar_url();
    }
    spec.and_then(|spec| spec.gateway_url.as_deref())
        .map(|url| url.trim_end_matches('/').to_owned())
        .filter(|url| !url.is_empty())
        .unwrap_or_else(|| resources::service_url(gateway))
}

pub fn annotation_key(gateway: &BedrockGateway) -> String {
    use kube::ResourceExt;
    format!("{WIRING_ANNOTATION_PREFIX}{}", gateway.name_any())
}

/// The environment variable that carries this gateway's key into Open WebUI.
pub fn key_var(gateway: &BedrockGateway) -> String {
    use kube::ResourceExt;
    let name: String = gateway
        .name_any()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("BEDROCK_GATEWAY_{name}_API_KEY")
}

/// The Open WebUI container: the named one, else `open-webui`, else the first
/// container that is not a gateway sidecar.
pub fn find_container<'a>(
    pod: &'a mut PodSpec,
    wanted: Option<&str>,
) -> Result<&'a mut Container, WiringError> {
    if pod.containers.is_empty() {
        return Err(WiringError::NoContainers);
    }
    let index = match wanted {
        Some(name) => pod
            .containers
            .iter()
            .position(|container| container.name == name)
            .ok_or_else(|| WiringError::ContainerNotFound(name.to_owned()))?,
        None => pod
            .containers
            .iter()
            .position(|container| container.name == "open-webui")
            .or_else(|| {
                pod.containers
                    .iter()
                    .position(|container| container.name != PROXY_CONTAINER)
            })
            .unwrap_or(0),
    };
    Ok(&mut pod.containers[index])
}

fn plain_value(env: &[EnvVar], name: &'static str) -> Result<Option<String>, WiringError> {
    match env.iter().find(|var| var.name == name) {
        None => Ok(None),
        Some(var) if var.value_from.is_some() => Err(WiringError::NotAPlainValue(name)),
        Some(var) => Ok(Some(var.value.clone().unwrap_or_default())),
    }
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(';')
        .map(|item| item.trim().to_owned())
        .collect()
}

fn set_value(env: &mut Vec<EnvVar>, name: &str, value: String) {
    match env.iter_mut().find(|var| var.name == name) {
        Some(var) => {
            var.value = Some(value);
            var.value_from = None;
        }
        None => env.push(EnvVar {
            name: name.to_owned(),
            value: Some(value),
            ..EnvVar::default()
        }),
    }
}

fn set_secret_env(env: &mut Vec<EnvVar>, name: &str, secret: &str, key: &str) {
    let wanted = secret_env(name, secret, key);
    match env.iter_mut().find(|var| var.name == name) {
        Some(var) => *var = wanted,
        None => env.push(wanted),
    }
}

fn secret_env(name: &str, secret: &str, key: &str) -> EnvVar {
    EnvVar {
        name: name.to_owned(),
        value_from: Some(EnvVarSource {
            secret_key_ref: Some(SecretKeySelector {
                name: secret.to_owned(),
                key: key.to_owned(),
                optional: Some(false),
            }),
            ..EnvVarSource::default()
        }),
        ..EnvVar::default()
    }
}

/// The connection lists with this gateway's entry removed.
fn lists_without(
    env: &[EnvVar],
    url: &str,
) -> Result<(Vec<String>, Vec<String>, bool, bool), WiringError> {
    let urls_value = plain_value(env, URLS_VAR)?;
    let keys_value = plain_value(env, KEYS_VAR)?;
    let had_urls = urls_value.is_some();
    let had_keys = keys_value.is_some();
    let (urls, mut keys) = match urls_value {
        Some(urls) => (
            split_list(&urls),
            keys_value.map(|keys| split_list(&keys)).unwrap_or_default(),
        ),
        // Open WebUI prefers the plural lists; keep a singular connection in them.
        None => match plain_value(env, SINGLE_URL_VAR)? {
            Some(url) => {
                let key = if env.iter().any(|var| var.name == SINGLE_KEY_VAR) {
                    format!("$({SINGLE_KEY_VAR})")
                } else {
                    String::new()
                };
                (vec![url], vec![key])
            }
            None => (Vec::new(), Vec::new()),
        },
    };
    keys.resize(urls.len(), String::new());
    // Open WebUI breaks on a trailing '/' in a plural entry; compare without it.
    let (urls, keys): (Vec<String>, Vec<String>) = urls
        .into_iter()
        .zip(keys)
        .filter(|(entry, _)| !entry.is_empty() && entry.trim_end_matches('/') != url)
        .unzip();
    Ok((urls, keys, had_urls, had_keys))
}

/// Adds the gateway to the container's connection lists. Applying it twice
/// gives the same result as once.
pub fn wire_env(
    container: &mut Container,
    url: &str,
    key_var: &str,
    secret: &str,
    secret_key: &str,
    previous: Option<&WiringRecord>,
) -> Result<(bool, bool), WiringError> {
    let env = container.env.get_or_insert_with(Vec::new);
    let (mut urls, mut keys, had_urls, had_keys) = lists_without(env, url)?;
    urls.push(url.to_owned());
    keys.push(format!("$({key_var})"));
    set_value(env, URLS_VAR, urls.join(";"));
    set_secret_env(env, key_var, secret, secret_key);
    // `$(VAR)` only sees variables defined earlier: the keys list must come
    // after the key variable; it is moved only when it does not.
    let key_position = env.iter().position(|var| var.name == key_var);
    let keys_position = env.iter().position(|var| var.name == KEYS_VAR);
    let keys_value = keys.join(";");
    match (key_position, keys_position) {
        (Some(key), Some(list)) if list > key => set_value(env, KEYS_VAR, keys_value),
        _ => {
            env.retain(|var| var.name != KEYS_VAR);
            env.push(EnvVar {
                name: KEYS_VAR.to_owned(),
                value: Some(keys_value),
                ..EnvVar::default()
            });
        }
    }
    // A list is the gateway's own if it did not exist before the gateway wrote it.
    let created_urls = !had_urls || previous.is_some_and(|record| record.created_urls);
    let created_keys = !had_keys || previous.is_some_and(|record| record.created_keys);
    Ok((created_urls, created_keys))
}

/// Removes exactly what `wire_env` added.
pub fn unwire_env(container: &mut Container, record: &WiringRecord) -> Result<(), WiringError> {
    let env = container.env.get_or_insert_with(Vec::new);
    if record.set_persistent_config {
        env.retain(|var| var.name != PERSISTENT_CONFIG_VAR);
    }
    if record.embeddings {
        env.retain(|var| !RAG_VARS.contains(&var.name.as_str()));
    }
    let (urls, keys, _, _) = lists_without(env, &record.url)?;
    env.retain(|var| var.name != record.key_var);
    if urls.is_empty() && record.created_urls {
        env.retain(|var| var.name != URLS_VAR);
    } else {
        set_value(env, URLS_VAR, urls.join(";"));
    }
    if urls.is_empty() && record.created_keys {
        env.retain(|var| var.name != KEYS_VAR);
    } else {
        set_value(env, KEYS_VAR, keys.join(";"));
    }
    if container.env.as_ref().is_some_and(Vec::is_empty) {
        container.env = None;
    }
    Ok(())
}

/// Wires the gateway into a pod template and returns the record to keep.
pub fn wire(
    pod: &mut PodSpec,
    gateway: &BedrockGateway,
    proxy_image: &str,
    previous: Option<&WiringRecord>,
) -> Result<WiringRecord, WiringError> {
    let spec = gateway.spec.open_web_ui.clone().unwrap_or_default();
    let names = GatewayNames::of(gateway);
    let secret_key = resources::api_key_secret_key(gateway);
    let key_var = key_var(gateway);
    match spec.mode {
        WiringMode::Env => remove_sidecar(pod, gateway),
        WiringMode::Sidecar => add_sidecar(pod, gateway, proxy_image),
    }
    let url = open_webui_gateway_url(gateway);
    // A mode switch leaves the old URL behind unless it is taken out first.
    let wanted_container = spec
        .workload_ref
        .as_ref()
        .and_then(|reference| reference.container.as_deref());
    let container = find_container(pod, wanted_container)?;
    if let Some(old) = previous.filter(|old| old.url != url) {
        unwire_env(container, old)?;
    }
    let (created_urls, created_keys) = wire_env(
        container,
        &url,
        &key_var,
        &names.secret,
        &secret_key,
        previous,
    )?;
    let had_override = previous.is_some_and(|record| record.set_persistent_config);
    let env = container.env.get_or_insert_with(Vec::new);
    if spec.env_overrides_database {
        set_value(env, PERSISTENT_CONFIG_VAR, "False".to_owned());
    } else if had_override {
        env.retain(|var| var.name != PERSISTENT_CONFIG_VAR);
    }
    let embeddings = wire_embeddings(
        env,
        spec.embeddings.as_ref(),
        &url,
        (&names.secret, &secret_key),
        previous.is_some_and(|record| record.embeddings),
    )?;
    Ok(WiringRecord {
        mode: spec.mode,
        container: container.name.clone(),
        url,
        key_var,
        created_urls,
        created_keys,
        set_persistent_config: spec.env_overrides_database,
        embeddings,
    })
}

/// Sets (or, once no longer wanted, removes) the `RAG_*` variables that make
/// the gateway Open WebUI's embedding engine. Variables the gateway did not
/// set itself are never overwritten. Returns whether they are set.
fn wire_embeddings(
    env: &mut Vec<EnvVar>,
    embeddings: Option<&OpenWebUiEmbeddings>,
    url: &str,
    (secret, secret_key): (&str, &str),
    owned: bool,
) -> Result<bool, WiringError> {
    let Some(embeddings) = embeddings else {
        if owned {
            env.retain(|var| !RAG_VARS.contains(&var.name.as_str()));
        }
        return Ok(false);
    };
    if !owned && let Some(existing) = env.iter().find(|var| RAG_VARS.contains(&var.name.as_str())) {
        return Err(WiringError::EmbeddingsAlreadySet(existing.name.clone()));
    }
    set_value(env, RAG_ENGINE_VAR, RAG_ENGINE_OPENAI.to_owned());
    set_value(env, RAG_URL_VAR, url.to_owned());
    set_secret_env(env, RAG_KEY_VAR, secret, secret_key);
    set_value(env, RAG_MODEL_VAR, embeddings.model.clone());
    Ok(true)
}

/// Takes the gateway out of a pod template.
pub fn unwire(
    pod: &mut PodSpec,
    gateway: &BedrockGateway,
    record: &WiringRecord,
) -> Result<(), WiringError> {
    remove_sidecar(pod, gateway);
    let container = find_container(pod, Some(&record.container))?;
    unwire_env(container, record)
}

fn add_sidecar(pod: &mut PodSpec, gateway: &BedrockGateway, proxy_image: &str) {
    let sidecar = resources::proxy_container(gateway, proxy_image, true);
    match pod
        .containers
        .iter_mut()
        .find(|container| container.name == PROXY_CONTAINER)
    {
        Some(existing) => *existing = sidecar,
        None => pod.containers.push(sidecar),
    }
    let volume = resources::key_volume(gateway);
    let volumes = pod.volumes.get_or_insert_with(Vec::new);
    match volumes
        .iter_mut()
        .find(|existing| existing.name == volume.name)
    {
        Some(existing) => *existing = volume,
        None => volumes.push(volume),
    }
}

fn remove_sidecar(pod: &mut PodSpec, gateway: &BedrockGateway) {
    pod.containers
        .retain(|container| container.name != PROXY_CONTAINER);
    let volume_name = resources::key_volume_name(gateway);
    if let Some(volumes) = pod.volumes.as_mut() {
        volumes.retain(|volume| volume.name != volume_name);
        if volumes.is_empty() {
            pod.volumes = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crd::{BedrockGatewaySpec, OpenWebUiSpec, WorkloadRef};

    fn gateway(mode: WiringMode) -> BedrockGateway {
        let mut gateway = BedrockGateway::new(
            "team-a",
            BedrockGatewaySpec {
                region: "us-east-1".into(),
                open_web_ui: Some(OpenWebUiSpec {
                    workload_ref: Some(WorkloadRef {
                        name: "open-webui".into(),
                        ..WorkloadRef::default()
                    }),
                    mode,
                    ..OpenWebUiSpec::default()
                }),
                ..BedrockGatewaySpec::default()
            },
        );
        gateway.metadata.namespace = Some("ai".into());
        gateway
    }

    fn var(name: &str, value: &str) -> EnvVar {
        EnvVar {
            name: name.into(),
            value: Some(value.into()),
            ..EnvVar::default()
        }
    }

    fn pod(env: Vec<EnvVar>) -> PodSpec {
        PodSpec {
            containers: vec![Container {
                name: "open-webui".into(),
                env: (!env.is_empty()).then_some(env),
                ..Container::default()
            }],
            ..PodSpec::default()
        }
    }

    fn value(pod: &PodSpec, name: &str) -> Option<String> {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|var| var.name == name)
            .and_then(|var| var.value.clone())
    }

    const URL: &str = "http://team-a-bedrock-gateway.ai.svc.cluster.local/v1";

    #[test]
    fn the_gateway_is_appended_to_existing_connections_and_the_key_stays_secret() {
        let mut template = pod(vec![
            var(URLS_VAR, "http://pipelines:9099;https://api.openai.com/v1"),
            var(KEYS_VAR, "0p3n-w3bu!;sk-user"),
            var("WEBUI_NAME", "x"),
        ]);
        let gateway = gateway(WiringMode::Env);
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        assert_eq!(
            value(&template, URLS_VAR).unwrap(),
            format!("http://pipelines:9099;https://api.openai.com/v1;{URL}")
        );
        assert_eq!(
            value(&template, KEYS_VAR).unwrap(),
            "0p3n-w3bu!;sk-user;$(BEDROCK_GATEWAY_TEAM_A_API_KEY)"
        );
        let env = template.containers[0].env.as_ref().unwrap();
        let key_position = env
            .iter()
            .position(|var| var.name == "BEDROCK_GATEWAY_TEAM_A_API_KEY")
            .unwrap();
        let keys_position = env.iter().position(|var| var.name == KEYS_VAR).unwrap();
        assert!(
            key_position < keys_position,
            "$(VAR) only sees earlier variables"
        );
        let selector = env[key_position]
            .value_from
            .as_ref()
            .unwrap()
            .secret_key_ref
            .as_ref()
            .unwrap();
        assert_eq!(
            (selector.name.as_str(), selector.key.as_str()),
            ("team-a-bedrock-gateway-api-key", "api-key")
        );
        assert!(env[key_position].value.is_none());
        assert!(!record.created_urls && !record.created_keys);
    }

    #[test]
    fn wiring_twice_changes_nothing_and_unwiring_restores_the_original() {
        let original = pod(vec![
            var(URLS_VAR, "https://api.openai.com/v1"),
            var(KEYS_VAR, "sk-user"),
        ]);
        let gateway = gateway(WiringMode::Env);
        let mut template = original.clone();
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        let once = template.clone();
        let again = wire(&mut template, &gateway, "img", Some(&record)).unwrap();
        assert_eq!(template, once);
        assert_eq!(again, record);
        unwire(&mut template, &gateway, &record).unwrap();
        assert_eq!(
            value(&template, URLS_VAR).as_deref(),
            Some("https://api.openai.com/v1")
        );
        assert_eq!(value(&template, KEYS_VAR).as_deref(), Some("sk-user"));
        assert!(
            template.containers[0]
                .env
                .iter()
                .flatten()
                .all(|var| !var.name.starts_with("BEDROCK_GATEWAY"))
        );
    }

    #[test]
    fn variables_the_gateway_created_are_removed_with_it() {
        let gateway = gateway(WiringMode::Env);
        let mut template = pod(vec![var("WEBUI_NAME", "x")]);
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        assert!(record.created_urls && record.created_keys);
        assert_eq!(value(&template, URLS_VAR).unwrap(), URL);
        unwire(&mut template, &gateway, &record).unwrap();
        assert_eq!(template, pod(vec![var("WEBUI_NAME", "x")]));
    }

    #[test]
    fn a_single_connection_is_kept_in_the_lists() {
        let gateway = gateway(WiringMode::Env);
        let mut template = pod(vec![
            var(SINGLE_URL_VAR, "https://api.openai.com/v1"),
            var(SINGLE_KEY_VAR, "sk-user"),
        ]);
        wire(&mut template, &gateway, "img", None).unwrap();
        assert_eq!(
            value(&template, URLS_VAR).unwrap(),
            format!("https://api.openai.com/v1;{URL}")
        );
        assert_eq!(
            value(&template, KEYS_VAR).unwrap(),
            "$(OPENAI_API_KEY);$(BEDROCK_GATEWAY_TEAM_A_API_KEY)"
        );
    }

    #[test]
    fn someone_stripping_the_env_gets_it_restored() {
        let gateway = gateway(WiringMode::Env);
        let mut template = pod(vec![
            var(URLS_VAR, "https://api.openai.com/v1"),
            var(KEYS_VAR, "sk"),
        ]);
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        let wired = template.clone();
        template.containers[0]
            .env
            .as_mut()
            .unwrap()
            .retain(|var| !var.name.starts_with("BEDROCK_GATEWAY"));
        set_value(
            template.containers[0].env.as_mut().unwrap(),
            URLS_VAR,
            "https://api.openai.com/v1".into(),
        );
        set_value(
            template.containers[0].env.as_mut().unwrap(),
            KEYS_VAR,
            "sk".into(),
        );
        wire(&mut template, &gateway, "img", Some(&record)).unwrap();
        assert_eq!(template, wired);
    }

    #[test]
    fn sidecar_mode_injects_a_localhost_proxy_and_removes_it_again() {
        let gateway = gateway(WiringMode::Sidecar);
        let original = pod(vec![]);
        let mut template = original.clone();
        let record = wire(&mut template, &gateway, "registry/proxy:1", None).unwrap();
        assert_eq!(record.url, "http://127.0.0.1:8089/v1");
        let sidecar = template
            .containers
            .iter()
            .find(|c| c.name == PROXY_CONTAINER)
            .unwrap();
        assert!(
            sidecar
                .args
                .as_ref()
                .unwrap()
                .contains(&"--listen=127.0.0.1:8089".to_owned())
        );
        assert_eq!(template.volumes.as_ref().unwrap().len(), 1);
        assert_eq!(
            value(&template, URLS_VAR).unwrap(),
            "http://127.0.0.1:8089/v1"
        );
        let once = template.clone();
        wire(&mut template, &gateway, "registry/proxy:1", Some(&record)).unwrap();
        assert_eq!(template, once);
        unwire(&mut template, &gateway, &record).unwrap();
        assert_eq!(template, original);
    }

    #[test]
    fn the_database_override_is_opt_in_and_removed_with_the_gateway() {
        let mut gateway = gateway(WiringMode::Env);
        gateway
            .spec
            .open_web_ui
            .as_mut()
            .unwrap()
            .env_overrides_database = true;
        let original = pod(vec![var("WEBUI_NAME", "x")]);
        let mut template = original.clone();
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        assert_eq!(
            value(&template, PERSISTENT_CONFIG_VAR).as_deref(),
            Some("False")
        );
        gateway
            .spec
            .open_web_ui
            .as_mut()
            .unwrap()
            .env_overrides_database = false;
        let record = wire(&mut template, &gateway, "img", Some(&record)).unwrap();
        assert_eq!(
            value(&template, PERSISTENT_CONFIG_VAR),
            None,
            "turning it off removes it"
        );
        gateway
            .spec
            .open_web_ui
            .as_mut()
            .unwrap()
            .env_overrides_database = true;
        let record = wire(&mut template, &gateway, "img", Some(&record)).unwrap();
        unwire(&mut template, &gateway, &record).unwrap();
        assert_eq!(template, original);
    }

    #[test]
    fn unmergeable_or_missing_targets_are_errors() {
        let gateway = gateway(WiringMode::Env);
        let mut from_secret = pod(vec![EnvVar {
            name: URLS_VAR.into(),
            value_from: Some(EnvVarSource::default()),
            ..EnvVar::default()
        }]);
        assert_eq!(
            wire(&mut from_secret, &gateway, "img", None).unwrap_err(),
            WiringError::NotAPlainValue(URLS_VAR)
        );
        let mut empty = PodSpec::default();
        assert_eq!(
            wire(&mut empty, &gateway, "img", None).unwrap_err(),
            WiringError::NoContainers
        );
        let mut named = gateway.clone();
        named
            .spec
            .open_web_ui
            .as_mut()
            .unwrap()
            .workload_ref
            .as_mut()
            .unwrap()
            .container = Some("nope".into());
        assert!(matches!(
            wire(&mut pod(vec![]), &named, "img", None).unwrap_err(),
            WiringError::ContainerNotFound(_)
        ));
    }

    fn secret_ref_of(pod: &PodSpec, name: &str) -> Option<(String, String)> {
        pod.containers[0]
            .env
            .iter()
            .flatten()
            .find(|var| var.name == name)
            .and_then(|var| var.value_from.as_ref()?.secret_key_ref.as_ref())
            .map(|selector| (selector.name.clone(), selector.key.clone()))
    }

    #[test]
    fn embeddings_point_open_webuis_rag_at_the_gateway_and_go_with_it() {
        let mut gateway = gateway(WiringMode::Env);
        gateway.spec.open_web_ui.as_mut().unwrap().embeddings = Some(OpenWebUiEmbeddings {
            model: "amazon.titan-embed-text-v2:0".into(),
        });
        let original = pod(vec![var("WEBUI_NAME", "x")]);
        let mut template = original.clone();
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        assert!(record.embeddings);
        assert_eq!(value(&template, RAG_ENGINE_VAR).as_deref(), Some("openai"));
        assert_eq!(value(&template, RAG_URL_VAR).as_deref(), Some(URL));
        assert_eq!(
            value(&template, RAG_MODEL_VAR).as_deref(),
            Some("amazon.titan-embed-text-v2:0")
        );
        assert_eq!(value(&template, RAG_KEY_VAR), None, "never in plain text");
        assert_eq!(
            secret_ref_of(&template, RAG_KEY_VAR),
            Some(("team-a-bedrock-gateway-api-key".into(), "api-key".into()))
        );
        let once = template.clone();
        assert_eq!(
            wire(&mut template, &gateway, "img", Some(&record)).unwrap(),
            record
        );
        assert_eq!(template, once);
        let mut without = gateway.clone();
        without.spec.open_web_ui.as_mut().unwrap().embeddings = None;
        let dropped = wire(&mut template, &without, "img", Some(&record)).unwrap();
        assert!(!dropped.embeddings);
        assert!(
            template.containers[0]
                .env
                .iter()
                .flatten()
                .all(|var| !var.name.starts_with("RAG_"))
        );
        let record = wire(&mut template, &gateway, "img", Some(&dropped)).unwrap();
        unwire(&mut template, &gateway, &record).unwrap();
        assert_eq!(template, original);
    }

    #[test]
    fn embedding_settings_of_the_users_are_never_overwritten() {
        let mut gateway = gateway(WiringMode::Env);
        gateway.spec.open_web_ui.as_mut().unwrap().embeddings = Some(OpenWebUiEmbeddings {
            model: "amazon.titan-embed-text-v2:0".into(),
        });
        let mut template = pod(vec![var(RAG_ENGINE_VAR, "ollama")]);
        assert_eq!(
            wire(&mut template, &gateway, "img", None).unwrap_err(),
            WiringError::EmbeddingsAlreadySet(RAG_ENGINE_VAR.into())
        );
    }

    #[test]
    fn a_gateway_url_override_is_what_open_webui_gets() {
        let mut gateway = gateway(WiringMode::Env);
        let spec = gateway.spec.open_web_ui.as_mut().unwrap();
        spec.gateway_url = Some("https://bedrock.example.com/v1/".into());
        spec.embeddings = Some(OpenWebUiEmbeddings {
            model: "cohere.embed-english-v3".into(),
        });
        assert_eq!(
            open_webui_gateway_url(&gateway),
            "https://bedrock.example.com/v1"
        );
        let mut template = pod(vec![]);
        let record = wire(&mut template, &gateway, "img", None).unwrap();
        assert_eq!(record.url, "https://bedrock.example.com/v1");
        assert_eq!(
            value(&template, URLS_VAR).as_deref(),
            Some("https://bedrock.example.com/v1")
        );
        assert_eq!(
            value(&template, RAG_URL_VAR).as_deref(),
            Some("https://bedrock.example.com/v1")
        );
        // Back to the Service URL: the old entry is replaced, not kept.
        gateway.spec.open_web_ui.as_mut().unwrap().gateway_url = None;
        wire(&mut template, &gateway, "img", Some(&record)).unwrap();
        assert_eq!(value(&template, URLS_VAR).as_deref(), Some(URL));
        assert_eq!(value(&template, RAG_URL_VAR).as_deref(), Some(URL));
        assert_eq!(
            open_webui_gateway_url(&BedrockGateway::new("x", Default::default())),
            "http://x-bedrock-gateway.default.svc.cluster.local/v1"
        );
        assert_eq!(
            open_webui_gateway_url(&self::gateway(WiringMode::Sidecar)),
            "http://127.0.0.1:8089/v1"
        );
    }
}
