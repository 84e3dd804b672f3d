{{/* Names ---------------------------------------------------------------------------------- */}}
{{- define "toolbag.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "toolbag.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Chart.Name .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "toolbag.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "toolbag.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "toolbag.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* Labels: common, and selector labels for one component ("worker", "supervisor", ...) */}}
{{- define "toolbag.labels" -}}
helm.sh/chart: {{ include "toolbag.chart" . }}
app.kubernetes.io/name: {{ include "toolbag.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: toolbag
{{- end -}}

{{- define "toolbag.selectorLabels" -}}
app.kubernetes.io/name: {{ include "toolbag.name" .root }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- with .provider }}
toolbag.io/provider: {{ . }}
{{- end }}
{{- end -}}

{{- define "toolbag.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{/* Redis ---------------------------------------------------------------------------------- */}}
{{- define "toolbag.redis.host" -}}
{{- printf "%s-redis" (include "toolbag.fullname" .) -}}
{{- end -}}

{{/* TOOLBAG_REDIS_URL as an env entry: the bundled Redis, a URL, or a Secret reference. */}}
{{- define "toolbag.redis.env" -}}
{{- if .Values.redis.bundled.enabled }}
- name: TOOLBAG_REDIS_URL
  value: {{ printf "redis://%s:6379/0" (include "toolbag.redis.host" .) | quote }}
{{- else if .Values.redis.urlSecret.name }}
- name: TOOLBAG_REDIS_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.redis.urlSecret.name }}
      key: {{ required "redis.urlSecret.key is required with redis.urlSecret.name" .Values.redis.urlSecret.key }}
{{- else if .Values.redis.url }}
- name: TOOLBAG_REDIS_URL
  value: {{ .Values.redis.url | quote }}
{{- else }}
{{- fail "Redis: enable redis.bundled, or set redis.url or redis.urlSecret.name" }}
{{- end }}
{{- end -}}

{{/* The longest attempt in seconds: worker.longestAttemptSeconds, or the config's longest tier. */}}
{{- define "toolbag.longestAttemptSeconds" -}}
{{- $longest := .Values.worker.longestAttemptSeconds | float64 -}}
{{- range $tier, $settings := ((.Values.config.content).tiers | default dict) -}}
{{- $total := (($settings | default dict).total_timeout_s | default 0) | float64 -}}
{{- if gt $total $longest }}{{ $longest = $total }}{{ end -}}
{{- end -}}
{{- $longest -}}
{{- end -}}

{{/* Env every toolbag process gets. */}}
{{- define "toolbag.env" -}}
{{- include "toolbag.redis.env" . }}
{{- if or .Values.config.content .Values.config.existingConfigMap }}
- name: TOOLBAG_CONFIG
  value: /etc/toolbag/config/toolbag.yaml
{{- end }}
{{- if .Values.skills.files }}
- name: TOOLBAG_SKILLS_DIR
  value: /etc/toolbag/skills
{{- end }}
{{- if .Values.governance.policy }}
- name: TOOLBAG_POLICY
  value: /etc/toolbag/governance/policy.yaml
{{- end }}
{{- if .Values.governance.tools }}
- name: TOOLBAG_TOOLS
  value: /etc/toolbag/governance/tools.yaml
{{- end }}
{{- if .Values.simulator.enabled }}
- name: TOOLBAG_SIMULATOR_URL
  value: {{ printf "http://%s-simulator:%d" (include "toolbag.fullname" .) (.Values.simulator.port | int) | quote }}
{{- end }}
{{- end -}}

{{/* Volumes and mounts for config, skills, governance files and a writable /tmp (the root filesystem is read-only). */}}
{{- define "toolbag.volumes" -}}
- name: tmp
  emptyDir: {}
{{- if or .Values.config.content .Values.config.existingConfigMap }}
- name: config
  configMap:
    name: {{ default (printf "%s-config" (include "toolbag.fullname" .)) .Values.config.existingConfigMap }}
    items:
      - key: toolbag.yaml
        path: toolbag.yaml
{{- end }}
{{- if or .Values.governance.policy .Values.governance.tools }}
- name: governance
  configMap:
    name: {{ include "toolbag.fullname" . }}-governance
{{- end }}
{{- if .Values.skills.files }}
- name: skills
  configMap:
    name: {{ include "toolbag.fullname" . }}-skills
    items:
      {{- range $path, $_ := .Values.skills.files }}
      - key: {{ $path | replace "/" "__" }}
        path: {{ $path }}
      {{- end }}
{{- end }}
{{- end -}}

{{- define "toolbag.volumeMounts" -}}
- name: tmp
  mountPath: /tmp
{{- if or .Values.config.content .Values.config.existingConfigMap }}
- name: config
  mountPath: /etc/toolbag/config
  readOnly: true
{{- end }}
{{- if .Values.skills.files }}
- name: skills
  mountPath: /etc/toolbag/skills
  readOnly: true
{{- end }}
{{- if or .Values.governance.policy .Values.governance.tools }}
- name: governance
  mountPath: /etc/toolbag/governance
  readOnly: true
{{- end }}
{{- end -}}

{{/* Pod annotations that roll pods when the config or skills change. */}}
{{- define "toolbag.checksums" -}}
checksum/config: {{ toYaml .Values.config.content | sha256sum }}
checksum/skills: {{ toYaml .Values.skills.files | sha256sum }}
checksum/governance: {{ toYaml .Values.governance | sha256sum }}
{{- end -}}

{{/* Preferred anti-affinity over nodes for one component, unless the user gave an affinity. */}}
{{- define "toolbag.affinity" -}}
{{- if .affinity }}
{{- toYaml .affinity }}
{{- else }}
podAntiAffinity:
  preferredDuringSchedulingIgnoredDuringExecution:
    - weight: 100
      podAffinityTerm:
        topologyKey: kubernetes.io/hostname
        labelSelector:
          matchLabels:
            {{- include "toolbag.selectorLabels" . | nindent 12 }}
{{- end }}
{{- end -}}

{{/* Provider name check: it becomes part of object names and Redis list names. */}}
{{- define "toolbag.checkProviderName" -}}
{{- if not (regexMatch "^[a-z0-9]([-a-z0-9]*[a-z0-9])?$" .) -}}
{{- fail (printf "providers.%s: a provider name must be lowercase letters, digits and '-'" .) -}}
{{- end -}}
{{- end -}}
