{{/*
Names, labels and the effective settings of one motcua service.

Every template here is called with the including chart's root context (`.`). The service a
chart deploys is the chart's own name: dossier, notify, payment or audit. From it follow the
Python module (`motcua_<svc>`), the environment prefix (`MOTCUA_<SVC>_`) and the image name.
*/}}

{{- define "motcua-lib.service" -}}
{{- .Chart.Name -}}
{{- end -}}

{{- define "motcua-lib.module" -}}
{{- printf "motcua_%s" .Chart.Name -}}
{{- end -}}

{{- define "motcua-lib.envPrefix" -}}
{{- printf "MOTCUA_%s_" (upper .Chart.Name) -}}
{{- end -}}

{{- define "motcua-lib.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "motcua-lib.fullname" -}}
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

{{- define "motcua-lib.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{/* Selector labels. Call with (dict "ctx" . "component" "server|migration|test|..."). */}}
{{- define "motcua-lib.selectorLabels" -}}
app.kubernetes.io/name: {{ include "motcua-lib.name" .ctx }}
app.kubernetes.io/instance: {{ .ctx.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{/* Standard labels. Call with (dict "ctx" . "component" "..."). */}}
{{- define "motcua-lib.labels" -}}
helm.sh/chart: {{ include "motcua-lib.chart" .ctx }}
{{ include "motcua-lib.selectorLabels" . }}
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

{{- define "motcua-lib.image" -}}
{{- $g := .Values.global | default dict -}}
{{- $registry := .Values.image.registry | default $g.imageRegistry | default "" -}}
{{- $ref := .Values.image.repository -}}
{{- if $registry -}}
{{- $ref = printf "%s/%s" (trimSuffix "/" $registry) $ref -}}
{{- end -}}
{{- if .Values.image.digest -}}
{{- printf "%s@%s" $ref .Values.image.digest -}}
{{- else -}}
{{- printf "%s:%s" $ref (.Values.image.tag | default .Chart.AppVersion) -}}
{{- end -}}
{{- end -}}

{{- define "motcua-lib.imagePullSecrets" -}}
{{- $g := .Values.global | default dict -}}
{{- $secrets := concat ($g.imagePullSecrets | default list) (.Values.imagePullSecrets | default list) -}}
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
{{- $g := .Values.global | default dict -}}
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
kafka:
  bootstrap: {{ $gk.bootstrap | default "" | quote }}
  securityProtocol: {{ $gk.securityProtocol | default "PLAINTEXT" | quote }}
  saslMechanism: {{ $gsasl.mechanism | default "" | quote }}
  saslUsername: {{ $lsasl.username | default $gsasl.username | default "" | quote }}
  saslPasswordSecret: {{ $lsasl.existingSecret | default $gsasl.existingSecret | default "" | quote }}
  saslPasswordKey: {{ $lsasl.passwordKey | default $gsasl.passwordKey | default "password" | quote }}
  caSecret: {{ $gssl.caSecret | default "" | quote }}
  caKey: {{ $gssl.caKey | default "ca.crt" | quote }}
  topicPartitions: {{ .Values.topicPartitions | default $gk.topicPartitions | default 0 | int64 }}
  createTopics: {{ ternary $gk.createTopics true (hasKey $gk "createTopics") }}
otlpEndpoint: {{ $go.endpoint | default "" | quote }}
logLevel: {{ .Values.logLevel | default $g.logLevel | default "INFO" | quote }}
jwt:
  issuer: {{ $gj.issuer | default "" | quote }}
  audience: {{ $gj.audience | default "" | quote }}
  publicKeySecret: {{ $gj.publicKeySecret | default "" | quote }}
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

{{/* Checks that cannot be expressed in values.schema.json (they combine global and local values). */}}
{{- define "motcua-lib.validate" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $svc := include "motcua-lib.service" . -}}
{{- if not $s.kafka.bootstrap -}}
{{- fail (printf "motcua %s: global.kafka.bootstrap is required (e.g. kafka:9092)" $svc) -}}
{{- end -}}
{{- if not .Values.database.existingSecret -}}
{{- fail (printf "motcua %s: %s.database.existingSecret is required: the name of the Secret holding the database URL" $svc $svc) -}}
{{- end -}}
{{- if and $s.tls.enabled (not $s.tls.existingSecret) -}}
{{- fail (printf "motcua %s: TLS is on but neither %s.tls.existingSecret nor global.tls.existingSecret names the Secret with the certificate" $svc $svc) -}}
{{- end -}}
{{- if and (ne $s.kafka.securityProtocol "PLAINTEXT") (ne $s.kafka.securityProtocol "SSL") (not $s.kafka.saslMechanism) -}}
{{- fail (printf "motcua %s: global.kafka.sasl.mechanism is required when global.kafka.securityProtocol is %s" $svc $s.kafka.securityProtocol) -}}
{{- end -}}
{{- /* Secrets are never values: a setting named like one must come from a Secret. */ -}}
{{- $secretish := "(^|_)(PASSWORD|SECRET|TOKEN|API_KEY|PRIVATE_KEY|DATABASE_URL)$" -}}
{{- range $suffix, $_ := .Values.config -}}
{{- if regexMatch $secretish $suffix -}}
{{- fail (printf "motcua %s: %s.config.%s looks like a secret, and values never hold secrets: use %s.secretEnv.%s: {secretName: <Secret>, key: <key>}" $svc $svc $suffix $svc $suffix) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if and (regexMatch $secretish .name) (hasKey . "value") -}}
{{- fail (printf "motcua %s: %s.extraEnv %s has a literal value, and values never hold secrets: use valueFrom.secretKeyRef (or %s.secretEnv)" $svc $svc .name $svc) -}}
{{- end -}}
{{- end -}}
{{- end -}}
