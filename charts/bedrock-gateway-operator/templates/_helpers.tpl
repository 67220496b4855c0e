{{/* Names, labels and computed settings shared by the templates. */}}

{{- define "bgo.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "bgo.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "bgo.selectorLabels" -}}
app.kubernetes.io/name: {{ include "bgo.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "bgo.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "bgo.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: bedrock-gateway
{{- end -}}

{{- define "bgo.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "bgo.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* An image reference from {repository, tag, digest}; the tag defaults to appVersion. */}}
{{- define "bgo.image" -}}
{{- $image := index . 0 -}}
{{- $root := index . 1 -}}
{{- if $image.digest -}}
{{- printf "%s@%s" $image.repository $image.digest -}}
{{- else -}}
{{- printf "%s:%s" $image.repository (default $root.Chart.AppVersion $image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when leader election is on: asked for, or more than one replica. */}}
{{- define "bgo.leaderElection" -}}
{{- if or .Values.leaderElection.enabled (gt (int .Values.replicas) 1) -}}true{{- end -}}
{{- end -}}

{{/*
The namespaced rules of the operator: exactly the calls it makes
(operator/src/controller.rs, workload.rs); scripts/test-chart.sh runs the
operator under these rules.
*/}}
{{- define "bgo.namespacedRules" }}
# Watches BedrockGateways; adds and removes its finalizer (JSON patch).
- apiGroups: ["bedrock-gateway.io"]
  resources: ["bedrockgateways"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["bedrock-gateway.io"]
  resources: ["bedrockgateways/status"]
  verbs: ["patch"]
# Server-side apply needs create as well as patch: an apply creates the object
# when it does not exist yet.
# The proxy Deployment (server-side apply); the Open WebUI Deployment is read
# and replaced to wire its env.
- apiGroups: ["apps"]
  resources: ["deployments"]
  verbs: ["get", "list", "watch", "create", "patch", "update"]
# An Open WebUI StatefulSet, read and replaced to wire its env.
- apiGroups: ["apps"]
  resources: ["statefulsets"]
  verbs: ["get", "list", "watch", "update"]
# The proxy's Service and ServiceAccount (server-side apply).
- apiGroups: [""]
  resources: ["services", "serviceaccounts"]
  verbs: ["list", "watch", "create", "patch"]
# The API key Secret: read, or generated once.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch", "create"]
# The proxy's PodDisruptionBudget when it has several replicas (watched, so a
# deleted one is made again and one no longer wanted is seen to delete).
- apiGroups: ["policy"]
  resources: ["poddisruptionbudgets"]
  verbs: ["list", "watch", "create", "patch", "delete"]
# The proxy's ServiceMonitor when a gateway asks for one.
- apiGroups: ["monitoring.coreos.com"]
  resources: ["servicemonitors"]
  verbs: ["create", "patch"]
# Events on BedrockGateways.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end }}
