//! The reconciler: desired objects from `resources`, applied with server-side
//! apply under one field manager; the Open WebUI workload wired through
//! `wiring`; status, events and a finalizer that undoes the wiring.

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::StreamExt;
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{ApiResource, DynamicObject, GroupVersionKind, Patch, PatchParams, PostParams};
use kube::core::PartialObjectMeta;
use kube::runtime::controller::{self, Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::{self, ObjectRef};
use kube::runtime::{Predicate, WatchStreamExt, predicates, watcher};
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::{Value, json};

use crate::cache::{Cache, Desired};
use crate::conditions::{self, Judgement};
use crate::crd::{BedrockGateway, BedrockGatewayStatus, WiringMode, WorkloadKind, WorkloadRef};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::openwebui_admin::{self, AdminApiError, OpenWebUiClient};
use crate::resources::{self, FIELD_MANAGER, GatewayNames};
use crate::wiring::{self, WIRING_ANNOTATION_PREFIX};
use crate::workload::Workload;

pub const FINALIZER: &str = "bedrock-gateway.io/cleanup";
/// Far longer than the handful of API calls of a reconcile take.
const RECONCILE_TIMEOUT: Duration = Duration::from_secs(30);
const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=bedrock-gateway-operator";
const LAST_APPLIED_ANNOTATION: &str = "kubectl.kubernetes.io/last-applied-configuration";
const SERVICE_MONITOR_CRD: &str = "servicemonitors.monitoring.coreos.com";

/// Settings of the operator process that shape what it builds.
#[derive(Debug, Clone)]
pub struct Settings {
    pub proxy_image: String,
    /// Seconds between reconciles of a healthy gateway.
    pub resync: Duration,
    /// Only this namespace is watched, when set.
    pub watch_namespace: Option<String>,
}

/// Gateways reconciled at the same time; bounds memory and the load on the
/// API server when many gateways change at once.
const RECONCILE_CONCURRENCY: u16 = 32;

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Consecutive failures per gateway, for the retry backoff.
    failures: std::sync::Mutex<std::collections::HashMap<ObjectRef<BedrockGateway>, u32>>,
    /// Calls to Open WebUI's admin API.
    pub open_webui: OpenWebUiClient,
    /// Consecutive failed registrations in Open WebUI per gateway, for their backoff.
    open_webui_failures:
        std::sync::Mutex<std::collections::HashMap<ObjectRef<BedrockGateway>, u32>>,
    /// What the watches have seen, read instead of the API server.
    pub cache: Cache,
}

impl Context {
    pub fn new(
        client: Client,
        settings: Settings,
        metrics: Metrics,
        instance: Option<String>,
    ) -> Self {
        let recorder = Recorder::new(
            client.clone(),
            Reporter {
                controller: FIELD_MANAGER.to_owned(),
                instance,
            },
        );
        Self {
            client,
            settings,
            metrics,
            recorder,
            failures: std::sync::Mutex::new(std::collections::HashMap::new()),
            open_webui: OpenWebUiClient::new(),
            open_webui_failures: std::sync::Mutex::new(std::collections::HashMap::new()),
            cache: Cache::default(),
        }
    }
}

fn apply_params() -> PatchParams {
    PatchParams::apply(FIELD_MANAGER).force()
}

async fn apply<K>(client: &Client, namespace: &str, object: &K) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    let name = object.name_any();
    match api
        .patch(&name, &apply_params(), &Patch::Apply(object))
        .await
    {
        // Another field manager's edit can leave list items this apply cannot
        // merge with: a Service port moved to another number under
        // `kubectl edit` keeps its name, which the operator's port would then
        // duplicate. The lists of the spec are replaced with the operator's
        // (a merge patch replaces lists whole), then it is applied again.
        Err(kube::Error::Api(status)) if status.code == 422 => {
            let Some(spec) = serde_json::to_value(object)?
                .get_mut("spec")
                .map(Value::take)
            else {
                return Err(kube::Error::Api(status).into());
            };
            tracing::info!(%name, reason = %status.message, "replacing the lists another field manager changed");
            let params = PatchParams {
                field_manager: Some(FIELD_MANAGER.to_owned()),
                ..PatchParams::default()
            };
            api.patch(&name, &params, &Patch::Merge(json!({ "spec": spec })))
                .await?;
            Ok(api
                .patch(&name, &apply_params(), &Patch::Apply(object))
                .await?)
        }
        result => Ok(result?),
    }
}

/// Applies an object the gateway owns, unless the watch shows it already
/// holds exactly that; answers the object as it stands.
async fn apply_owned<K>(
    ctx: &Context,
    gateway: &BedrockGateway,
    object: &K,
    store: &reflector::Store<K>,
) -> Result<K, Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + Serialize
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let owner = ObjectRef::from_obj(gateway);
    let namespace = gateway.namespace().unwrap_or_default();
    let live = store.get(&ObjectRef::new(&object.name_any()).within(&namespace));
    let desired = Desired::of(object)?;
    if ctx.cache.already_applied(&owner, &desired, live.as_deref())
        && let Some(live) = live
    {
        ctx.metrics
            .applies_skipped
            .with_label_values(&[K::kind(&()).as_ref()])
            .inc();
        return Ok(live.as_ref().clone());
    }
    let applied = apply(&ctx.client, &namespace, object).await?;
    ctx.cache.remember_applied(&owner, desired, applied.uid());
    Ok(applied)
}

async fn delete_if_present<K>(client: &Client, namespace: &str, name: &str) -> Result<(), Error>
where
    K: Resource<DynamicType = (), Scope = k8s_openapi::NamespaceResourceScope>
        + Clone
        + serde::de::DeserializeOwned
        + std::fmt::Debug,
{
    let api: Api<K> = Api::namespaced(client.clone(), namespace);
    match api.delete(name, &Default::default()).await {
        Ok(_) => Ok(()),
        Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
        Err(error) => Err(error.into()),
    }
}

