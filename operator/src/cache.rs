//! What the controller's watches have seen of the objects a reconcile reads
//! and writes. A reconcile reads from here instead of asking the API server,
//! and leaves out a server-side apply that would change nothing. The API
//! server is still asked whenever memory cannot vouch for an answer: an
//! object not seen (yet), a Secret's contents, a write after any change.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Secret, Service, ServiceAccount};
use k8s_openapi::api::policy::v1::PodDisruptionBudget;
use kube::core::PartialObjectMeta;
use kube::runtime::reflector::{self, ObjectRef, Store, store::Writer};
use kube::{Resource, ResourceExt};
use serde::Serialize;
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::crd::BedrockGateway;
use crate::resources::hex_prefix;

/// Readers of the controller's watches; `run` feeds them through the writers.
pub struct Cache {
    pub deployments: Store<Deployment>,
    pub stateful_sets: Store<StatefulSet>,
    pub services: Store<Service>,
    pub service_accounts: Store<ServiceAccount>,
    pub budgets: Store<PodDisruptionBudget>,
    pub secrets: Store<PartialObjectMeta<Secret>>,
    writers: Mutex<Option<CacheWriters>>,
    /// Per gateway and kind of owned object: the object's uid and the digest
    /// of what was last applied to it.
    applied: Mutex<HashMap<ObjectRef<BedrockGateway>, BTreeMap<String, AppliedDigest>>>,
    /// What was read of each key Secret at a resourceVersion: enough to judge
    /// it and roll the proxy, never the key itself.
    secrets_read: Mutex<HashMap<ObjectRef<Secret>, SecretFacts>>,
}

pub struct CacheWriters {
    pub deployments: Writer<Deployment>,
    pub stateful_sets: Writer<StatefulSet>,
    pub services: Writer<Service>,
    pub service_accounts: Writer<ServiceAccount>,
    pub budgets: Writer<PodDisruptionBudget>,
    pub secrets: Writer<PartialObjectMeta<Secret>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct AppliedDigest {
    uid: String,
    digest: String,
}

/// An object about to be applied: its kind, JSON and digest.
#[derive(Debug, Clone)]
pub struct Desired {
    kind: String,
    value: Value,
    digest: String,
}

impl Desired {
    pub fn of<K>(object: &K) -> Result<Self, serde_json::Error>
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let value = serde_json::to_value(object)?;
        Ok(Self {
            kind: K::kind(&()).into_owned(),
            digest: digest(&value),
            value,
        })
    }
}

/// A key Secret as read at one resourceVersion.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SecretFacts {
    pub resource_version: String,
    /// `resources::secret_digest` of its data.
    pub data_digest: String,
    /// The names of its data keys.
    pub keys: Vec<String>,
}

impl Default for Cache {
    fn default() -> Self {
        let (deployments, deployments_writer) = reflector::store();
        let (stateful_sets, stateful_sets_writer) = reflector::store();
        let (services, services_writer) = reflector::store();
        let (service_accounts, service_accounts_writer) = reflector::store();
        let (budgets, budgets_writer) = reflector::store();
        let (secrets, secrets_writer) = reflector::store();
        Self {
            deployments,
            stateful_sets,
            services,
            service_accounts,
            budgets,
            secrets,
            writers: Mutex::new(Some(CacheWriters {
                deployments: deployments_writer,
                stateful_sets: stateful_sets_writer,
                services: services_writer,
                service_accounts: service_accounts_writer,
                budgets: budgets_writer,
                secrets: secrets_writer,
            })),
            applied: Mutex::new(HashMap::new()),
            secrets_read: Mutex::new(HashMap::new()),
        }
    }
}

impl Cache {
    /// The writers, to the one controller that fills the stores.
    pub fn take_writers(&self) -> Option<CacheWriters> {
        self.writers.lock().ok()?.take()
    }

