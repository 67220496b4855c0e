//! The Open WebUI workload (Deployment or StatefulSet) a gateway wires into.

use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::PodSpec;
use kube::api::PostParams;
use kube::runtime::reflector::ObjectRef;
use kube::{Api, Client, ResourceExt};

use crate::cache::Cache;
use crate::crd::{BedrockGateway, WorkloadKind, WorkloadRef};
use crate::error::Error;
use crate::resources::FIELD_MANAGER;
use crate::wiring::{self, WiringRecord};

#[derive(Debug, Clone, PartialEq)]
pub enum Workload {
    Deployment(Deployment),
    StatefulSet(StatefulSet),
}

impl Workload {
    /// The workload as the watch last saw it; asked of the API server only
    /// when the watch has not seen it (yet). A stale copy is harmless:
    /// `replace` then fails with a conflict and the reconcile is retried.
    pub async fn get(
        client: &Client,
        cache: &Cache,
        namespace: &str,
        reference: &WorkloadRef,
    ) -> Result<Option<Self>, Error> {
        let seen = match reference.kind {
            WorkloadKind::Deployment => cache
                .deployments
                .get(&ObjectRef::new(&reference.name).within(namespace))
                .map(|deployment| Workload::Deployment(deployment.as_ref().clone())),
            WorkloadKind::StatefulSet => cache
                .stateful_sets
                .get(&ObjectRef::new(&reference.name).within(namespace))
                .map(|set| Workload::StatefulSet(set.as_ref().clone())),
        };
        if seen.is_some() {
            return Ok(seen);
        }
        Ok(match reference.kind {
            WorkloadKind::Deployment => Api::<Deployment>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await?
                .map(Workload::Deployment),
            WorkloadKind::StatefulSet => Api::<StatefulSet>::namespaced(client.clone(), namespace)
                .get_opt(&reference.name)
                .await?
                .map(Workload::StatefulSet),
        })
    }

    pub fn describe(reference: &WorkloadRef, namespace: &str) -> String {
        format!("{:?} {namespace}/{}", reference.kind, reference.name)
    }

    pub fn pod_spec_mut(&mut self) -> Option<&mut PodSpec> {
        match self {
            Workload::Deployment(deployment) => deployment.spec.as_mut()?.template.spec.as_mut(),
            Workload::StatefulSet(set) => set.spec.as_mut()?.template.spec.as_mut(),
        }
    }

    fn annotations_mut(&mut self) -> &mut std::collections::BTreeMap<String, String> {
        match self {
            Workload::Deployment(deployment) => deployment.annotations_mut(),
            Workload::StatefulSet(set) => set.annotations_mut(),
        }
    }

    fn annotations(&self) -> &std::collections::BTreeMap<String, String> {
        match self {
            Workload::Deployment(deployment) => deployment.annotations(),
            Workload::StatefulSet(set) => set.annotations(),
        }
    }

    /// What the gateway recorded on this workload when it wired it.
    pub fn record(&self, gateway: &BedrockGateway) -> Option<WiringRecord> {
        self.annotations()
            .get(&wiring::annotation_key(gateway))
            .and_then(|text| serde_json::from_str(text).ok())
    }

    pub fn set_record(
        &mut self,
        gateway: &BedrockGateway,
        record: Option<&WiringRecord>,
    ) -> Result<(), Error> {
        let key = wiring::annotation_key(gateway);
        match record {
            Some(record) => {
                let text = serde_json::to_string(record)?;
                self.annotations_mut().insert(key, text);
            }
            None => {
                self.annotations_mut().remove(&key);
            }
        }
        Ok(())
    }

    /// Writes the workload back, guarded by its resourceVersion: a concurrent
    /// edit makes this fail with a conflict and the reconcile is retried.
    pub async fn replace(&self, client: &Client, namespace: &str) -> Result<(), Error> {
        let params = PostParams {
            field_manager: Some(FIELD_MANAGER.to_owned()),
            ..PostParams::default()
        };
        match self {
            Workload::Deployment(deployment) => {
                Api::<Deployment>::namespaced(client.clone(), namespace)
                    .replace(&deployment.name_any(), &params, deployment)
                    .await?;
            }
            Workload::StatefulSet(set) => {
                Api::<StatefulSet>::namespaced(client.clone(), namespace)
                    .replace(&set.name_any(), &params, set)
                    .await?;
            }
        }
        Ok(())
    }
}
