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
use kube::runtime::controller::{Action, Controller};
use kube::runtime::events::{Event as KubeEvent, EventType, Recorder, Reporter};
use kube::runtime::finalizer::{Event as Finalizer, finalizer};
use kube::runtime::reflector::ObjectRef;
use kube::runtime::watcher;
use kube::{Api, Client, Resource, ResourceExt};
use serde::Serialize;
use serde_json::json;

use crate::conditions::{self, Judgement};
use crate::crd::{BedrockGateway, BedrockGatewayStatus, WiringMode};
use crate::error::Error;
use crate::metrics::Metrics;
use crate::resources::{self, FIELD_MANAGER, GatewayNames};
use crate::wiring::{self, WIRING_ANNOTATION_PREFIX};
use crate::workload::Workload;

pub const FINALIZER: &str = "bedrock-gateway.io/cleanup";
const MANAGED_SELECTOR: &str = "app.kubernetes.io/managed-by=bedrock-gateway-operator";
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

pub struct Context {
    pub client: Client,
    pub settings: Settings,
    pub metrics: Metrics,
    pub recorder: Recorder,
    /// Consecutive failures per gateway, for the retry backoff.
    failures: std::sync::Mutex<std::collections::HashMap<ObjectRef<BedrockGateway>, u32>>,
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
    Ok(api
        .patch(&object.name_any(), &apply_params(), &Patch::Apply(object))
        .await?)
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

/// The API key Secret: the user's, or one generated exactly once.
async fn ensure_secret(
    client: &Client,
    namespace: &str,
    gateway: &BedrockGateway,
) -> Result<Result<Secret, Judgement>, Error> {
    let names = GatewayNames::of(gateway);
    let api: Api<Secret> = Api::namespaced(client.clone(), namespace);
    if let Some(existing) = api.get_opt(&names.secret).await? {
        let key = resources::api_key_secret_key(gateway);
        if existing
            .data
            .as_ref()
            .is_some_and(|data| data.contains_key(&key))
        {
            return Ok(Ok(existing));
        }
        return Ok(Err(Judgement::new(
            conditions::PROXY_AVAILABLE,
            false,
            "SecretKeyMissing",
            format!("Secret {namespace}/{} has no key '{key}'", names.secret),
        )));
    }
    if gateway.spec.api_key.secret_ref.is_some() {
        return Ok(Err(Judgement::new(
            conditions::PROXY_AVAILABLE,
            false,
            "SecretNotFound",
            format!("Secret {namespace}/{} does not exist", names.secret),
        )));
    }
    // Created, never applied: a later reconcile must not replace the key.
    let secret = resources::generated_secret(gateway, &resources::new_api_key());
    match api.create(&PostParams::default(), &secret).await {
        Ok(created) => Ok(Ok(created)),
        Err(kube::Error::Api(status)) if status.code == 409 => {
            Ok(Ok(api.get(&names.secret).await?))
        }
        Err(error) => Err(error.into()),
    }
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
) -> Result<Judgement, Error> {
    let Some(open_web_ui) = &gateway.spec.open_web_ui else {
        return Ok(Judgement::new(
            conditions::OPEN_WEBUI_WIRED,
            true,
            "NotRequested",
            "no openWebUI.workloadRef is set",
        ));
    };
    let reference = &open_web_ui.workload_ref;
    let Some(mut workload) = Workload::get(&ctx.client, namespace, reference).await? else {
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
        apply(client, &namespace, &account).await?;
    }
    let secret = ensure_secret(client, &namespace, &gateway).await?;
    let proxy = match &secret {
        Ok(secret) => {
            let desired = resources::deployment(
                &gateway,
                &ctx.settings.proxy_image,
                &resources::secret_digest(secret),
            );
            let applied = apply(client, &namespace, &desired).await?;
            apply(client, &namespace, &resources::service(&gateway)).await?;
            match resources::pod_disruption_budget(&gateway) {
                Some(budget) => {
                    apply(client, &namespace, &budget).await?;
                }
                None => {
                    delete_if_present::<PodDisruptionBudget>(client, &namespace, &names.base)
                        .await?
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
    judgements.push(reconcile_wiring(&ctx, &namespace, &gateway).await?);
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
    let url = match gateway.spec.open_web_ui.as_ref().map(|spec| spec.mode) {
        Some(WiringMode::Sidecar) => resources::sidecar_url(),
        _ => resources::service_url(&gateway),
    };
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
    } else {
        Action::requeue(Duration::from_secs(15))
    })
}

/// Removes exactly what this gateway added to the Open WebUI workload; the
/// owned objects go with the gateway through their owner references.
async fn cleanup(gateway: Arc<BedrockGateway>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = gateway.namespace().unwrap_or_default();
    if let Some(open_web_ui) = &gateway.spec.open_web_ui
        && let Some(mut workload) =
            Workload::get(&ctx.client, &namespace, &open_web_ui.workload_ref).await?
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
    let result = finalizer(&api, FINALIZER, gateway, |event| async {
        match event {
            Finalizer::Apply(gateway) => apply_gateway(gateway, ctx.clone()).await,
            Finalizer::Cleanup(gateway) => cleanup(gateway, ctx.clone()).await,
        }
    })
    .await
    .map_err(|error| Error::Finalizer(Box::new(error)));
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
    let conflict = matches!(error, Error::Kube(kube::Error::Api(status)) if status.code == 409);
    let failures = ctx.failures.lock().map_or(1, |mut failures| {
        let count = failures
            .entry(ObjectRef::from_obj(gateway.as_ref()))
            .or_insert(0);
        *count = count.saturating_add(1);
        *count
    });
    tracing::warn!(gateway = %gateway.name_any(), %error, failures, "reconcile failed");
    Action::requeue(if conflict {
        Duration::from_millis(200)
    } else {
        backoff(failures)
    })
}

/// Gateways a Deployment or StatefulSet matters to: the one owning it (a
/// proxy Deployment) and those whose wiring annotation sits on it (an Open
/// WebUI workload). One watch serves both, so each object is cached once.
fn gateways_concerned_with<K: Resource>(workload: &K) -> Vec<ObjectRef<BedrockGateway>> {
    let namespace = workload.meta().namespace.clone().unwrap_or_default();
    let owners = workload
        .meta()
        .owner_references
        .iter()
        .flatten()
        .filter(|owner| {
            owner.kind == "BedrockGateway" && owner.api_version.starts_with(crate::crd::GROUP)
        })
        .map(|owner| owner.name.as_str());
    let wired = workload
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
    let namespace = ctx.settings.watch_namespace.clone();
    let namespace = namespace.as_deref();
    let managed = watcher::Config::default().labels(MANAGED_SELECTOR);
    Controller::new(
        scoped::<BedrockGateway>(&client, namespace),
        watcher::Config::default(),
    )
    .owns(scoped::<Service>(&client, namespace), managed.clone())
    .owns(scoped::<Secret>(&client, namespace), managed.clone())
    .owns(
        scoped::<ServiceAccount>(&client, namespace),
        managed.clone(),
    )
    .watches(
        scoped::<Deployment>(&client, namespace),
        watcher::Config::default(),
        |deployment| gateways_concerned_with(&deployment),
    )
    .watches(
        scoped::<StatefulSet>(&client, namespace),
        watcher::Config::default(),
        |set| gateways_concerned_with(&set),
    )
    .graceful_shutdown_on(shutdown)
    .run(reconcile, error_policy, ctx)
    .for_each(|result| async move {
        if let Err(error) = result {
            tracing::debug!(%error, "reconcile loop");
        }
    })
    .await;
}

#[cfg(test)]
mod tests {
    use super::*;

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
