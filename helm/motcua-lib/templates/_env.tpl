{{/*
The container's runtime contract: environment (MOTCUA_<SVC>_*), secret references and the files
mounted from Secrets. Shared by the Deployment and the migration Job so both see the same
configuration.
*/}}

{{- define "motcua-lib.paths" -}}
tmp: /tmp
jwt: /etc/motcua/jwt
tls: /etc/motcua/tls
kafkaCA: /etc/motcua/kafka-ca
files: /etc/motcua/files
{{- end -}}

{{/*
Non-secret environment as a map (env name -> string). Empty settings are left out so the
service's own default applies. Becomes the ConfigMap's data, and the migration Job's env (the
Job runs before the ConfigMap exists on first install).
*/}}
{{- define "motcua-lib.configData" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $paths := include "motcua-lib.paths" . | fromYaml -}}
{{- $p := include "motcua-lib.envPrefix" . -}}
{{- $d := dict -}}
{{- /* The kit binds 127.0.0.1 by default (laptop); in a pod the kubelet and peers connect from outside. */ -}}
{{- $_ := set $d (print $p "BIND_HOST") "0.0.0.0" -}}
{{- $_ := set $d (print $p "GRPC_PORT") (.Values.ports.grpc | int64 | toString) -}}
{{- $_ := set $d (print $p "METRICS_PORT") (.Values.ports.metrics | int64 | toString) -}}
{{- range (include "motcua-lib.httpPorts" . | fromYaml).ports -}}
{{- $_ := set $d (print $p .env) (toString .port) -}}
{{- end -}}
{{- $_ := set $d (print $p "KAFKA_BOOTSTRAP") $s.kafka.bootstrap -}}
{{- $_ := set $d (print $p "KAFKA_SECURITY_PROTOCOL") $s.kafka.securityProtocol -}}
{{- $_ := set $d (print $p "KAFKA_CREATE_TOPICS") (toString $s.kafka.createTopics) -}}
{{- with $s.kafka.saslMechanism }}{{ $_ := set $d (print $p "KAFKA_SASL_MECHANISM") . }}{{ end -}}
{{- with $s.kafka.saslUsername }}{{ $_ := set $d (print $p "KAFKA_SASL_USERNAME") . }}{{ end -}}
{{- if $s.kafka.caSecret }}{{ $_ := set $d (print $p "KAFKA_SSL_CAFILE") (printf "%s/%s" $paths.kafkaCA $s.kafka.caKey) }}{{ end -}}
{{- if gt (int64 $s.kafka.topicPartitions) 0 }}{{ $_ := set $d (print $p "TOPIC_PARTITIONS") (toString $s.kafka.topicPartitions) }}{{ end -}}
{{- /* Which column of the topic registry's partition counts the services use when they create topics. */ -}}
{{- $_ := set $d (print $p "ENVIRONMENT") $s.environment -}}
{{- if $s.jwt.publicKeySecret }}{{ $_ := set $d (print $p "JWT_PUBLIC_KEY_FILE") (printf "%s/%s" $paths.jwt $s.jwt.publicKeyKey) }}{{ end -}}
{{- with $s.jwt.jwksUrl }}{{ $_ := set $d (print $p "JWT_JWKS_URL") . }}{{ end -}}
{{- with $s.jwt.issuer }}{{ $_ := set $d (print $p "JWT_ISSUER") . }}{{ end -}}
{{- with $s.jwt.audience }}{{ $_ := set $d (print $p "JWT_AUDIENCE") . }}{{ end -}}
{{- if $s.tls.enabled -}}
{{- $_ := set $d (print $p "TLS_CERT_FILE") (printf "%s/%s" $paths.tls $s.tls.certKey) -}}
{{- $_ := set $d (print $p "TLS_KEY_FILE") (printf "%s/%s" $paths.tls $s.tls.keyKey) -}}
{{- with $s.tls.clientCAKey }}{{ $_ := set $d (print $p "TLS_CLIENT_CA_FILE") (printf "%s/%s" $paths.tls .) }}{{ end -}}
{{- end -}}
{{- with $s.otlpEndpoint }}{{ $_ := set $d (print $p "OTLP_ENDPOINT") . }}{{ end -}}
{{- $_ := set $d (print $p "LOG_LEVEL") $s.logLevel -}}
{{- /* The one shutdown deadline (docs/adr/0010); terminationGracePeriodSeconds is derived from it. */ -}}
{{- $_ := set $d (print $p "SHUTDOWN_GRACE_SECONDS") (.Values.shutdownGraceSeconds | int64 | toString) -}}
{{- range $suffix, $ref := .Values.secretFiles -}}
{{- $_ := set $d (print $p $suffix) (printf "%s/%s/%s" $paths.files (lower $suffix | replace "_" "-") $ref.key) -}}
{{- end -}}
{{- range $suffix, $value := .Values.config -}}
{{- $_ := set $d (print $p $suffix) (toString $value) -}}
{{- end -}}
{{- toYaml $d -}}
{{- end -}}