/// The API key Secret as a reconcile needs it: the digest of its data, to
/// roll the proxy when it changes, and the Secret itself when the key is
/// needed (the admin API registration).
#[derive(Debug, Clone)]
struct KeySecret {
    data_digest: String,
    secret: Option<Secret>,
}

impl KeySecret {
    fn read(ctx: &Context, secret: Secret) -> Self {
        let data_digest = resources::secret_digest(&secret);
        ctx.cache.remember_secret(&secret, data_digest.clone());
        Self {
            data_digest,
            secret: Some(secret),
        }
    }
}

/// The API key Secret: the user's, or one generated exactly once. Its data
/// is read again only when the watch shows a new resourceVersion, or when
/// the key itself is needed.
async fn ensure_secret(
    ctx: &Context,
    namespace: &str,
    gateway: &BedrockGateway,
    need_key: bool,
) -> Result<Result<KeySecret, Judgement>, Error> {
    let names = GatewayNames::of(gateway);
    let key = resources::api_key_secret_key(gateway);
    let key_missing = || {
        Judgement::new(
            conditions::PROXY_AVAILABLE,
            false,
            "SecretKeyMissing",
            format!("Secret {namespace}/{} has no key '{key}'", names.secret),
        )
    };
    if !need_key && let Some(facts) = ctx.cache.secret_facts(namespace, &names.secret) {
        return Ok(if facts.keys.contains(&key) {
            Ok(KeySecret {
                data_digest: facts.data_digest,
                secret: None,
            })
        } else {
            Err(key_missing())
        });
    }
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), namespace);
    let generated = gateway.spec.api_key.secret_ref.is_none();
    let seen = ctx
        .cache
        .secrets
        .get(&ObjectRef::new(&names.secret).within(namespace))
        .is_some();
    // A generated Secret the watch has not seen is most likely not there:
    // creating it straight away saves a read, and a conflict says otherwise.
    let mut existing = if generated && !seen {
        None
    } else {
        api.get_opt(&names.secret).await?
    };
    if existing.is_none() && generated {
        // Created, never applied: a later reconcile must not replace the key.
        let secret = resources::generated_secret(gateway, &resources::new_api_key());
        match api.create(&PostParams::default(), &secret).await {
            Ok(created) => return Ok(Ok(KeySecret::read(ctx, created))),
            Err(kube::Error::Api(status)) if status.code == 409 => {
                existing = Some(api.get(&names.secret).await?);
            }
            Err(error) => return Err(error.into()),
        }
    }
    Ok(match existing {
        Some(existing)
            if existing
                .data
                .as_ref()
                .is_some_and(|data| data.contains_key(&key)) =>
        {
            Ok(KeySecret::read(ctx, existing))
        }
        Some(_) => Err(key_missing()),
        None => Err(Judgement::new(
            conditions::PROXY_AVAILABLE,
            false,
            "SecretNotFound",
            format!("Secret {namespace}/{} does not exist", names.secret),
        )),
    })
}

async fn service_monitor_crd_exists(client: &Client) -> Result<bool, Error> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    Ok(crds.get_opt(SERVICE_MONITOR_CRD).await?.is_some())
}

async fn reconcile_service_monitor(
    client: &Client,
    namespace: &str,
    gateway: &BedrockGateway,
) -> Result<Option<Judgement>, Error> {
    if !gateway.spec.metrics.service_monitor {
        return Ok(None);
    }
    if !service_monitor_crd_exists(client).await? {
        return Ok(Some(Judgement::new(
            conditions::SERVICE_MONITOR,
            false,
            "PrometheusOperatorMissing",
            format!(
                "the {SERVICE_MONITOR_CRD} CRD is not installed; install the Prometheus Operator or set metrics.serviceMonitor to false"
            ),
        )));
    }
    let resource = ApiResource::from_gvk(&GroupVersionKind::gvk(
        "monitoring.coreos.com",
        "v1",
        "ServiceMonitor",
    ));
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), namespace, &resource);
    let monitor = resources::service_monitor(gateway);
    api.patch(
        &GatewayNames::of(gateway).base,
        &apply_params(),
        &Patch::Apply(&monitor),
    )
    .await?;
    Ok(Some(Judgement::new(
        conditions::SERVICE_MONITOR,
        true,
        "Created",
        "ServiceMonitor applied",
    )))
}

/// Wires the Open WebUI workload; writes it only when something changed, so
/// a no-op reconcile never rolls Open WebUI.
async fn reconcile_wiring(
    ctx: &Context,
    namespace: &str,
    gateway: &BedrockGateway,
    reference: &WorkloadRef,
) -> Result<Judgement, Error> {
    let Some(mut workload) = Workload::get(&ctx.client, &ctx.cache, namespace, reference).await?
    else {
        return Ok(Judgement::new(
            conditions::OPEN_WEBUI_WIRED,
            false,
            "WorkloadNotFound",
            format!(
                "{} does not exist",
                Workload::describe(reference, namespace)
            ),
        ));
    };
    let original = workload.clone();
    let previous = workload.record(gateway);
    let Some(pod) = workload.pod_spec_mut() else {
        return Ok(Judgement::new(
            conditions::OPEN_WEBUI_WIRED,
            false,
            "NoPodTemplate",
            "the workload has no pod template",
        ));
    };
    let record = match wiring::wire(pod, gateway, &ctx.settings.proxy_image, previous.as_ref()) {
        Ok(record) => record,
        Err(error) => {
            return Ok(Judgement::new(
                conditions::OPEN_WEBUI_WIRED,
                false,
                "CannotWire",
                error.to_string(),
            ));
        }
    };
    workload.set_record(gateway, Some(&record))?;
    if workload != original {
        workload.replace(&ctx.client, namespace).await?;
        publish(
            ctx,
            gateway,
            EventType::Normal,
            "Wired",
            format!(
                "added {} to {}",
                record.url,
                Workload::describe(reference, namespace)
            ),
        )
        .await;
    }
    let how = match record.mode {
        WiringMode::Env => "OPENAI_API_BASE_URLS/OPENAI_API_KEYS",
        WiringMode::Sidecar => "a sidecar proxy and OPENAI_API_BASE_URLS/OPENAI_API_KEYS",
    };
    Ok(Judgement::new(
        conditions::OPEN_WEBUI_WIRED,
        true,
        "EnvWired",
        format!(
            "{} reaches the gateway at {} through {how} (read by Open WebUI at its first start; see the README for existing installs)",
            Workload::describe(reference, namespace),
            record.url
        ),
    ))
}