    /// Whether applying `desired` now would change nothing: this operator
    /// applied exactly it to this very object before, and the object as last
    /// seen still holds every field of it (no one else changed or removed
    /// one since).
    pub fn already_applied<K>(
        &self,
        gateway: &ObjectRef<BedrockGateway>,
        desired: &Desired,
        live: Option<&K>,
    ) -> bool
    where
        K: Resource<DynamicType = ()> + Serialize,
    {
        let Some(live) = live else {
            return false;
        };
        let expected = AppliedDigest {
            uid: live.uid().unwrap_or_default(),
            digest: desired.digest.clone(),
        };
        let remembered = self.applied.lock().is_ok_and(|applied| {
            applied
                .get(gateway)
                .and_then(|kinds| kinds.get(&desired.kind))
                == Some(&expected)
        });
        remembered && serde_json::to_value(live).is_ok_and(|live| holds(&live, &desired.value))
    }

    /// Remembers that `desired` was applied and the API server answered with
    /// the object of `uid`.
    pub fn remember_applied(
        &self,
        gateway: &ObjectRef<BedrockGateway>,
        desired: Desired,
        uid: Option<String>,
    ) {
        if let Ok(mut remembered) = self.applied.lock() {
            remembered.entry(gateway.clone()).or_default().insert(
                desired.kind,
                AppliedDigest {
                    uid: uid.unwrap_or_default(),
                    digest: desired.digest,
                },
            );
        }
    }

    /// What was read of the Secret at the resourceVersion the watch last saw,
    /// if it was read at that version.
    pub fn secret_facts(&self, namespace: &str, name: &str) -> Option<SecretFacts> {
        let seen = self
            .secrets
            .get(&ObjectRef::new(name).within(namespace))?
            .resource_version()?;
        let facts = self
            .secrets_read
            .lock()
            .ok()?
            .get(&ObjectRef::new(name).within(namespace))
            .cloned()?;
        (facts.resource_version == seen).then_some(facts)
    }

    pub fn remember_secret(&self, secret: &Secret, data_digest: String) {
        let (Some(namespace), Some(resource_version)) =
            (secret.namespace(), secret.resource_version())
        else {
            return;
        };
        let facts = SecretFacts {
            resource_version,
            data_digest,
            keys: secret
                .data
                .iter()
                .flatten()
                .map(|(key, _)| key.clone())
                .collect(),
        };
        if let Ok(mut read) = self.secrets_read.lock() {
            read.insert(ObjectRef::new(&secret.name_any()).within(&namespace), facts);
        }
    }

    /// Forgets what concerns a gateway that is going away.
    pub fn forget(&self, gateway: &ObjectRef<BedrockGateway>, secret_name: &str) {
        if let Ok(mut applied) = self.applied.lock() {
            applied.remove(gateway);
        }
        if let (Ok(mut read), Some(namespace)) = (self.secrets_read.lock(), &gateway.namespace) {
            read.remove(&ObjectRef::new(secret_name).within(namespace));
        }
    }
}

fn digest(value: &Value) -> String {
    hex_prefix(&Sha256::digest(value.to_string().as_bytes()))
}

