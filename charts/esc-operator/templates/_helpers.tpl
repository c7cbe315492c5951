{{/* The chart's name. */}}
{{- define "esc-operator.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* The release's full name: the prefix of every object (and the Lease) of this release. */}}
{{- define "esc-operator.fullname" -}}
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

{{- define "esc-operator.selectorLabels" -}}
app.kubernetes.io/name: {{ include "esc-operator.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "esc-operator.labels" -}}
{{ include "esc-operator.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{- end -}}

{{- define "esc-operator.serviceAccountName" -}}
{{- default (include "esc-operator.fullname" .) .Values.serviceAccount.name -}}
{{- end -}}

{{- define "esc-operator.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/*
The operator's permissions in each watched namespace. The same rules as the ClusterRole
`esc-operator` of manifests/rbac/operator.yaml (tests/helm_chart.rs keeps them equal), which every
operator test binds to the operator it runs.
*/}}
{{- define "esc-operator.rules" -}}
# The custom resources: read, watch, and add/remove the finalizer (patch).
- apiGroups: ["escoperator.dev"]
  resources: ["escclusters", "escbackups", "escrestores"]
  verbs: ["get", "list", "watch", "patch"]
# Status is written with server-side apply.
- apiGroups: ["escoperator.dev"]
  resources: ["escclusters/status", "escbackups/status", "escrestores/status"]
  verbs: ["get", "patch"]
# EscBackupSchedules: read and watched, status written with server-side apply; their runs
# (EscBackups) created and, by retention, deleted. The finalizers subresource lets a run's
# ownerReference block its schedule's deletion where OwnerReferencesPermissionEnforcement is on.
- apiGroups: ["escoperator.dev"]
  resources: ["escbackupschedules"]
  verbs: ["get", "list", "watch"]
- apiGroups: ["escoperator.dev"]
  resources: ["escbackupschedules/status"]
  verbs: ["get", "patch"]
- apiGroups: ["escoperator.dev"]
  resources: ["escbackupschedules/finalizers"]
  verbs: ["update"]
- apiGroups: ["escoperator.dev"]
  resources: ["escbackups"]
  verbs: ["create", "delete"]
# SSH credentials, known_hosts, S3 credentials and CA bundles named by the custom resources:
# read and watched, never written.
- apiGroups: [""]
  resources: ["secrets"]
  verbs: ["get", "list", "watch"]
# The mover Jobs of backups and restores: created, watched (by label), deleted on cancel.
- apiGroups: ["batch"]
  resources: ["jobs"]
  verbs: ["get", "list", "watch", "create", "delete"]
# A mover pod's termination message (its report) and log (its progress).
- apiGroups: [""]
  resources: ["pods"]
  verbs: ["get", "list"]
- apiGroups: [""]
  resources: ["pods/log"]
  verbs: ["get"]
# Events on the custom resources.
- apiGroups: ["events.k8s.io"]
  resources: ["events"]
  verbs: ["create", "patch"]
{{- end -}}

{{/* The leader Lease, in the release namespace only. Same as esc-operator-leader-election. */}}
{{- define "esc-operator.leaderElectionRules" -}}
- apiGroups: ["coordination.k8s.io"]
  resources: ["leases"]
  verbs: ["get", "list", "watch", "create", "patch"]
{{- end -}}

{{/* The --mover-template file: only what is set, so the operator's defaults apply to the rest. */}}
{{- define "esc-operator.moverTemplate" -}}
{{- $m := .Values.mover -}}
{{- $t := dict "resources" $m.resources "hostNetwork" $m.hostNetwork "activeDeadlineSeconds" $m.activeDeadlineSeconds "ttlSecondsAfterFinished" $m.ttlSecondsAfterFinished "s3PartSizeMiB" $m.s3PartSizeMiB "s3Concurrency" $m.s3Concurrency -}}
{{- with $m.image }}{{ $_ := set $t "image" . }}{{ end -}}
{{- with $m.imagePullPolicy }}{{ $_ := set $t "imagePullPolicy" . }}{{ end -}}
{{- with $m.nodeSelector }}{{ $_ := set $t "nodeSelector" . }}{{ end -}}
{{- with $m.tolerations }}{{ $_ := set $t "tolerations" . }}{{ end -}}
{{- with $m.priorityClassName }}{{ $_ := set $t "priorityClassName" . }}{{ end -}}
{{- toYaml $t -}}
{{- end -}}