/// The `OpenWebUIWired` judgement: the environment wiring (with
/// `workloadRef`) and the registration through the admin API (with
/// `adminApi`); the second is what takes effect on a running Open WebUI, so
/// its failure is reported first. Also says whether the registration failed,
/// for its retry backoff.
async fn reconcile_open_webui(
    ctx: &Context,
    namespace: &str,
    gateway: &BedrockGateway,
    secret: Option<&Secret>,
) -> Result<(Judgement, bool), Error> {
    let Some(open_web_ui) = &gateway.spec.open_web_ui else {
        return Ok((
            Judgement::new(
                conditions::OPEN_WEBUI_WIRED,
                true,
                "NotRequested",
                "no openWebUI is set",
            ),
            false,
        ));
    };
    let env = match &open_web_ui.workload_ref {
        Some(reference) => Some(reconcile_wiring(ctx, namespace, gateway, reference).await?),
        None => None,
    };
    let admin = reconcile_admin_api(ctx, namespace, gateway, secret).await?;
    let key = ObjectRef::from_obj(gateway);
    let admin_failed = admin.as_ref().is_some_and(|judgement| !judgement.ok);
    if let Ok(mut failures) = ctx.open_webui_failures.lock() {
        if admin_failed {
            let count = failures.entry(key).or_insert(0);
            *count = count.saturating_add(1);
        } else {
            failures.remove(&key);
        }
    }
    let judgement = match (env, admin) {
        (Some(env), Some(admin)) if admin.ok && env.ok => Judgement {
            message: format!("{}; for fresh installs: {}", admin.message, env.message),
            ..admin
        },
        (Some(env), Some(admin)) => {
            if admin.ok {
                env
            } else {
                admin
            }
        }
        (Some(only), None) | (None, Some(only)) => only,
        (None, None) => Judgement::new(
            conditions::OPEN_WEBUI_WIRED,
            true,
            "NotRequested",
            "neither openWebUI.workloadRef nor openWebUI.adminApi is set",
        ),
    };
    Ok((judgement, admin_failed))
}

/// Registers the gateway through Open WebUI's admin API, when asked to.
/// Failures are judgements, with an event when the reason changes.
async fn reconcile_admin_api(
    ctx: &Context,
    namespace: &str,
    gateway: &BedrockGateway,
    secret: Option<&Secret>,
) -> Result<Option<Judgement>, Error> {
    let Some(target) = openwebui_admin::target(&ctx.client, &ctx.cache, namespace, gateway).await?
    else {
        return Ok(None);
    };
    let registration = match (
        target,
        secret.and_then(|secret| openwebui_admin::gateway_key(secret, gateway)),
    ) {
        (Err(failure), _) => openwebui_admin::Registration {
            judgement: failure,
            notes: Vec::new(),
        },
        (Ok(_), None) => openwebui_admin::Registration {
            judgement: Judgement::new(
                conditions::OPEN_WEBUI_WIRED,
                false,
                "WaitingForApiKey",
                "the gateway's API key is not available yet (see ProxyAvailable)",
            ),
            notes: Vec::new(),
        },
        (Ok(target), Some(key)) => {
            openwebui_admin::register(&ctx.open_webui, &target, gateway, &key).await
        }
    };
    for note in &registration.notes {
        let type_ = if note.warning {
            EventType::Warning
        } else {
            EventType::Normal
        };
        publish(ctx, gateway, type_, note.reason, note.message.clone()).await;
    }
    let judgement = registration.judgement;
    let previous_reason = gateway.status.as_ref().and_then(|status| {
        status
            .conditions
            .iter()
            .find(|condition| condition.type_ == conditions::OPEN_WEBUI_WIRED)
            .map(|condition| condition.reason.clone())
    });
    if !judgement.ok && previous_reason.as_deref() != Some(judgement.reason.as_str()) {
        tracing::warn!(gateway = %gateway.name_any(), reason = %judgement.reason, message = %judgement.message, "Open WebUI registration failed");
        publish(
            ctx,
            gateway,
            EventType::Warning,
            &judgement.reason,
            judgement.message.clone(),
        )
        .await;
    }
    Ok(Some(judgement))
}

/// How long deletion waits for Open WebUI to take the gateway out before it
/// gives up and lets the gateway go, leaving the connection behind.
const UNREGISTER_PATIENCE: Duration = Duration::from_secs(600);

