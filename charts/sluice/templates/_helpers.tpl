{{/*
Helpers shared by every template: names, labels, images, topology spread.
Component helpers follow below, operator first, then gateway.
*/}}

{{/* The chart name, at most 63 characters. */}}
{{- define "sluice.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/*
The release's base name: the release name, prefixed with the chart name unless it already contains it.
Trimmed to 47 characters so that suffixes such as "-operator" and "-gateway" stay within 63.
*/}}
{{- define "sluice.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Chart.Name .Release.Name | trunc 47 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{/* `name-version` for the helm.sh/chart label. */}}
{{- define "sluice.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels on every object; pass a dict with "context" (the root) and "component". */}}
{{- define "sluice.labels" -}}
helm.sh/chart: {{ include "sluice.chart" .context }}
{{ include "sluice.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: sluice
{{- with .context.Values.global.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Labels that select one component's pods; pass a dict with "context" and "component". */}}
{{- define "sluice.selectorLabels" -}}
app.kubernetes.io/name: {{ include "sluice.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- with .component }}
app.kubernetes.io/component: {{ . }}
{{- end }}
{{- end -}}

{{/*
The image reference of a component: repository, then the digest if set, else the tag (default: the
chart's appVersion). Pass a dict with "context" and "image" (the component's image values).
*/}}
{{- define "sluice.image" -}}
{{- $tag := .image.tag | default .context.Chart.AppVersion -}}
{{- if .image.digest -}}
{{- printf "%s@%s" .image.repository .image.digest -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end -}}

{{/*
Topology spread constraints: each constraint without a labelSelector gets one that selects the
component's pods. Pass a dict with "context", "component" and "constraints".
*/}}
{{- define "sluice.topologySpreadConstraints" -}}
{{- $selector := include "sluice.selectorLabels" (dict "context" .context "component" .component) | fromYaml -}}
{{- $constraints := list -}}
{{- range .constraints -}}
{{- $constraint := deepCopy . -}}
{{- if not (hasKey $constraint "labelSelector") -}}
{{- $_ := set $constraint "labelSelector" (dict "matchLabels" $selector) -}}
{{- end -}}
{{- $constraints = append $constraints $constraint -}}
{{- end -}}
{{- toYaml $constraints -}}
{{- end -}}

{{/* Pod settings shared by both components; pass the component's values as "values". */}}
{{- define "sluice.podScheduling" -}}
{{- with .context.Values.global.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .context.Values.global.imagePullSecrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .values.topologySpreadConstraints }}
topologySpreadConstraints:
  {{- include "sluice.topologySpreadConstraints" (dict "context" $.context "component" $.component "constraints" .) | nindent 2 }}
{{- end }}
{{- end -}}

{{/* A PodDisruptionBudget's budget: minAvailable or maxUnavailable as set, else one pod at a time. */}}
{{- define "sluice.disruptionBudget" -}}
{{- if and (hasKey . "maxUnavailable") (hasKey . "minAvailable") -}}
{{- fail "podDisruptionBudget: set only one of maxUnavailable and minAvailable" -}}
{{- end -}}
{{- if hasKey . "minAvailable" -}}
minAvailable: {{ .minAvailable }}
{{- else -}}
maxUnavailable: {{ .maxUnavailable | default 1 }}
{{- end -}}
{{- end -}}

{{/* ---------------------------------------------------------------- operator */}}

{{- define "sluice.operator.fullname" -}}
{{- printf "%s-operator" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.operator.serviceAccountName" -}}
{{- if .Values.operator.serviceAccount.create -}}
{{- .Values.operator.serviceAccount.name | default (include "sluice.operator.fullname" .) -}}
{{- else -}}
{{- required "operator.serviceAccount.name is required when operator.serviceAccount.create is false" .Values.operator.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.operator.leaseName" -}}
{{- .Values.operator.leaseName | default (printf "sluice-operator-%s" .Values.gateway.name) -}}
{{- end -}}

{{- /* The usage ledger ConfigMap, the operator's own default name for it. */ -}}
{{- define "sluice.operator.ledgerName" -}}
{{- printf "sluice-usage-ledger-%s" .Values.gateway.name -}}
{{- end -}}

{{- /* The operator's usage endpoint as gateways call it: the Service's cluster DNS name. */ -}}
{{- define "sluice.operator.usageEndpoint" -}}
{{- printf "http://%s.%s.svc:%v" (include "sluice.operator.fullname" .) .Release.Namespace .Values.operator.usagePort -}}
{{- end -}}

{{- define "sluice.operator.labels" -}}
{{ include "sluice.labels" (dict "context" . "component" "operator") }}
{{- end -}}

{{- define "sluice.operator.selectorLabels" -}}
{{ include "sluice.selectorLabels" (dict "context" . "component" "operator") }}
{{- end -}}

{{/* ---------------------------------------------------------------- gateway */}}

{{- define "sluice.gateway.fullname" -}}
{{- printf "%s-gateway" (include "sluice.fullname" .) -}}
{{- end -}}

{{- define "sluice.gateway.serviceAccountName" -}}
{{- if .Values.gateway.serviceAccount.create -}}
{{- .Values.gateway.serviceAccount.name | default (include "sluice.gateway.fullname" .) -}}
{{- else -}}
{{- required "gateway.serviceAccount.name is required when gateway.serviceAccount.create is false" .Values.gateway.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "sluice.gateway.labels" -}}
{{ include "sluice.labels" (dict "context" . "component" "gateway") }}
{{- end -}}

{{- define "sluice.gateway.selectorLabels" -}}
{{ include "sluice.selectorLabels" (dict "context" . "component" "gateway") }}
{{- end -}}

{{/*
The names of the objects the operator publishes for this gateway, as a list: part is "config" or
"secrets". Object 0 (`sluice-<gateway>-<part>`) holds the index and the first shard; objects 1..15
(`sluice-<gateway>-<part>-<i>`) hold further shards of large snapshots. The count matches MAX_SHARDS in
crds/src/config/publish.rs.
*/}}
{{- define "sluice.gateway.publishedNames" -}}
{{- $names := list (printf "sluice-%s-%s" .context.Values.gateway.name .part) -}}
{{- range $i := untilStep 1 16 1 -}}
{{- $names = append $names (printf "sluice-%s-%s-%d" $.context.Values.gateway.name $.part $i) -}}
{{- end -}}
{{- toJson $names -}}
{{- end -}}

{{/* The operator's rules in each namespace it watches (see templates/operator-rbac.yaml). */}}
{{- define "sluice.operator.watchRules" -}}
- apiGroups: [sluice.dev]
  resources: [llmroutes, virtualkeys, budgets]
  verbs: [get, list, watch]
- apiGroups: [sluice.dev]
  resources: [llmroutes/status, virtualkeys/status, budgets/status]
  verbs: [get, update, patch]
- apiGroups: [sluice.dev]
  resources: [virtualkeys/finalizers]
  verbs: [update]
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, update]
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- end -}}

{{/* ---------------------------------------------------------------- network policy */}}

{{/* Egress to cluster DNS (any namespace, port 53). */}}
{{- define "sluice.networkPolicy.dnsEgress" -}}
- to:
    - namespaceSelector: {}
  ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
{{- end -}}

{{/* Egress to the Kubernetes API server endpoints. */}}
{{- define "sluice.networkPolicy.apiServerEgress" -}}
- to:
    {{- range .Values.networkPolicy.egress.apiServerCIDRs }}
    - ipBlock:
        cidr: {{ . }}
    {{- end }}
  ports:
    {{- range .Values.networkPolicy.egress.apiServerPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
{{- end -}}