/// Whether `live` holds every field of `desired` with the same value. Lists
/// must match item by item (a list of a different length is a difference,
/// whoever added the items); fields only `live` has (defaults, status,
/// another manager's) do not count. An empty map or list in `desired` is
/// held by an absent field, as the API server drops them.
pub fn holds(live: &Value, desired: &Value) -> bool {
    match (live, desired) {
        (Value::Object(live), Value::Object(desired)) => {
            desired.iter().all(|(key, wanted)| match live.get(key) {
                Some(present) => holds(present, wanted),
                None => is_empty(wanted),
            })
        }
        (Value::Array(live), Value::Array(desired)) => {
            live.len() == desired.len()
                && live
                    .iter()
                    .zip(desired)
                    .all(|(present, wanted)| holds(present, wanted))
        }
        (Value::Number(live), Value::Number(desired)) => live.as_f64() == desired.as_f64(),
        (live, desired) => live == desired,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::Object(map) => map.is_empty(),
        Value::Array(items) => items.is_empty(),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
    use serde_json::json;

    #[test]
    fn live_objects_hold_what_was_asked_for_plus_defaults_and_status() {
        let desired = json!({"spec": {"replicas": 1, "template": {"spec": {"containers": [
            {"name": "proxy", "image": "a:1", "ports": [{"containerPort": 8080}]}]}}}});
        let live = json!({"metadata": {"uid": "u", "resourceVersion": "7"},
            "spec": {"replicas": 1, "revisionHistoryLimit": 10, "template": {"spec": {"containers": [
                {"name": "proxy", "image": "a:1", "imagePullPolicy": "IfNotPresent",
                 "ports": [{"containerPort": 8080, "protocol": "TCP"}]}]}}},
            "status": {"readyReplicas": 1}});
        assert!(holds(&live, &desired));
    }

    #[test]
    fn a_changed_removed_or_added_item_is_a_difference() {
        let desired = json!({"spec": {"containers": [{"name": "proxy", "image": "a:1",
            "env": [{"name": "A", "value": "1"}]}]}});
        let changed = json!({"spec": {"containers": [{"name": "proxy", "image": "a:2",
            "env": [{"name": "A", "value": "1"}]}]}});
        let removed = json!({"spec": {"containers": [{"name": "proxy", "image": "a:1"}]}});
        let added = json!({"spec": {"containers": [{"name": "proxy", "image": "a:1",
            "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}]}]}});
        let reordered = json!({"spec": {"containers": [{"name": "proxy", "image": "a:1",
            "env": [{"value": "1", "name": "A"}]}]}});
        assert!(!holds(&changed, &desired));
        assert!(!holds(&removed, &desired));
        assert!(!holds(&added, &desired));
        assert!(holds(&reordered, &desired));
    }

    #[test]
    fn empty_maps_and_lists_are_held_by_absent_fields_but_values_are_not() {
        assert!(holds(
            &json!({}),
            &json!({"annotations": {}, "items": [], "x": null})
        ));
        assert!(!holds(&json!({}), &json!({"replicas": 0})));
        assert!(!holds(&json!({}), &json!({"enabled": false})));
        assert!(!holds(
            &json!({"labels": {}}),
            &json!({"labels": {"a": "b"}})
        ));
        assert!(holds(&json!({"port": 80.0}), &json!({"port": 80})));
        assert!(!holds(&json!({"port": "80"}), &json!({"port": 80})));
    }

    fn account(uid: &str, annotation: &str) -> ServiceAccount {
        ServiceAccount {
            metadata: ObjectMeta {
                name: Some("team-bedrock-gateway".into()),
                namespace: Some("ai".into()),
                uid: Some(uid.into()),
                annotations: Some(
                    [(
                        "eks.amazonaws.com/role-arn".to_owned(),
                        annotation.to_owned(),
                    )]
                    .into(),
                ),
                ..ObjectMeta::default()
            },
            ..ServiceAccount::default()
        }
    }

    #[test]
    fn an_apply_is_skipped_only_after_the_same_apply_to_the_same_object() {
        let cache = Cache::default();
        let gateway = ObjectRef::new("team").within("ai");
        let mut wanted = account("", "arn:one");
        wanted.metadata.uid = None;
        let desired = || Desired::of(&wanted).unwrap();
        let live = account("uid-1", "arn:one");
        assert!(
            !cache.already_applied(&gateway, &desired(), Some(&live)),
            "never applied"
        );
        cache.remember_applied(&gateway, desired(), live.metadata.uid.clone());
        assert!(cache.already_applied(&gateway, &desired(), Some(&live)));
        assert!(
            !cache.already_applied::<ServiceAccount>(&gateway, &desired(), None),
            "not seen"
        );

        let recreated = account("uid-2", "arn:one");
        assert!(!cache.already_applied(&gateway, &desired(), Some(&recreated)));
        let edited = account("uid-1", "arn:other");
        assert!(!cache.already_applied(&gateway, &desired(), Some(&edited)));
        // A field dropped from what is wanted must reach the API server,
        // though the live object still holds everything that is left.
        let mut fewer = wanted.clone();
        fewer.metadata.annotations = None;
        assert!(!cache.already_applied(&gateway, &Desired::of(&fewer).unwrap(), Some(&live)));

        cache.forget(&gateway, "team-bedrock-gateway-api-key");
        assert!(!cache.already_applied(&gateway, &desired(), Some(&live)));
    }
}