/// Takes the gateway's connection out of Open WebUI through the admin API.
/// An unreachable or failing Open WebUI is retried (the error) for a while;
/// a missing admin key or Open WebUI URL, a refused key, or a failure past
/// that while lets the deletion go on with a warning event.
async fn unregister_from_open_webui(
    ctx: &Context,
    namespace: &str,
    gateway: &BedrockGateway,
) -> Result<(), Error> {
    let Some(target) = openwebui_admin::target(&ctx.client, &ctx.cache, namespace, gateway).await?
    else {
        return Ok(());
    };
    let target = match target {
        Ok(target) => target,
        Err(failure) => {
            publish(
                ctx,
                gateway,
                EventType::Warning,
                "UnregisterSkipped",
                format!("the connection stays in Open WebUI: {}", failure.message),
            )
            .await;
            return Ok(());
        }
    };
    match openwebui_admin::unregister(&ctx.open_webui, &target, gateway).await {
        Ok(removed) => {
            if !removed.is_empty() {
                publish(
                    ctx,
                    gateway,
                    EventType::Normal,
                    "Unregistered",
                    format!(
                        "removed {} from Open WebUI at {}",
                        removed.join(" and "),
                        target.base_url
                    ),
                )
                .await;
            }
            Ok(())
        }
        Err(error) => {
            let deleting_for = gateway
                .metadata
                .deletion_timestamp
                .as_ref()
                .map(|since| k8s_openapi::jiff::Timestamp::now().duration_since(since.0))
                .and_then(|elapsed| Duration::try_from(elapsed).ok())
                .unwrap_or_default();
            // Refusals and answers not understood do not pass by themselves;
            // an unreachable or failing Open WebUI (a restart) may.
            let passing = matches!(
                error,
                AdminApiError::Unreachable { .. }
                    | AdminApiError::Timeout { .. }
                    | AdminApiError::Status { .. }
            );
            if passing && deleting_for < UNREGISTER_PATIENCE {
                publish(
                    ctx,
                    gateway,
                    EventType::Warning,
                    error.reason(),
                    format!("taking the gateway out of Open WebUI failed, retrying: {error}"),
                )
                .await;
                return Err(error.into());
            }
            publish(
                ctx,
                gateway,
                EventType::Warning,
                "UnregisterAbandoned",
                format!(
                    "gave up taking the gateway out of Open WebUI; remove its connection in Admin Panel > Settings > Connections: {error}"
                ),
            )
            .await;
            Ok(())
        }
    }
}

/// The delay before retrying a failed registration in Open WebUI after
/// `failures` consecutive failures: 5 s doubling to 5 min.
pub fn open_webui_backoff(failures: u32) -> Duration {
    Duration::from_secs(5u64 << failures.saturating_sub(1).min(6)).min(Duration::from_secs(300))
}

