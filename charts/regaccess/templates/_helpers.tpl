{{/* Chart name, possibly overridden. */}}
{{- define "regaccess.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Resource name prefix: the release name when it already contains the chart name. */}}
{{- define "regaccess.fullname" -}}
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

{{- define "regaccess.selectorLabels" -}}
app.kubernetes.io/name: {{ include "regaccess.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{/* The shards this release runs: the default shard ("") first, then .Values.shards. */}}
{{- define "regaccess.shards" -}}
{{- toJson (prepend (.Values.shards | default list) "") -}}
{{- end -}}

{{/* Name suffix of one shard's objects: empty for the default shard, "-shard-NAME" otherwise. */}}
{{- define "regaccess.shardSuffix" -}}
{{- if . -}}-shard-{{ . }}{{- end -}}
{{- end -}}

{{/* Pod selector of one shard's Deployment (dict root, shard). The default shard keeps the
selector it always had (selectors are immutable); a named shard's differs in its name label,
so no two Deployments select each other's pods. */}}
{{- define "regaccess.shardSelectorLabels" -}}
{{- if .shard -}}
app.kubernetes.io/name: {{ include "regaccess.name" .root }}-shard
app.kubernetes.io/instance: {{ .root.Release.Name }}
regaccess.io/shard: {{ .shard | quote }}
{{- else -}}
{{ include "regaccess.selectorLabels" .root }}
{{- end -}}
{{- end -}}

{{- define "regaccess.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "regaccess.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: regaccess
{{- end -}}

{{- define "regaccess.serviceAccountName" -}}
{{- if .Values.serviceAccount.name -}}
{{- .Values.serviceAccount.name -}}
{{- else -}}
{{- printf "%s-operator" (include "regaccess.fullname" .) | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "regaccess.image" -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}
{{- end -}}

{{/* "true" when kopf peering is on: asked for, or needed by more than one replica. */}}
{{- define "regaccess.peering" -}}
{{- if or .Values.peering.enabled (gt (int .Values.replicaCount) 1) -}}true{{- end -}}
{{- end -}}

{{- define "regaccess.peeringName" -}}
{{- default (include "regaccess.fullname" .) .Values.peering.name -}}
{{- end -}}

{{/* One peering per shard (dict root, shard): replicas of one shard stand by for each
other; shards never pause each other. */}}
{{- define "regaccess.shardPeeringName" -}}
{{- include "regaccess.peeringName" .root -}}{{- include "regaccess.shardSuffix" .shard -}}
{{- end -}}

{{/* The namespaced rules the operator needs wherever it watches (shared by ClusterRole and Role). */}}
{{- define "regaccess.watchRules" -}}
# The custom resources: kopf lists and watches them, and patches finalizers,
# progress annotations and the status subresource; nothing else.
- apiGroups: ["regaccess.io"]
  resources: ["registrycredentials", "crossaccountrepoaccesses", "ecrpullsecrets"]
  verbs: ["list", "watch", "patch"]
- apiGroups: ["regaccess.io"]
  resources: ["registrycredentials/status", "crossaccountrepoaccesses/status", "ecrpullsecrets/status"]
  verbs: ["patch"]
# Source Secrets: read through kopf's index (list + watch). ECRPullSecret's pull Secrets:
# read (get), created, patched and deleted, only the operator's own (its owner annotation,
# checked before every write); Kubernetes RBAC cannot narrow create by name, so the scope is
# the watched namespaces. rbac.ecrPullSecrets: false drops the writes (RegistryCredential only).
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["list", "watch"{{ if .Values.rbac.ecrPullSecrets }}, "get", "create", "patch", "delete"{{ end }}]
{{- if and .Values.rbac.ecrPullSecrets .Values.rbac.ecrPullSecretServiceAccounts }}
# ECRPullSecret spec.serviceAccounts: its Secret added to / removed from imagePullSecrets
# (a merge patch of that list only). rbac.ecrPullSecretServiceAccounts: false when unused.
- apiGroups: [""]
  resources: ["serviceaccounts"]
  verbs: ["get", "patch"]
{{- end }}
# kopf.event() posts core/v1 Events (kopf 1.45 does not use events.k8s.io).
- apiGroups: [""]
  resources: ["events"]
  verbs: ["create"]
{{- end -}}
