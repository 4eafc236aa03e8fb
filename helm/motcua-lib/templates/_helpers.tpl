{{/*
Names, labels, the image and the effective settings of one motcua service.

Every template here is called with a service's context (see _context.tpl): .Service is the
service's name, .Values its effective values, .Global the umbrella's `global` block.
*/}}

{{- define "motcua-lib.module" -}}
{{- printf "motcua_%s" .Service -}}
{{- end -}}

{{- define "motcua-lib.envPrefix" -}}
{{- printf "MOTCUA_%s_" (upper .Service) -}}
{{- end -}}

{{- define "motcua-lib.name" -}}
{{- default .Service .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "motcua-lib.fullname" -}}
{{- if .Values.fullnameOverride -}}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- $name := default .Service .Values.nameOverride -}}
{{- if contains $name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "motcua-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. Call with (dict "ctx" . "component" "server|migration|test|..."). */}}
{{- define "motcua-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "motcua-lib.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/*
Standard labels. Call with (dict "ctx" . "component" "..."). Also used by the suite-wide
objects, whose context is the root context: they pass "name".
*/}}
{{- define "motcua-lib.labels" -}}
helm.sh/chart: {{ include "motcua-lib.chart" .ctx }}
{{- if .name }}
app.kubernetes.io/name: {{ .name }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- else }}
{{ include "motcua-lib.selectorLabels" . }}
{{- end }}
{{- with .ctx.Chart.AppVersion }}
app.kubernetes.io/version: {{ . | quote }}
{{- end }}
app.kubernetes.io/part-of: motcua
app.kubernetes.io/managed-by: {{ .ctx.Release.Service }}
{{- end -}}

{{/*
HTTP endpoints that outside systems call (payment: gateway callbacks; notify: delivery receipts):
every key of .Values.ports besides grpc and metrics. Key `callback` becomes port name
http-callback and setting CALLBACK_PORT. Use as (include "motcua-lib.httpPorts" . | fromYaml).ports.
*/}}
{{- define "motcua-lib.httpPorts" -}}
{{- $out := list -}}
{{- range $key, $port := .Values.ports -}}
{{- if not (has $key (list "grpc" "metrics")) -}}
{{- $out = append $out (dict "key" $key "name" (printf "http-%s" $key) "port" ($port | int64) "env" (printf "%s_PORT" (upper $key))) -}}
{{- end -}}
{{- end -}}
{{- toYaml (dict "ports" $out) -}}
{{- end -}}

{{- define "motcua-lib.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "motcua-lib.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{/* The registry an image comes from: the service's own, else global.imageRegistry. */}}
{{- define "motcua-lib.imageRegistry" -}}
{{- .Values.image.registry | default .Global.imageRegistry | default "" | trimSuffix "/" -}}
{{- end -}}

{{/*
The image reference: [<registry>/]<repository>, then @<digest> when a digest is given (it wins
over the tag), else :<tag>, the tag defaulting to the umbrella chart's appVersion.
*/}}
{{- define "motcua-lib.image" -}}
{{- $registry := include "motcua-lib.imageRegistry" . -}}
{{- $ref := .Values.image.repository -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" $registry $ref -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion | toString) -}}
{{- end -}}
{{- end -}}

{{- define "motcua-lib.imagePullSecrets" -}}
{{- $secrets := concat (.Global.imagePullSecrets | default list) (.Values.imagePullSecrets | default list) -}}
{{- with $secrets }}
imagePullSecrets:
  {{- toYaml . | nindent 2 }}
{{- end -}}
{{- end -}}

{{/*
Monitoring switch. `enabled` is true, false or "auto"; "auto" renders the object only when the
cluster serves the Prometheus Operator API (monitoring.coreos.com/v1).
Call with (dict "ctx" . "enabled" <value>). Prints "true" or nothing.
*/}}
{{- define "motcua-lib.monitoringOn" -}}
{{- if kindIs "bool" .enabled -}}
{{- if .enabled }}true{{ end -}}
{{- else if .ctx.Capabilities.APIVersions.Has "monitoring.coreos.com/v1" -}}
true
{{- end -}}
{{- end -}}

{{/*
The effective settings of this service: global values (shared by the suite) with this service's
overrides applied. Returned as YAML; use with `include "motcua-lib.settings" . | fromYaml`.
*/}}
{{- define "motcua-lib.settings" -}}
{{- $g := .Global -}}
{{- $gk := $g.kafka | default dict -}}
{{- $gsasl := $gk.sasl | default dict -}}
{{- $gssl := $gk.ssl | default dict -}}
{{- $lk := .Values.kafka | default dict -}}
{{- $lsasl := $lk.sasl | default dict -}}
{{- $gj := $g.jwt | default dict -}}
{{- $gt := $g.tls | default dict -}}
{{- $lt := .Values.tls | default dict -}}
{{- $go := $g.otlp | default dict -}}
{{- $gm := $g.monitoring | default dict -}}
environment: {{ $g.environment | default "prod" | quote }}
kafka:
  bootstrap: {{ $gk.bootstrap | default "" | quote }}
  securityProtocol: {{ $gk.securityProtocol | default "PLAINTEXT" | quote }}
  saslMechanism: {{ $gsasl.mechanism | default "" | quote }}
  saslUsername: {{ $lsasl.username | default $gsasl.username | default "" | quote }}
  saslPasswordSecret: {{ $lsasl.existingSecret | default $gsasl.existingSecret | default "" | quote }}
  saslPasswordKey: {{ $lsasl.passwordKey | default $gsasl.passwordKey | default "password" | quote }}
  caSecret: {{ $gssl.caSecret | default "" | quote }}
  caKey: {{ $gssl.caKey | default "ca.crt" | quote }}
  topicPartitions: {{ $gk.topicPartitions | default 0 | int64 }}
  createTopics: {{ ternary $gk.createTopics true (hasKey $gk "createTopics") }}
otlpEndpoint: {{ $go.endpoint | default "" | quote }}
logLevel: {{ .Values.logLevel | default $g.logLevel | default "INFO" | quote }}
jwt:
  issuer: {{ $gj.issuer | default "" | quote }}
  audience: {{ $gj.audience | default "" | quote }}
  publicKeySecret: {{ $gj.publicKeySecret | default "" | quote }}
  jwksUrl: {{ $gj.jwksUrl | default "" | quote }}
  publicKeyKey: {{ $gj.publicKeyKey | default "public.pem" | quote }}
tls:
  enabled: {{ ternary $lt.enabled (ternary $gt.enabled false (hasKey $gt "enabled")) (hasKey $lt "enabled") }}
  existingSecret: {{ $lt.existingSecret | default $gt.existingSecret | default "" | quote }}
  certKey: {{ $gt.certKey | default "tls.crt" | quote }}
  keyKey: {{ $gt.keyKey | default "tls.key" | quote }}
  clientCAKey: {{ ternary $gt.clientCAKey "ca.crt" (hasKey $gt "clientCAKey") | quote }}
monitoring:
  serviceMonitor: {{ include "motcua-lib.monitoringOn" (dict "ctx" . "enabled" (dig "serviceMonitor" "enabled" "auto" $gm)) | eq "true" }}
  prometheusRule: {{ include "motcua-lib.monitoringOn" (dict "ctx" . "enabled" (dig "prometheusRule" "enabled" "auto" $gm)) | eq "true" }}
  interval: {{ dig "serviceMonitor" "interval" "30s" $gm | quote }}
  scrapeTimeout: {{ dig "serviceMonitor" "scrapeTimeout" "10s" $gm | quote }}
  serviceMonitorLabels: {{ dig "serviceMonitor" "labels" dict $gm | toJson }}
  prometheusRuleLabels: {{ dig "prometheusRule" "labels" dict $gm | toJson }}
  runbookBaseUrl: {{ $gm.runbookBaseUrl | default "docs/runbooks" | quote }}
grpcHealthProbeImage: {{ $g.grpcHealthProbeImage | default "ghcr.io/grpc-ecosystem/grpc-health-probe:v0.4.53" | quote }}
{{- end -}}

{{/*
terminationGracePeriodSeconds, derived: the preStop sleep, then the service's one shutdown
deadline (shutdownGraceSeconds, counted from SIGTERM: docs/adr/0010), then 5 s: the kit's exit
watchdog fires 1 s after the deadline, and the kubelet needs a moment to run the preStop exec
and deliver the signal. An explicit terminationGracePeriodSeconds may only be longer
(motcua-lib.validate refuses a shorter one).
*/}}
{{- define "motcua-lib.minTerminationGrace" -}}
{{- add (.Values.preStopSleepSeconds | default 0 | int64) (.Values.shutdownGraceSeconds | int64) 5 -}}
{{- end -}}

{{- define "motcua-lib.terminationGrace" -}}
{{- if kindIs "invalid" .Values.terminationGracePeriodSeconds -}}
{{- include "motcua-lib.minTerminationGrace" . -}}
{{- else -}}
{{- .Values.terminationGracePeriodSeconds | int64 -}}
{{- end -}}
{{- end -}}