async fn publish(
    ctx: &Context,
    gateway: &BedrockGateway,
    type_: EventType,
    reason: &str,
    note: String,
) {
    let event = KubeEvent {
        type_,
        reason: reason.to_owned(),
        note: Some(note),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    if let Err(error) = ctx.recorder.publish(&event, &gateway.object_ref(&())).await {
        tracing::warn!(%error, "could not publish an event");
    }
}

async fn apply_gateway(gateway: Arc<BedrockGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let client = &ctx.client;
    let namespace = gateway
        .namespace()
        .ok_or_else(|| Error::Invalid("BedrockGateway without a namespace".into()))?;
    let names = GatewayNames::of(&gateway);
    let mut judgements = Vec::new();

    if let Some(account) = resources::service_account(&gateway) {
        apply_owned(&ctx, &gateway, &account, &ctx.cache.service_accounts).await?;
    }
    let needs_key = gateway
        .spec
        .open_web_ui
        .as_ref()
        .is_some_and(|spec| spec.admin_api.is_some());
    let secret = ensure_secret(&ctx, &namespace, &gateway, needs_key).await?;
    let proxy = match &secret {
        Ok(secret) => {
            let desired =
                resources::deployment(&gateway, &ctx.settings.proxy_image, &secret.data_digest);
            let applied = apply_owned(&ctx, &gateway, &desired, &ctx.cache.deployments).await?;
            let service = resources::service(&gateway);
            apply_owned(&ctx, &gateway, &service, &ctx.cache.services).await?;
            match resources::pod_disruption_budget(&gateway) {
                Some(budget) => {
                    apply_owned(&ctx, &gateway, &budget, &ctx.cache.budgets).await?;
                }
                // Only a budget the watch has seen is deleted; one it has not
                // seen yet triggers a reconcile once it does.
                None => {
                    let budget = ObjectRef::new(&names.base).within(&namespace);
                    if ctx.cache.budgets.get(&budget).is_some() {
                        delete_if_present::<PodDisruptionBudget>(client, &namespace, &names.base)
                            .await?;
                    }
                }
            }
            Some(applied)
        }
        Err(judgement) => {
            judgements.push(judgement.clone());
            None
        }
    };
    let ready_replicas = proxy
        .as_ref()
        .and_then(|deployment| deployment.status.as_ref())
        .and_then(|status| status.ready_replicas)
        .unwrap_or(0);
    if proxy.is_some() {
        let wanted = gateway.spec.replicas.unwrap_or(1);
        let available = proxy
            .as_ref()
            .and_then(|deployment| deployment.status.as_ref())
            .and_then(|status| status.available_replicas)
            .unwrap_or(0);
        judgements.push(if available > 0 || wanted == 0 {
            Judgement::new(
                conditions::PROXY_AVAILABLE,
                true,
                "Available",
                format!("{ready_replicas}/{wanted} proxy replicas ready"),
            )
        } else {
            Judgement::new(
                conditions::PROXY_AVAILABLE,
                false,
                "Progressing",
                format!("{ready_replicas}/{wanted} proxy replicas ready"),
            )
        });
    }
    let (wired, open_webui_failed) = reconcile_open_webui(
        &ctx,
        &namespace,
        &gateway,
        secret
            .as_ref()
            .ok()
            .and_then(|secret| secret.secret.as_ref()),
    )
    .await?;
    judgements.push(wired);
    if let Some(judgement) = reconcile_service_monitor(client, &namespace, &gateway).await? {
        judgements.push(judgement);
    }

    let judgements = conditions::with_ready(judgements);
    let ready = judgements[0].ok;
    let previous = gateway.status.clone().unwrap_or_default();
    let was_ready = previous
        .conditions
        .iter()
        .any(|condition| condition.type_ == conditions::READY && condition.status == "True");
    let url = wiring::open_webui_gateway_url(&gateway);
    let status = BedrockGatewayStatus {
        conditions: conditions::to_conditions(
            &judgements,
            &previous.conditions,
            gateway.metadata.generation,
            k8s_openapi::jiff::Timestamp::now(),
        ),
        url: Some(url),
        secret_name: Some(names.secret.clone()),
        ready_replicas,
        observed_generation: gateway.metadata.generation,
    };
    if status != previous {
        let api: Api<BedrockGateway> = Api::namespaced(client.clone(), &namespace);
        api.patch_status(
            &gateway.name_any(),
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "bedrock-gateway.io/v1alpha1",
                "kind": "BedrockGateway",
                "status": status,
            })),
        )
        .await?;
    }
    if ready != was_ready {
        let (type_, reason) = if ready {
            (EventType::Normal, "Ready")
        } else {
            (EventType::Warning, "NotReady")
        };
        publish(&ctx, &gateway, type_, reason, judgements[0].message.clone()).await;
    }
    Ok(if ready {
        Action::requeue(ctx.settings.resync)
    } else if open_webui_failed {
        let failures = ctx
            .open_webui_failures
            .lock()
            .ok()
            .and_then(|failures| {
                failures
                    .get(&ObjectRef::from_obj(gateway.as_ref()))
                    .copied()
            })
            .unwrap_or(1);
        Action::requeue(open_webui_backoff(failures))
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

/// Removes exactly what this gateway added to the Open WebUI workload; the
/// owned objects go with the gateway through their owner references.
async fn cleanup(gateway: Arc<BedrockGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = gateway.namespace().unwrap_or_default();
    unregister_from_open_webui(&ctx, &namespace, &gateway).await?;
    if let Ok(mut failures) = ctx.open_webui_failures.lock() {
        failures.remove(&ObjectRef::from_obj(gateway.as_ref()));
    }
    ctx.cache.forget(
        &ObjectRef::from_obj(gateway.as_ref()),
        &GatewayNames::of(&gateway).secret,
    );
    if let Some(reference) = gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.workload_ref.as_ref())
        && let Some(mut workload) =
            Workload::get(&ctx.client, &ctx.cache, &namespace, reference).await?
        && let Some(record) = workload.record(&gateway)
    {
        if let Some(pod) = workload.pod_spec_mut() {
            wiring::unwire(pod, &gateway, &record)?;
        }
        workload.set_record(&gateway, None)?;
        workload.replace(&ctx.client, &namespace).await?;
        publish(
            &ctx,
            &gateway,
            EventType::Normal,
            "Unwired",
            format!("removed {} from Open WebUI", record.url),
        )
        .await;
    }
    Ok(Action::await_change())
}

pub async fn reconcile(gateway: Arc<BedrockGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let started = Instant::now();
    ctx.metrics
        .reconciliations
        .with_label_values(&["BedrockGateway"])
        .inc();
    let namespace = gateway
        .namespace()
        .ok_or_else(|| Error::Invalid("BedrockGateway without a namespace".into()))?;
    let name = gateway.name_any();
    let api: Api<BedrockGateway> = Api::namespaced(ctx.client.clone(), &namespace);
    let work = finalizer(&api, FINALIZER, gateway, |event| async {
        match event {
            Finalizer::Apply(gateway) => apply_gateway(gateway, ctx.clone()).await,
            Finalizer::Cleanup(gateway) => cleanup(gateway, ctx.clone()).await,
        }
    });
    // The client has no response timeout (watches stay open for minutes): a
    // request to an API server that vanished without closing the connection
    // would hold this gateway's reconcile until TCP gives up, as the
    // controller runs one reconcile per object at a time.
    let result = match tokio::time::timeout(RECONCILE_TIMEOUT, work).await {
        Ok(outcome) => outcome.map_err(|error| Error::Finalizer(Box::new(error))),
        Err(_) => Err(Error::Timeout(RECONCILE_TIMEOUT)),
    };
    if result.is_ok()
        && let Ok(mut failures) = ctx.failures.lock()
    {
        failures.remove(&ObjectRef::new(&name).within(&namespace));
    }
    ctx.metrics
        .reconcile_duration
        .with_label_values(&["BedrockGateway"])
        .observe(started.elapsed().as_secs_f64());
    result
}

/// The retry delay after `failures` consecutive failures: 1 s doubling to 5 min.
pub fn backoff(failures: u32) -> Duration {
    Duration::from_secs(1u64 << failures.saturating_sub(1).min(8)).min(Duration::from_secs(300))
}

/// Retries with a delay that grows with the consecutive failures of the
/// object; a write conflict (someone else changed it) is retried at once.
pub fn error_policy(gateway: Arc<BedrockGateway>, error: &Error, ctx: Arc<Context>) -> Action {
    ctx.metrics
        .failures
        .with_label_values(&["BedrockGateway", error.metric_label()])
        .inc();
    let failures = ctx.failures.lock().map_or(1, |mut failures| {
        let count = failures
            .entry(ObjectRef::from_obj(gateway.as_ref()))
            .or_insert(0);
        *count = count.saturating_add(1);
        *count
    });
    if error.is_conflict() {
        // Expected now and then: reads come from the watch's copy, which a
        // write can race ahead of.
        tracing::debug!(gateway = %gateway.name_any(), %error, "write conflict; retrying");
        return Action::requeue(Duration::from_millis(200));
    }
    tracing::warn!(gateway = %gateway.name_any(), %error, failures, "reconcile failed");
    Action::requeue(backoff(failures))
}

/// Gateways a Deployment, StatefulSet or Secret matters to, judged from the
/// object itself: the gateway owning it (a proxy Deployment, a generated key
/// Secret) and those whose wiring annotation sits on it (an Open WebUI
/// workload). One watch per kind serves all of them, so each object is seen once.
fn gateways_concerned_with<K: Resource>(object: &K) -> Vec<ObjectRef<BedrockGateway>> {
    let namespace = object.meta().namespace.clone().unwrap_or_default();
    let owners = object
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| {
            owner.kind == "BedrockGateway" && owner.api_version.starts_with(crate::crd::GROUP)
        })
        .map(|owner| owner.name.as_str());
    let wired = object
        .meta()
        .annotations
        .iter()
        .flatten()
        .filter_map(|(key, _)| key.strip_prefix(WIRING_ANNOTATION_PREFIX));
    owners
        .chain(wired)
        .map(|name| ObjectRef::new(name).within(&namespace))
        .collect()
}