{{/* Environment taken from Secrets (secretKeyRef only: values never hold a secret), then extraEnv. */}}
{{- define "motcua-lib.secretEnv" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $p := include "motcua-lib.envPrefix" . -}}
- name: {{ $p }}DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ .Values.database.existingSecret | quote }}
      key: {{ .Values.database.urlKey | default "url" | quote }}
{{- if $s.kafka.saslPasswordSecret }}
- name: {{ $p }}KAFKA_SASL_PASSWORD
  valueFrom:
    secretKeyRef:
      name: {{ $s.kafka.saslPasswordSecret | quote }}
      key: {{ $s.kafka.saslPasswordKey | quote }}
{{- end }}
{{- range $suffix, $ref := .Values.secretEnv }}
- name: {{ $p }}{{ $suffix }}
  valueFrom:
    secretKeyRef:
      name: {{ $ref.secretName | quote }}
      key: {{ $ref.key | quote }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/*
The migration role's URL (database.migrationSecret, the schema owner): for the migration Job
only, never the Deployment, whose runtime role reads and writes rows but runs no DDL
(docs/adr/0077-postgres-roles.md). `migrate` connects with it when set; unset, with DATABASE_URL.
*/}}
{{- define "motcua-lib.migrationSecretEnv" -}}
{{- with .Values.database.migrationSecret }}
- name: {{ include "motcua-lib.envPrefix" $ }}MIGRATION_DATABASE_URL
  valueFrom:
    secretKeyRef:
      name: {{ . | quote }}
      key: {{ $.Values.database.migrationUrlKey | default "url" | quote }}
{{- end }}
{{- end -}}

{{/* Env as a list for a container whose ConfigMap may not exist yet (the migration hook). */}}
{{- define "motcua-lib.inlineEnv" -}}
{{- range $name, $value := (include "motcua-lib.configData" . | fromYaml) }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{ include "motcua-lib.secretEnv" . }}
{{- end -}}

{{- define "motcua-lib.volumes" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
- name: tmp
  emptyDir:
    sizeLimit: {{ .Values.tmpSizeLimit | default "256Mi" }}
{{- if $s.jwt.publicKeySecret }}
- name: jwt
  secret:
    secretName: {{ $s.jwt.publicKeySecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $s.jwt.publicKeyKey | quote }}
        path: {{ $s.jwt.publicKeyKey | quote }}
{{- end }}
{{- if $s.tls.enabled }}
- name: tls
  secret:
    secretName: {{ $s.tls.existingSecret | quote }}
    defaultMode: 0440
{{- end }}
{{- if $s.kafka.caSecret }}
- name: kafka-ca
  secret:
    secretName: {{ $s.kafka.caSecret | quote }}
    defaultMode: 0440
    items:
      - key: {{ $s.kafka.caKey | quote }}
        path: {{ $s.kafka.caKey | quote }}
{{- end }}
{{- range $suffix, $ref := .Values.secretFiles }}
- name: file-{{ lower $suffix | replace "_" "-" }}
  secret:
    secretName: {{ $ref.secretName | quote }}
    defaultMode: 0440
    items:
      - key: {{ $ref.key | quote }}
        path: {{ $ref.key | quote }}
{{- end }}
{{- end -}}

{{- define "motcua-lib.volumeMounts" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $paths := include "motcua-lib.paths" . | fromYaml -}}
- name: tmp
  mountPath: {{ $paths.tmp }}
{{- if $s.jwt.publicKeySecret }}
- name: jwt
  mountPath: {{ $paths.jwt }}
  readOnly: true
{{- end }}
{{- if $s.tls.enabled }}
- name: tls
  mountPath: {{ $paths.tls }}
  readOnly: true
{{- end }}
{{- if $s.kafka.caSecret }}
- name: kafka-ca
  mountPath: {{ $paths.kafkaCA }}
  readOnly: true
{{- end }}
{{- range $suffix, $ref := .Values.secretFiles }}
- name: file-{{ lower $suffix | replace "_" "-" }}
  mountPath: {{ $paths.files }}/{{ lower $suffix | replace "_" "-" }}
  readOnly: true
{{- end }}
{{- end -}}

{{/*
Security contexts: the values' podSecurityContext and containerSecurityContext (restricted Pod
Security Standard by default: non-root UID 10001, read-only root filesystem, no privilege
escalation, every capability dropped, RuntimeDefault seccomp). A null in the values removes a
key, e.g. runAsUser, runAsGroup and fsGroup on OpenShift, whose restricted-v2 SCC assigns them
from the namespace's range (values-openshift.yaml). For every pod the chart creates: the
Deployment's, the migration Job's and the `helm test` pod.
*/}}
{{- define "motcua-lib.podSecurityContext" -}}
{{- toYaml (.Values.podSecurityContext | default dict) -}}
{{- end -}}

{{- define "motcua-lib.containerSecurityContext" -}}
{{- toYaml (.Values.containerSecurityContext | default dict) -}}
{{- end -}}
