{{/* Names, labels and the pieces every gpulens pod shares. */}}

{{- define "gpulens.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "gpulens.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Labels of every object; call with (dict "ctx" $ "component" "agent"). */}}
{{- define "gpulens.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .ctx.Chart.Name .ctx.Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "gpulens.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: gpulens
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/* Selector labels; stable across upgrades, so never add the version here. */}}
{{- define "gpulens.selectorLabels" -}}
app.kubernetes.io/name: {{ include "gpulens.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* Object name of a component: <fullname>-<component>. */}}
{{- define "gpulens.componentName" -}}
{{- printf "%s-%s" (include "gpulens.fullname" .ctx) .component | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* ServiceAccount name of a component. */}}
{{- define "gpulens.serviceAccountName" -}}
{{- $sa := index .ctx.Values.serviceAccounts .component }}
{{- if $sa.create }}
{{- default (include "gpulens.componentName" .) $sa.name }}
{{- else }}
{{- default "default" $sa.name }}
{{- end }}
{{- end }}

{{- define "gpulens.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "gpulens.imagePullSecrets" -}}
{{- with .Values.imagePullSecrets }}
{{- dict "imagePullSecrets" . | toYaml }}
{{- end }}
{{- end }}

{{/* Where the warehouse is mounted in every pod that uses it. */}}
{{- define "gpulens.warehouseDir" -}}/var/lib/gpulens{{- end }}
{{- define "gpulens.warehousePath" -}}
{{- printf "%s/%s" (include "gpulens.warehouseDir" .) .Values.warehouse.file }}
{{- end }}

{{/* The warehouse volume: the PVC, or an emptyDir that warehouse_sync.py fills from S3. */}}
{{- define "gpulens.warehouseVolume" -}}
- name: warehouse
{{- if eq .Values.warehouse.mode "pvc" }}
  persistentVolumeClaim:
    claimName: {{ default (include "gpulens.componentName" (dict "ctx" . "component" "warehouse")) .Values.warehouse.persistence.existingClaim }}
{{- else }}
  emptyDir: {}
- name: scripts
  configMap:
    name: {{ include "gpulens.componentName" (dict "ctx" . "component" "scripts") }}
    defaultMode: 0444
{{- end }}
{{- end }}

{{/* Environment every gpulens container gets. HOME points at the writable /tmp (read-only root). */}}
{{- define "gpulens.commonEnv" -}}
- name: HOME
  value: /tmp
- name: PYTHONUNBUFFERED
  value: "1"
{{- if and (eq .Values.warehouse.mode "s3") .Values.warehouse.s3.region }}
- name: AWS_REGION
  value: {{ .Values.warehouse.s3.region | quote }}
{{- end }}
{{- with .Values.defaults.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
Init container that fetches the warehouse from S3 (mode s3). Call with (dict "ctx" $ "missingOk" bool):
the ingest jobs may start from an empty warehouse, the explorer and the report need one.
*/}}
{{- define "gpulens.warehouseFetch" -}}
{{- if eq .ctx.Values.warehouse.mode "s3" }}
- name: fetch-warehouse
  image: {{ include "gpulens.image" .ctx }}
  imagePullPolicy: {{ .ctx.Values.image.pullPolicy }}
  command: ["python", "/opt/gpulens/scripts/warehouse_sync.py", "fetch", {{ .ctx.Values.warehouse.s3.uri | quote }}, {{ include "gpulens.warehousePath" .ctx | quote }}{{ if .missingOk }}, "--missing-ok"{{ end }}]
  env:
    {{- include "gpulens.commonEnv" .ctx | nindent 4 }}
  securityContext:
    {{- toYaml .ctx.Values.defaults.containerSecurityContext | nindent 4 }}
  volumeMounts:
    - name: warehouse
      mountPath: {{ include "gpulens.warehouseDir" .ctx }}
    - name: scripts
      mountPath: /opt/gpulens/scripts
      readOnly: true
    - name: tmp
      mountPath: /tmp
{{- end }}
{{- end }}

{{/*
A CronJob running one gpulens command. Call with (dict "ctx" $ "component" "ingest-cur" "sa" "ingest"
"job" <values of the job> "script" <shell script> "env" <extra env yaml> "writes" bool).
The script runs under /bin/sh so that dates (the last hour, the previous ISO week) are computed at run time.
*/}}
{{- define "gpulens.cronJob" -}}
{{- $ctx := .ctx }}
{{- $v := $ctx.Values }}
apiVersion: batch/v1
kind: CronJob
metadata:
  name: {{ include "gpulens.componentName" . }}
  labels:
    {{- include "gpulens.labels" . | nindent 4 }}
spec:
  schedule: {{ .job.schedule | quote }}
  timeZone: {{ $v.cronJobs.timeZone | quote }}
  concurrencyPolicy: Forbid
  startingDeadlineSeconds: {{ $v.cronJobs.startingDeadlineSeconds }}
  successfulJobsHistoryLimit: {{ $v.cronJobs.successfulJobsHistoryLimit }}
  failedJobsHistoryLimit: {{ $v.cronJobs.failedJobsHistoryLimit }}
  jobTemplate:
    spec:
      backoffLimit: {{ $v.cronJobs.backoffLimit }}
      activeDeadlineSeconds: {{ .job.activeDeadlineSeconds }}
      template:
        metadata:
          labels:
            {{- include "gpulens.selectorLabels" . | nindent 12 }}
        spec:
          restartPolicy: Never
          serviceAccountName: {{ include "gpulens.serviceAccountName" (dict "ctx" $ctx "component" .sa) }}
          automountServiceAccountToken: false
          {{- with include "gpulens.imagePullSecrets" $ctx }}{{ . | nindent 10 }}{{ end }}
          securityContext:
            {{- toYaml $v.defaults.podSecurityContext | nindent 12 }}
          {{- with $v.cronJobs.nodeSelector }}
          nodeSelector:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with $v.cronJobs.tolerations }}
          tolerations:
            {{- toYaml . | nindent 12 }}
          {{- end }}
          {{- with (include "gpulens.warehouseFetch" (dict "ctx" $ctx "missingOk" .writes) | trim) }}
          initContainers:
            {{- . | nindent 12 }}
          {{- end }}
          containers:
            - name: {{ .component }}
              image: {{ include "gpulens.image" $ctx }}
              imagePullPolicy: {{ $v.image.pullPolicy }}
              command: ["/bin/sh", "-ec"]
              args:
                - |
                  {{- .script | nindent 18 }}
                  {{- if and .writes (eq $v.warehouse.mode "s3") }}
                  python /opt/gpulens/scripts/warehouse_sync.py publish {{ include "gpulens.warehousePath" $ctx }} {{ $v.warehouse.s3.uri }}
                  {{- end }}
              env:
                {{- include "gpulens.commonEnv" $ctx | nindent 16 }}
                {{- with .env }}
                {{- . | nindent 16 }}
                {{- end }}
              securityContext:
                {{- toYaml $v.defaults.containerSecurityContext | nindent 16 }}
              resources:
                {{- toYaml $v.cronJobs.resources | nindent 16 }}
              volumeMounts:
                - name: warehouse
                  mountPath: {{ include "gpulens.warehouseDir" $ctx }}
                - name: tmp
                  mountPath: /tmp
                {{- if eq $v.warehouse.mode "s3" }}
                - name: scripts
                  mountPath: /opt/gpulens/scripts
                  readOnly: true
                {{- end }}
          volumes:
            {{- include "gpulens.warehouseVolume" $ctx | nindent 12 }}
            - name: tmp
              emptyDir: {}
{{- end }}

{{/*
A ClusterRole with `rules` and its binding to the component's ServiceAccount.
Call with (dict "ctx" $ "component" "agent" "rules" (list ...)).
*/}}
{{- define "gpulens.clusterRole" -}}
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata:
  name: {{ include "gpulens.componentName" . }}
  labels:
    {{- include "gpulens.labels" . | nindent 4 }}
rules:
  {{- toYaml .rules | nindent 2 }}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata:
  name: {{ include "gpulens.componentName" . }}
  labels:
    {{- include "gpulens.labels" . | nindent 4 }}
roleRef:
  apiGroup: rbac.authorization.k8s.io
  kind: ClusterRole
  name: {{ include "gpulens.componentName" . }}
subjects:
  - kind: ServiceAccount
    name: {{ include "gpulens.serviceAccountName" . }}
    namespace: {{ .ctx.Release.Namespace }}
{{- end }}