/// Gateways in the object's namespace whose spec names the object: an Open
/// WebUI workload not wired yet (or recreated without its wiring), a key
/// Secret of the user's that appears, changes or goes away.
fn gateways_naming<K: Resource>(
    object: &K,
    gateways: &[Arc<BedrockGateway>],
    names: impl Fn(&BedrockGateway, &str) -> bool,
) -> Vec<ObjectRef<BedrockGateway>> {
    let namespace = object.meta().namespace.as_deref().unwrap_or_default();
    let name = object.meta().name.as_deref().unwrap_or_default();
    gateways
        .iter()
        .filter(|gateway| gateway.namespace().as_deref() == Some(namespace))
        .filter(|gateway| names(gateway, name))
        .map(|gateway| ObjectRef::from_obj(gateway.as_ref()))
        .collect()
}

/// Every gateway an object matters to: by owner or wiring annotation, or by
/// being named in a gateway's spec.
fn gateways_affected_by<K: Resource>(
    object: &K,
    gateways: &reflector::Store<BedrockGateway>,
    names: impl Fn(&BedrockGateway, &str) -> bool,
) -> Vec<ObjectRef<BedrockGateway>> {
    let mut concerned = gateways_concerned_with(object);
    concerned.extend(gateways_naming(object, &gateways.state(), names));
    concerned
}

fn names_workload(gateway: &BedrockGateway, kind: WorkloadKind, name: &str) -> bool {
    gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.workload_ref.as_ref())
        .is_some_and(|reference| reference.kind == kind && reference.name == name)
}

/// The gateway owning a Service this operator made; for any other Service,
/// the gateways of its namespace that look for Open WebUI's Service, which
/// it may be (new, changed or gone).
fn gateways_a_service_affects(
    service: &Service,
    gateways: &[Arc<BedrockGateway>],
) -> Vec<ObjectRef<BedrockGateway>> {
    let ours = service.labels().get(MANAGED_BY_LABEL).map(String::as_str) == Some(FIELD_MANAGER);
    if ours {
        return gateways_concerned_with(service);
    }
    gateways_naming(service, gateways, |gateway, _| {
        finds_open_webui_by_its_service(gateway)
    })
}

/// A gateway registered through the admin API at the URL of the Service in
/// front of its Open WebUI workload, which any Service of the namespace
/// might turn out to be.
fn finds_open_webui_by_its_service(gateway: &BedrockGateway) -> bool {
    gateway
        .spec
        .open_web_ui
        .as_ref()
        .and_then(|spec| spec.admin_api.as_ref())
        .is_some_and(|admin| admin.url.is_none())
}

fn names_secret(gateway: &BedrockGateway, name: &str) -> bool {
    GatewayNames::of(gateway).secret == name || openwebui_admin::names_admin_secret(gateway, name)
}

/// The pause of one watch after it fails: 250 ms, doubling up to 2 s, back
/// to 250 ms once it delivers again.
///
/// Each watch has its own (the controller's shared one is `NoPause`): with
/// one backoff for all watches together, as kube-runtime has by default,
/// every error of any watch paused them all. After an API server restart
/// each watch fails on its own (connection refused, then `410 Expired` for
/// its old resourceVersion), one after another, and the pauses added up:
/// with kube-runtime's default (up to 30 s, kept for 2 min) the operator
/// stayed deaf to every change for minutes. Short pauses per watch keep that
/// to seconds, and a few requests a second to an API server that is down
/// cost nothing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WatchBackoff {
    next: Duration,
}

impl WatchBackoff {
    const FIRST: Duration = Duration::from_millis(250);
    const LONGEST: Duration = Duration::from_secs(2);
}

impl Default for WatchBackoff {
    fn default() -> Self {
        Self { next: Self::FIRST }
    }
}

impl Iterator for WatchBackoff {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        let pause = self.next;
        self.next = (pause * 2).min(Self::LONGEST);
        Some(pause)
    }
}

impl kube::runtime::utils::Backoff for WatchBackoff {
    fn reset(&mut self) {
        self.next = Self::FIRST;
    }
}

/// The controller's backoff over all its watches together: none, as each
/// watch backs off by itself (`WatchBackoff`).
#[derive(Debug, Clone, Copy, Default)]
struct NoPause;

impl Iterator for NoPause {
    type Item = Duration;

    fn next(&mut self) -> Option<Duration> {
        Some(Duration::ZERO)
    }
}

impl kube::runtime::utils::Backoff for NoPause {
    fn reset(&mut self) {}
}

