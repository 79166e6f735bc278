{{/* The release's full name: the release name, with the chart name appended unless present. */}}
{{- define "hpo-operator.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "hpo-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "hpo-operator.labels" -}}
{{ include "hpo-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "hpo-operator.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "hpo-operator.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* rbac.scope checked once: "cluster" or "namespaces" (with at least one namespace). */}}
{{- define "hpo-operator.scope" -}}
{{- $scope := .Values.rbac.scope -}}
{{- if not (has $scope (list "cluster" "namespaces")) -}}
{{- fail (printf "rbac.scope must be \"cluster\" or \"namespaces\", got %q" $scope) -}}
{{- end -}}
{{- if and (eq $scope "namespaces") (empty .Values.namespaces) -}}
{{- fail "rbac.scope=namespaces needs at least one namespace in `namespaces`" -}}
{{- end -}}
{{- $scope -}}
{{- end -}}

{{/*
The rules on namespaced resources: exactly the calls the operator makes.
- kopf: watches (list+watch) and patches HPOExperiments, patches their status subresource, posts
  core/v1 Events (create only: kopf neither patches nor aggregates them).
- the handlers read the experiment's stored status before reconciling (get).
- hpo_operator.k8s.api: lists trial Jobs and Pods by label, creates ConfigMaps, PVCs and Jobs
  (409 = exists, so no get), rewrites (update) a trial's ConfigMap that exists before its Job
  does (left by a Job creation the cluster refused), patches a Job to stop it. Children carry
  ownerReferences, so the garbage collector, not the operator, deletes them.
- hpoexperiments/finalizers update: needed on clusters with the OwnerReferencesPermissionEnforcement
  admission plugin to set blockOwnerDeletion on the children's ownerReferences.
*/}}
{{- define "hpo-operator.rules" -}}
- apiGroups: [hpo.dev]
  resources: [hpoexperiments]
  verbs: [get, list, watch, patch]
- apiGroups: [hpo.dev]
  resources: [hpoexperiments/status]
  verbs: [patch]
- apiGroups: [hpo.dev]
  resources: [hpoexperiments/finalizers]
  verbs: [update]
- apiGroups: [batch]
  resources: [jobs]
  verbs: [list, create, patch]
- apiGroups: [""]
  resources: [pods]
  verbs: [list]
- apiGroups: [""]
  resources: [configmaps]
  verbs: [create, update]
- apiGroups: [""]
  resources: [persistentvolumeclaims]
  verbs: [create]
- apiGroups: [""]
  resources: [events]
  verbs: [create]
{{- end -}}

{{/* The metrics Service's name: the full name (cut to fit 63 characters) and "-metrics". */}}
{{- define "hpo-operator.metricsName" -}}
{{- printf "%s-metrics" (include "hpo-operator.fullname" . | trunc 55 | trimSuffix "-") -}}
{{- end -}}

{{/* The metrics Service's own labels, which the ServiceMonitor selects it by. */}}
{{- define "hpo-operator.metricsSelectorLabels" -}}
{{ include "hpo-operator.selectorLabels" . }}
app.kubernetes.io/component: metrics
{{- end -}}

{{/* The metrics values checked once: the ports differ, a ServiceMonitor has a Service to select. */}}
{{- define "hpo-operator.checkMetrics" -}}
{{- $metrics := .Values.metrics -}}
{{- if $metrics.enabled -}}
{{- if eq (int $metrics.port) (int .Values.operator.healthPort) -}}
{{- fail (printf "metrics.port and operator.healthPort must differ, both are %v" $metrics.port) -}}
{{- end -}}
{{- if and $metrics.serviceMonitor.enabled (not $metrics.service.enabled) -}}
{{- fail "metrics.serviceMonitor.enabled needs metrics.service.enabled: the ServiceMonitor selects that Service" -}}
{{- end -}}
{{- end -}}
{{- end -}}
