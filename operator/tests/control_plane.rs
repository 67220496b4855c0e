//! The test control plane serves core resources and CustomResourceDefinitions.

mod support;

use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, PostParams};
use kube::runtime::wait::{await_condition, conditions};
use serde_json::json;
use support::ControlPlane;

#[tokio::test]
async fn stores_and_lists_core_resources() {
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.fresh_namespace("smoke").await;
    let client = control_plane.client().await;

    let config_maps = Api::<ConfigMap>::namespaced(client.clone(), &namespace);
    let config_map: ConfigMap = serde_json::from_value(json!({
        "metadata": { "name": "greeting" },
        "data": { "text": "hello" }
    }))
    .expect("a valid ConfigMap");
    config_maps
        .create(&PostParams::default(), &config_map)
        .await
        .expect("the ConfigMap is created");

    let stored = config_maps
        .get("greeting")
        .await
        .expect("the ConfigMap reads back");
    let text = stored.data.and_then(|data| data.get("text").cloned());
    assert_eq!(text.as_deref(), Some("hello"));

    let namespaces = Api::<Namespace>::all(client)
        .list(&ListParams::default())
        .await
        .expect("namespaces are listed");
    let names: Vec<String> = namespaces
        .items
        .into_iter()
        .filter_map(|namespace| namespace.metadata.name)
        .collect();
    assert!(
        names.contains(&namespace),
        "{namespace} missing from {names:?}"
    );
    assert!(
        names.iter().any(|name| name == "default"),
        "no default namespace in {names:?}"
    );
}

#[tokio::test]
async fn serves_custom_resource_definitions() {
    let control_plane = ControlPlane::shared();
    let namespace = control_plane.fresh_namespace("crd").await;
    let client = control_plane.client().await;
    // The same name as the namespace keeps each run's definition apart on a
    // control plane shared through BEDROCK_GATEWAY_TEST_KUBECONFIG.
    let group = format!("{namespace}.test.example");
    let definition_name = format!("widgets.{group}");

    let definition: CustomResourceDefinition = serde_json::from_value(json!({
        "metadata": { "name": definition_name },
        "spec": {
            "group": group,
            "scope": "Namespaced",
            "names": { "plural": "widgets", "singular": "widget", "kind": "Widget" },
            "versions": [{
                "name": "v1",
                "served": true,
                "storage": true,
                "schema": { "openAPIV3Schema": {
                    "type": "object",
                    "properties": { "spec": {
                        "type": "object",
                        "properties": { "size": { "type": "integer" } }
                    } }
                } }
            }]
        }
    }))
    .expect("a valid CustomResourceDefinition");
    let definitions = Api::<CustomResourceDefinition>::all(client.clone());
    definitions
        .create(&PostParams::default(), &definition)
        .await
        .expect("the CustomResourceDefinition is created");

    let established = await_condition(
        definitions,
        &definition_name,
        conditions::is_crd_established(),
    );
    tokio::time::timeout(Duration::from_secs(30), established)
        .await
        .expect("the CustomResourceDefinition is established within 30 s")
        .expect("the CustomResourceDefinition can be watched");

    let widget_type = ApiResource::from_gvk(&GroupVersionKind::gvk(&group, "v1", "Widget"));
    let widgets = Api::<DynamicObject>::namespaced_with(client, &namespace, &widget_type);
    let widget: DynamicObject = serde_json::from_value(json!({
        "apiVersion": format!("{group}/v1"),
        "kind": "Widget",
        "metadata": { "name": "small" },
        "spec": { "size": 3 }
    }))
    .expect("a valid Widget");
    widgets
        .create(&PostParams::default(), &widget)
        .await
        .expect("a Widget is created");
    let stored = widgets.get("small").await.expect("the Widget reads back");
    assert_eq!(stored.data["spec"]["size"], 3);
}