/// Runs the controller until the shutdown signal resolves.
pub async fn run(
    ctx: Arc<Context>,
    shutdown: impl std::future::Future<Output = ()> + Send + Sync + 'static,
) {
    fn scoped<K>(client: &Client, namespace: Option<&str>) -> Api<K>
    where
        K: Resource<Scope = k8s_openapi::NamespaceResourceScope>,
        K::DynamicType: Default,
    {
        match namespace {
            Some(namespace) => Api::namespaced(client.clone(), namespace),
            None => Api::all(client.clone()),
        }
    }
    let client = ctx.client.clone();
    let metrics = ctx.metrics.clone();
    let namespace = ctx.settings.watch_namespace.clone();
    let namespace = namespace.as_deref();
    let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
    let (gateways, writer) = reflector::store();
    // A gateway is reconciled when its spec changes (generation, which its
    // deletion bumps too) or its finalizers do, never for the status the
    // reconcile itself just wrote: that would double every reconcile. The
    // stored copies drop their managed fields, which nothing here reads.
    let gateway_changes = watcher(
        scoped::<BedrockGateway>(&client, namespace),
        watcher::Config::default(),
    )
    .backoff(WatchBackoff::default())
    .modify(|gateway| gateway.managed_fields_mut().clear())
    .reflect(writer)
    .applied_objects()
    .predicate_filter(
        predicates::generation.combine(predicates::finalizers),
        Default::default(),
    );
    let Some(writers) = ctx.cache.take_writers() else {
        tracing::error!("the controller is already running with this context");
        return;
    };
    // Each watch fills a store of the cache before its event reaches the
    // controller, so a reconcile it triggers reads what triggered it.
    // Deletions trigger too (touched objects): a deleted Service is made again.
    fn cached<K>(
        api: Api<K>,
        config: watcher::Config,
        writer: reflector::store::Writer<K>,
    ) -> impl futures_util::Stream<Item = Result<K, watcher::Error>> + Send + 'static
    where
        K: Resource<DynamicType = ()>
            + Clone
            + serde::de::DeserializeOwned
            + std::fmt::Debug
            + Send
            + Sync
            + 'static,
    {
        watcher(api, config)
            .backoff(WatchBackoff::default())
            .modify(|object| object.managed_fields_mut().clear())
            .reflect(writer)
            .touched_objects()
    }
    let for_deployments = gateways.clone();
    let for_stateful_sets = gateways.clone();
    let for_secrets = gateways.clone();
    let for_services = gateways.clone();
    Controller::for_stream(gateway_changes, gateways)
        // Every Service in scope: the proxy's (owned) and the one in front
        // of Open WebUI, which `adminApi` without a `url` is reached through.
        .watches_stream(
            cached(
                scoped::<Service>(&client, namespace),
                watcher::Config::default(),
                writers.services,
            ),
            move |service| gateways_a_service_affects(&service, &for_services.state()),
        )
        .owns_stream(cached(
            scoped::<ServiceAccount>(&client, namespace),
            managed.clone(),
            writers.service_accounts,
        ))
        .owns_stream(cached(
            scoped::<PodDisruptionBudget>(&client, namespace),
            managed.clone(),
            writers.budgets,
        ))
        .watches_stream(
            cached(
                scoped::<Deployment>(&client, namespace),
                watcher::Config::default(),
                writers.deployments,
            ),
            move |deployment| {
                gateways_affected_by(&deployment, &for_deployments, |gateway, name| {
                    names_workload(gateway, WorkloadKind::Deployment, name)
                })
            },
        )
        .watches_stream(
            cached(
                scoped::<StatefulSet>(&client, namespace),
                watcher::Config::default(),
                writers.stateful_sets,
            ),
            move |set| {
                gateways_affected_by(&set, &for_stateful_sets, |gateway, name| {
                    names_workload(gateway, WorkloadKind::StatefulSet, name)
                })
            },
        )
        // Every Secret in scope, metadata only (never the key material): the
        // generated key Secrets (owned) and the users' own `apiKey.secretRef`
        // Secrets, which carry no label or owner to select them by.
        .watches_stream(
            // `kubectl apply` leaves a Secret's data in an annotation.
            watcher(
                scoped::<PartialObjectMeta<Secret>>(&client, namespace),
                watcher::Config::default(),
            )
            .backoff(WatchBackoff::default())
            .modify(|secret| {
                secret.managed_fields_mut().clear();
                secret.annotations_mut().remove(LAST_APPLIED_ANNOTATION);
            })
            .reflect(writers.secrets)
            .touched_objects(),
            move |secret| gateways_affected_by(&secret, &for_secrets, names_secret),
        )
        .trigger_backoff(NoPause)
        .with_config(controller::Config::default().concurrency(RECONCILE_CONCURRENCY))
        .graceful_shutdown_on(shutdown)
        .run(reconcile, error_policy, ctx)
        .for_each(|result| {
            // A failing watch means changes go unnoticed until it is back:
            // worth a warning (the backoff keeps these rare), unlike failed
            // reconciles, which `error_policy` reports.
            match result {
                Err(controller::Error::QueueError(error)) => {
                    metrics.watch_errors.inc();
                    tracing::warn!(%error, "watching the API server failed; retrying");
                }
                Err(error) => tracing::debug!(%error, "reconcile loop"),
                Ok(_) => {}
            }
            std::future::ready(())
        })
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_lead_to_their_owner_or_the_gateways_looking_for_open_webui() {
        let gateway = |name: &str, namespace: &str, open_web_ui: serde_json::Value| {
            let mut gateway: BedrockGateway = serde_json::from_value(json!({
                "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
                "metadata": {"name": name, "namespace": namespace, "uid": format!("uid-{name}")},
                "spec": {"region": "us-east-1", "openWebUI": open_web_ui}
            }))
            .unwrap();
            gateway.metadata.namespace = Some(namespace.into());
            Arc::new(gateway)
        };
        let admin_key = json!({"name": "open-webui-admin", "key": "api-key"});
        let gateways = vec![
            gateway(
                "looking",
                "ai",
                json!({"workloadRef": {"name": "open-webui"},
                "adminApi": {"apiKeySecretRef": admin_key}}),
            ),
            gateway(
                "told",
                "ai",
                json!({"adminApi": {"url": "http://open-webui:8080",
                "apiKeySecretRef": admin_key}}),
            ),
            gateway(
                "env-only",
                "ai",
                json!({"workloadRef": {"name": "open-webui"}}),
            ),
            gateway(
                "elsewhere",
                "other",
                json!({"workloadRef": {"name": "open-webui"},
                "adminApi": {"apiKeySecretRef": admin_key}}),
            ),
        ];
        let names = |found: Vec<ObjectRef<BedrockGateway>>| -> Vec<String> {
            found.into_iter().map(|reference| reference.name).collect()
        };
        let helm_made: Service = serde_json::from_value(json!({
            "metadata": {"name": "open-webui", "namespace": "ai",
                "labels": {"app.kubernetes.io/managed-by": "Helm"}}
        }))
        .unwrap();
        assert_eq!(
            names(gateways_a_service_affects(&helm_made, &gateways)),
            ["looking"]
        );
        let proxy = resources::service(&gateways[2]);
        assert_eq!(
            names(gateways_a_service_affects(&proxy, &gateways)),
            ["env-only"],
            "a proxy Service concerns its own gateway only"
        );
    }

    #[test]
    fn workloads_and_secrets_lead_to_the_gateways_naming_them() {
        let gateway = |name: &str, namespace: &str, spec: serde_json::Value| {
            let mut gateway: BedrockGateway = serde_json::from_value(json!({
                "apiVersion": "bedrock-gateway.io/v1alpha1", "kind": "BedrockGateway",
                "metadata": {"name": name, "namespace": namespace}, "spec": spec
            }))
            .unwrap();
            gateway.metadata.namespace = Some(namespace.into());
            Arc::new(gateway)
        };
        let gateways = vec![
            gateway(
                "wired",
                "ai",
                json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "open-webui"}},
                       "apiKey": {"secretRef": {"name": "shared-key", "key": "token"}}}),
            ),
            gateway(
                "stateful",
                "ai",
                json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "open-webui", "kind": "StatefulSet"}}}),
            ),
            gateway(
                "elsewhere",
                "other",
                json!({"region": "us-east-1", "openWebUI": {"workloadRef": {"name": "open-webui"}},
                       "apiKey": {"secretRef": {"name": "shared-key", "key": "token"}}}),
            ),
            gateway("plain", "ai", json!({"region": "us-east-1"})),
        ];
        let object = |name: &str| {
            let mut secret = Secret::default();
            secret.metadata.name = Some(name.into());
            secret.metadata.namespace = Some("ai".into());
            secret
        };
        let names = |found: Vec<ObjectRef<BedrockGateway>>| -> Vec<String> {
            found.into_iter().map(|reference| reference.name).collect()
        };
        let deployment_of = |gateway: &BedrockGateway, name: &str| {
            names_workload(gateway, WorkloadKind::Deployment, name)
        };
        let stateful_set_of = |gateway: &BedrockGateway, name: &str| {
            names_workload(gateway, WorkloadKind::StatefulSet, name)
        };
        assert_eq!(
            names(gateways_naming(
                &object("open-webui"),
                &gateways,
                deployment_of
            )),
            ["wired"]
        );
        assert_eq!(
            names(gateways_naming(
                &object("open-webui"),
                &gateways,
                stateful_set_of
            )),
            ["stateful"]
        );
        assert_eq!(
            names(gateways_naming(
                &object("shared-key"),
                &gateways,
                names_secret
            )),
            ["wired"]
        );
        assert_eq!(
            names(gateways_naming(
                &object("plain-bedrock-gateway-api-key"),
                &gateways,
                names_secret
            )),
            ["plain"],
            "a generated key Secret recreated without its owner still counts"
        );
        assert!(gateways_naming(&object("unrelated"), &gateways, names_secret).is_empty());
    }

    #[test]
    fn watch_pauses_stay_short_and_start_over_after_a_reset() {
        use kube::runtime::utils::Backoff;
        let mut backoff = WatchBackoff::default();
        let pauses: Vec<u128> = backoff.by_ref().take(6).map(|d| d.as_millis()).collect();
        assert_eq!(pauses, [250, 500, 1000, 2000, 2000, 2000]);
        backoff.reset();
        assert_eq!(backoff.next(), Some(Duration::from_millis(250)));
    }

    #[test]
    fn backoff_doubles_up_to_five_minutes() {
        let delays: Vec<u64> = [1, 2, 3, 4, 9, 10, 50]
            .iter()
            .map(|n| backoff(*n).as_secs())
            .collect();
        assert_eq!(delays, [1, 2, 4, 8, 256, 256, 256]);
        assert_eq!(backoff(0).as_secs(), 1);
    }

    #[test]
    fn open_webui_retries_start_at_five_seconds_and_stop_growing_at_five_minutes() {
        let delays: Vec<u64> = [0, 1, 2, 3, 6, 7, 8, 100]
            .iter()
            .map(|n| open_webui_backoff(*n).as_secs())
            .collect();
        assert_eq!(delays, [5, 5, 10, 20, 160, 300, 300, 300]);
    }

    #[test]
    fn workloads_point_back_to_their_owner_and_the_gateways_wired_into_them() {
        let mut deployment = Deployment::default();
        deployment.metadata.namespace = Some("ai".into());
        deployment.metadata.annotations = Some(
            [
                (
                    "bedrock-gateway.io/wiring.team-a".to_owned(),
                    "{}".to_owned(),
                ),
                ("unrelated".to_owned(), "x".to_owned()),
            ]
            .into(),
        );
        assert_eq!(
            gateways_concerned_with(&deployment),
            vec![ObjectRef::new("team-a").within("ai")]
        );
        let owner = |api_version: &str, kind: &str, name: &str| {
            k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference {
                api_version: api_version.into(),
                kind: kind.into(),
                name: name.into(),
                uid: "u".into(),
                ..Default::default()
            }
        };
        deployment.metadata.owner_references = Some(vec![
            owner("bedrock-gateway.io/v1alpha1", "BedrockGateway", "owner"),
            owner("apps/v1", "ReplicaSet", "other"),
        ]);
        assert_eq!(
            gateways_concerned_with(&deployment),
            vec![
                ObjectRef::new("owner").within("ai"),
                ObjectRef::new("team-a").within("ai")
            ]
        );
    }
}
