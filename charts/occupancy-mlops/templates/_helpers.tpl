{{/*
Names, labels, images and the pieces every pod shares, defined once.
*/}}

{{/* The chart name, or nameOverride. */}}
{{- define "occupancy-mlops.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* `<release>-<chart>` (the release name alone when it already holds the chart name), or fullnameOverride. */}}
{{- define "occupancy-mlops.fullname" -}}
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

{{/* Name of a component's objects: (dict "ctx" $ "component" "scheduler"). */}}
{{- define "occupancy-mlops.componentName" -}}
{{- printf "%s-%s" (include "occupancy-mlops.fullname" .ctx | trunc (int (sub 62 (len .component))) | trimSuffix "-") .component -}}
{{- end -}}

{{/* Name of an agent pool's objects: (dict "ctx" $ "pool" "training"). */}}
{{- define "occupancy-mlops.poolName" -}}
{{- include "occupancy-mlops.componentName" (dict "ctx" .ctx "component" (printf "agents-%s" .pool)) -}}
{{- end -}}

{{- define "occupancy-mlops.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Labels of every object: (dict "ctx" $ "component" "scheduler"). */}}
{{- define "occupancy-mlops.labels" -}}
helm.sh/chart: {{ include "occupancy-mlops.chart" .ctx }}
{{ include "occupancy-mlops.selectorLabels" . }}
app.kubernetes.io/version: {{ .ctx.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
app.kubernetes.io/part-of: occupancy-mlops
{{- with .ctx.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* Selector labels of a component's pods: (dict "ctx" $ "component" "scheduler" ["pool" "training"]). */}}
{{- define "occupancy-mlops.selectorLabels" -}}
app.kubernetes.io/name: {{ include "occupancy-mlops.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .pool }}
occupancy-mlops/pool: {{ . }}
{{- end }}
{{- end -}}

{{/*
An image reference: (dict "ctx" $ "image" "services"). `<prefix>/occupancy-mlops-<image>:<tag>`, the tag
defaulting to the chart's appVersion; a digest wins over the tag. `latest` is refused.
*/}}
{{- define "occupancy-mlops.image" -}}
{{- $images := .ctx.Values.images -}}
{{- $one := index $images .image -}}
{{- $repository := $one.repository | default (printf "%s/occupancy-mlops-%s" (trimSuffix "/" $images.prefix) .image) -}}
{{- $tag := $one.tag | default $images.tag | default .ctx.Chart.AppVersion | toString -}}
{{- if eq $tag "latest" -}}
{{- fail (printf "images.%s.tag: `latest` is refused: name a version (default: the chart's appVersion)" .image) -}}
{{- end -}}
{{- if $one.digest -}}
{{- printf "%s@%s" $repository $one.digest -}}
{{- else -}}
{{- printf "%s:%s" $repository $tag -}}
{{- end -}}
{{- end -}}

{{/* The Secret with the ClearML credentials (required whenever a pod talks to ClearML). */}}
{{- define "occupancy-mlops.clearmlSecret" -}}
{{- required "clearml.existingSecret: name an existing Secret with the ClearML API credentials (keys clearml.accessKeyKey and clearml.secretKeyKey); the chart never takes credentials as values, see docs/helm.md" .Values.clearml.existingSecret -}}
{{- end -}}

{{/* Environment every ClearML client container gets: the server and the credentials from the existing Secret. */}}
{{- define "occupancy-mlops.clearmlEnv" -}}
- name: CLEARML_API_HOST
  value: {{ .Values.clearml.apiHost | quote }}
- name: CLEARML_WEB_HOST
  value: {{ .Values.clearml.webHost | quote }}
- name: CLEARML_FILES_HOST
  value: {{ .Values.clearml.filesHost | quote }}
- name: CLEARML_API_ACCESS_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "occupancy-mlops.clearmlSecret" . }}
      key: {{ .Values.clearml.accessKeyKey }}
- name: CLEARML_API_SECRET_KEY
  valueFrom:
    secretKeyRef:
      name: {{ include "occupancy-mlops.clearmlSecret" . }}
      key: {{ .Values.clearml.secretKeyKey }}
- name: CLEARML_OFFLINE_MODE
  value: "0"
- name: HOME
  value: /home/app
- name: PYTHONDONTWRITEBYTECODE
  value: "1"
- name: PYTHONUNBUFFERED
  value: "1"
{{- end -}}

{{/* Pod-level security context (non-root, seccomp RuntimeDefault). */}}
{{- define "occupancy-mlops.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
fsGroup: {{ .Values.securityContext.fsGroup }}
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/* Container security context: non-root, read-only root filesystem, no privilege escalation, all capabilities dropped. */}}
{{- define "occupancy-mlops.containerSecurityContext" -}}
runAsNonRoot: true
runAsUser: {{ .Values.securityContext.runAsUser }}
runAsGroup: {{ .Values.securityContext.runAsGroup }}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
privileged: false
capabilities:
  drop:
    - ALL
seccompProfile:
  type: RuntimeDefault
{{- end -}}

{{/*
What every pod spec shares: (dict "ctx" $ "serviceAccount" NAME "token" false): its ServiceAccount (API
token mounted only where the component calls the Kubernetes API), the security context and the image pull
Secrets (existing ones, named in values).
*/}}
{{- define "occupancy-mlops.podCommon" -}}
serviceAccountName: {{ .serviceAccount }}
automountServiceAccountToken: {{ .token | default false }}
securityContext:
  {{- include "occupancy-mlops.podSecurityContext" .ctx | nindent 2 }}
{{- with .ctx.Values.images.pullSecrets }}
imagePullSecrets:
{{- range . }}
  - name: {{ . }}
{{- end }}
{{- end }}
{{- end -}}

{{/* Writable scratch volumes of a read-only container: /tmp and $HOME (ClearML's configuration and cache). */}}
{{- define "occupancy-mlops.scratchVolumes" -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .sizeLimit | default "256Mi" }}
- name: home
  emptyDir:
    sizeLimit: {{ .sizeLimit | default "256Mi" }}
{{- end -}}

{{- define "occupancy-mlops.scratchMounts" -}}
- name: tmp
  mountPath: /tmp
- name: home
  mountPath: /home/app
{{- end -}}

{{/* Node placement of a component: its values (nodeSelector, tolerations, affinity). */}}
{{- define "occupancy-mlops.placement" -}}
{{- with .nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{/* HTTP probes on /healthz (liveness, startup) and /readyz (readiness), on the named port `http`. */}}
{{- define "occupancy-mlops.httpProbes" -}}
startupProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 5
  failureThreshold: {{ .startupFailures | default 24 }}
livenessProbe:
  httpGet:
    path: /healthz
    port: http
  periodSeconds: 10
  timeoutSeconds: 3
  failureThreshold: 3
readinessProbe:
  httpGet:
    path: /readyz
    port: http
  periodSeconds: 5
  timeoutSeconds: 3
  failureThreshold: 3
{{- end -}}

{{/* sha256 of a rendered ConfigMap's data, for a checksum annotation that restarts pods when their settings change. */}}
{{- define "occupancy-mlops.configChecksum" -}}
{{- $rendered := include (print .ctx.Template.BasePath .path) .ctx | fromYaml -}}
{{- dig "data" dict $rendered | toYaml | sha256sum -}}
{{- end -}}

{{/*
Settings files, rendered once and used by the components' ConfigMaps and by the policy hook, which
checks them with the services' own loaders before an install or upgrade changes anything.
*/}}
{{- define "occupancy-mlops.schedulerSettings" -}}
{{- $settings := merge (dict "project" .Values.clearml.project "host" "0.0.0.0" "port" (int .Values.scheduler.port)) (deepCopy .Values.scheduler.config) -}}
{{- toYaml $settings -}}
{{- end -}}

{{- define "occupancy-mlops.canarySettings" -}}
{{- $fixed := dict "project" .Values.clearml.project "service_id" .Values.serving.serviceTaskId "service_name" .Values.serving.serviceName "host" "0.0.0.0" "port" (int .Values.canary.port) -}}
{{- toYaml (merge $fixed (deepCopy .Values.canary.config)) -}}
{{- end -}}

{{/* The pools the autoscaler looks after: every enabled pool when agents are scaled by it or by KEDA. */}}
{{- define "occupancy-mlops.autoscalerSettings" -}}
{{- $pools := list -}}
{{- range $name, $pool := .Values.agents.pools -}}
{{- if $pool.enabled -}}
{{- $pools = append $pools (dict "queue" $pool.queue "deployment" (include "occupancy-mlops.poolName" (dict "ctx" $ "pool" $name)) "min_replicas" (int $pool.minReplicas) "max_replicas" (int $pool.maxReplicas) "tasks_per_replica" (int $pool.tasksPerReplica)) -}}
{{- end -}}
{{- end -}}
{{- $settings := merge (dict "namespace" .Release.Namespace "pools" $pools "dry_run" (eq .Values.agents.scaling "keda") "host" "0.0.0.0" "port" (int .Values.autoscaler.port)) (deepCopy .Values.autoscaler.config) -}}
{{- toYaml $settings -}}
{{- end -}}

{{/* True when the autoscaler runs: it is enabled, agents run, and they are scaled by it or by KEDA. */}}
{{- define "occupancy-mlops.autoscalerOn" -}}
{{- if and .Values.autoscaler.enabled .Values.agents.enabled (ne .Values.agents.scaling "none") -}}true{{- end -}}
{{- end -}}

{{/* The names of the enabled pools' Deployments, for the autoscaler's Role. */}}
{{- define "occupancy-mlops.poolDeployments" -}}
{{- range $name, $pool := .Values.agents.pools -}}
{{- if $pool.enabled }}
- {{ include "occupancy-mlops.poolName" (dict "ctx" $ "pool" $name) }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* Egress every ClearML client needs: DNS and the ClearML servers. */}}
{{- define "occupancy-mlops.baseEgress" -}}
- ports:
    - port: 53
      protocol: UDP
    - port: 53
      protocol: TCP
- ports:
    {{- range .Values.networkPolicy.clearmlPorts }}
    - port: {{ . }}
      protocol: TCP
    {{- end }}
  {{- with .Values.networkPolicy.clearmlPeers }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* Ingress to a metrics port: (dict "ctx" $ "port" 9090). */}}
{{- define "occupancy-mlops.metricsIngress" -}}
- ports:
    - port: {{ .port }}
      protocol: TCP
  {{- with .ctx.Values.networkPolicy.metricsFrom }}
  from:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{/* The serving service's name and port as other pods reach it. */}}
{{- define "occupancy-mlops.servingUrl" -}}
{{- printf "http://%s.%s.svc:%d" (include "occupancy-mlops.componentName" (dict "ctx" . "component" "serving")) .Release.Namespace (int .Values.serving.service.port) -}}
{{- end -}}
