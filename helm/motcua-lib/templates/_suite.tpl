{{/*
Suite-wide objects, included by the umbrella chart (helm/motcua): the Kafka topics and the
Grafana dashboard.
*/}}

{{/*
Strimzi KafkaTopic objects for the four event topics and their .dlq companions (off by default:
most clusters manage topics outside the application's release). Kept on `helm uninstall`
unless kafkaTopics.keepOnUninstall is false: deleting a KafkaTopic deletes its data.

Names and retention come from the topic registry (topics.json, written by `make generate` from
contracts/topics.yaml). One value sets the partitions of the four event topics:
global.kafka.topicPartitions; 0 takes the registry's count for global.environment. A .dlq
topic has the registry's DLQ partitions. apiVersion: kafka.strimzi.io/v1 (Strimzi 0.49 and
later; the only version Strimzi 1.0 serves) or kafka.strimzi.io/v1beta2 (older operators).
enabled: true refuses to render when the cluster does not serve that API (a release whose topics
can never exist should fail at install, not at the first consumer); "auto" renders the topics
only when it is served, as the monitoring objects do.
*/}}
{{- define "motcua-lib.kafkatopics" -}}
{{- $t := .Values.kafkaTopics -}}
{{- $api := $t.apiVersion | default "kafka.strimzi.io/v1" -}}
{{- $served := .Capabilities.APIVersions.Has $api -}}
{{- if and (kindIs "bool" $t.enabled) $t.enabled (not $served) -}}
{{- fail (printf "motcua: kafkaTopics.enabled is true, but the cluster does not serve %s (Strimzi's KafkaTopic). Install Strimzi first (0.49+ serves kafka.strimzi.io/v1; set kafkaTopics.apiVersion=kafka.strimzi.io/v1beta2 for older operators), or set kafkaTopics.enabled=false and create the topics yourself. With helm template, pass --api-versions %s." $api $api) -}}
{{- end -}}
{{- if or (and (kindIs "bool" $t.enabled) $t.enabled) (and (eq (toString $t.enabled) "auto") $served) -}}
{{- if not $t.clusterName -}}
{{- fail "motcua: kafkaTopics.clusterName is required when kafkaTopics.enabled is true (the Strimzi Kafka cluster's name)" -}}
{{- end -}}
{{- $registry := .Files.Get "topics.json" | fromJson -}}
{{- if not $registry.topics -}}
{{- fail "motcua: topics.json (the topic registry, written by `make generate`) is missing from the chart" -}}
{{- end -}}
{{- $env := .Values.global.environment | default "prod" -}}
{{- $oneValue := dig "kafka" "topicPartitions" 0 .Values.global | int64 -}}
{{- range $topic := $registry.topics }}
{{- range $suffix := list "" ".dlq" }}
{{- $name := printf "%s%s" $topic.name $suffix }}
{{- $partitions := ternary $topic.dlq.partitions (ternary $oneValue (get $topic.partitions $env) (gt $oneValue 0)) (eq $suffix ".dlq") }}
{{- $days := ternary $topic.dlq.retention_days $topic.retention_days (eq $suffix ".dlq") }}
{{- $override := get ($t.overrides | default dict) $name | default dict }}
---
apiVersion: {{ $api }}
kind: KafkaTopic
metadata:
  name: {{ $name }}
  namespace: {{ $t.namespace | default $.Release.Namespace }}
  labels:
    strimzi.io/cluster: {{ $t.clusterName | quote }}
    {{- include "motcua-lib.labels" (dict "ctx" $ "name" "motcua" "component" "kafka-topic") | nindent 4 }}
  {{- if $t.keepOnUninstall }}
  annotations:
    helm.sh/resource-policy: keep
  {{- end }}
spec:
  topicName: {{ $name }}
  partitions: {{ $partitions | int64 }}
  replicas: {{ $override.replicas | default $t.replicas | int64 }}
  config:
    retention.ms: {{ $override.retentionMs | default (mul $days 86400000) | int64 }}
    min.insync.replicas: {{ $t.minInsyncReplicas | int64 }}
    cleanup.policy: delete
    {{- with $t.config }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end }}
{{- end }}
{{- end -}}
{{- end -}}

{{/* The Grafana dashboard, as a ConfigMap the Grafana sidecar picks up (label grafana_dashboard: "1"). */}}
{{- define "motcua-lib.grafana-dashboard" -}}
{{- $d := .Values.grafanaDashboard -}}
{{- if $d.enabled -}}
apiVersion: v1
kind: ConfigMap
metadata:
  name: {{ printf "%s-grafana-dashboard" .Release.Name | trunc 63 | trimSuffix "-" }}
  namespace: {{ $d.namespace | default .Release.Namespace }}
  labels:
    grafana_dashboard: "1"
    {{- include "motcua-lib.labels" (dict "ctx" . "name" "motcua" "component" "dashboard") | nindent 4 }}
    {{- with $d.labels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
  {{- with $d.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
data:
  motcua-overview.json: |-
    {{- .Files.Get "dashboards/motcua-overview.json" | nindent 4 }}
{{- end -}}
{{- end -}}
