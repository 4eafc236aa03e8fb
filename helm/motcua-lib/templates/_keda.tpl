{{/*
Lag-based autoscaling with KEDA (docs/adr/0073; helm/README.md, "Lag-based autoscaling with
KEDA"): with autoscaling.keda.enabled, a KEDA ScaledObject replaces the service's CPU HPA
(motcua-lib.hpa renders nothing then). KEDA creates and owns the HorizontalPodAutoscaler; two
autoscalers on one Deployment would fight over its replicas, so the chart never renders both.

Triggers:
  - one `kafka` trigger per topic the service consumes (from the topic registry, topics.json:
    the topics with an event the service consumes, or that it consumes all of), on the lag of
    the service's consumer group (the registry's consumer_group, or config.CONSUMER_GROUP, as
    the service itself uses). KEDA reads the lag from the brokers: no metrics adapter needed.
    Replicas for a topic: ceil(lag / lagThreshold), never above its partition count.
    offsetResetPolicy is earliest, as the services' consumers (motcua_kit.kafka): a group
    without a committed offset will read the topic from its start, and that is its lag;
  - a `cpu` trigger at autoscaling.targetCPUUtilizationPercentage (autoscaling.keda.cpu): the
    services also serve gRPC, whose load shows in CPU and not in lag.
The HPA takes the highest of them, within autoscaling.minReplicas..maxReplicas, with
autoscaling.behavior.

The KEDA operator connects to Kafka itself: with SASL_SSL, or SSL with a CA Secret, it needs a
TriggerAuthentication (or ClusterTriggerAuthentication) created outside the chart, like every
secret here, named by autoscaling.keda.authenticationRef.
*/}}

{{/* The topics a service consumes, from the topic registry, as a JSON list. */}}
{{- define "motcua-lib.consumedTopics" -}}
{{- $registry := .Files.Get "topics.json" | fromJson -}}
{{- $svc := .Service -}}
{{- $out := list -}}
{{- range $topic := $registry.topics | default list -}}
{{- $consumes := has $svc ($topic.consumers_of_all_types | default list) -}}
{{- range $event := $topic.events | default list -}}
{{- if has $svc ($event.consumers | default list) }}{{ $consumes = true }}{{ end -}}
{{- end -}}
{{- if $consumes }}{{ $out = append $out $topic.name }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/* The service's consumer group: config.CONSUMER_GROUP, else the registry's, else motcua-<svc>. */}}
{{- define "motcua-lib.consumerGroup" -}}
{{- $registry := .Files.Get "topics.json" | fromJson -}}
{{- $system := get ($registry.systems | default dict) .Service | default dict -}}
{{- get (.Values.config | default dict) "CONSUMER_GROUP" | default $system.consumer_group | default (printf "motcua-%s" .Service) -}}
{{- end -}}

{{/* Refusals of autoscaling.keda; each names the value to change. */}}
{{- define "motcua-lib.validateKeda" -}}
{{- $svc := .Service -}}
{{- $at := printf "services.%s.autoscaling" $svc -}}
{{- $a := .Values.autoscaling -}}
{{- $k := $a.keda -}}
{{- if not $a.enabled -}}
{{- fail (printf "motcua %s: %s.keda.enabled is true but %s.enabled is false: KEDA's HPA would fight the Deployment's fixed replicas (replicaCount). Set %s.enabled to true (the ScaledObject then replaces the CPU HPA) or %s.keda.enabled to false" $svc $at $at $at $at) -}}
{{- end -}}
{{- if dig "consumerLag" "enabled" false $a -}}
{{- fail (printf "motcua %s: %s.keda.enabled and %s.consumerLag.enabled are both true: the ScaledObject replaces the HPA that would carry the motcua_consumer_lag Pods metric, and already scales on lag. Set %s.consumerLag.enabled to false" $svc $at $at $at) -}}
{{- end -}}
{{- if not (include "motcua-lib.consumedTopics" . | fromJsonArray) -}}
{{- fail (printf "motcua %s: %s.keda.enabled is true but the topic registry (topics.json) lists no topic %s consumes: there is no lag to scale on. Set %s.keda.enabled to false" $svc $at $svc $at) -}}
{{- end -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $needsAuth := or (eq $s.kafka.securityProtocol "SASL_SSL") (and (eq $s.kafka.securityProtocol "SSL") $s.kafka.caSecret) -}}
{{- if and $needsAuth (not (dig "authenticationRef" "name" "" $k)) -}}
{{- fail (printf "motcua %s: %s.keda.authenticationRef.name is required with global.kafka.securityProtocol %s%s: the KEDA operator reads the lag from the brokers itself and needs a TriggerAuthentication with the Kafka credentials (sasl, username, password, ca; helm/README.md)" $svc $at $s.kafka.securityProtocol (ternary " and global.kafka.ssl.caSecret" "" (eq $s.kafka.securityProtocol "SSL"))) -}}
{{- end -}}
{{- end -}}

{{/* The ScaledObject of a service with autoscaling.keda.enabled. */}}
{{- define "motcua-lib.scaledobject" -}}
{{- $a := .Values.autoscaling | default dict -}}
{{- $k := $a.keda | default dict -}}
{{- if $k.enabled -}}
{{- include "motcua-lib.validateKeda" . -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $fullname := include "motcua-lib.fullname" . -}}
{{- $group := include "motcua-lib.consumerGroup" . -}}
{{- $sasl := dict "PLAIN" "plaintext" "SCRAM-SHA-256" "scram_sha256" "SCRAM-SHA-512" "scram_sha512" -}}
{{- $auth := $k.authenticationRef | default dict -}}
apiVersion: keda.sh/v1alpha1
kind: ScaledObject
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ $fullname }}
  minReplicaCount: {{ $a.minReplicas }}
  maxReplicaCount: {{ $a.maxReplicas }}
  pollingInterval: {{ $k.pollingInterval }}
  {{- with $a.behavior }}
  advanced:
    horizontalPodAutoscalerConfig:
      behavior:
        {{- toYaml . | nindent 8 }}
  {{- end }}
  triggers:
    {{- range $topic := include "motcua-lib.consumedTopics" . | fromJsonArray }}
    - type: kafka
      metadata:
        bootstrapServers: {{ $s.kafka.bootstrap | quote }}
        consumerGroup: {{ $group | quote }}
        topic: {{ $topic | quote }}
        lagThreshold: {{ $k.lagThreshold | toString | quote }}
        offsetResetPolicy: earliest
        {{- if ne $s.kafka.securityProtocol "PLAINTEXT" }}
        tls: enable
        {{- end }}
        {{- if eq $s.kafka.securityProtocol "SASL_SSL" }}
        sasl: {{ get $sasl $s.kafka.saslMechanism | quote }}
        {{- end }}
      {{- with $auth.name }}
      authenticationRef:
        name: {{ . | quote }}
        kind: {{ $auth.kind | default "TriggerAuthentication" }}
      {{- end }}
    {{- end }}
    {{- if $k.cpu }}
    - type: cpu
      metricType: Utilization
      metadata:
        value: {{ $a.targetCPUUtilizationPercentage | toString | quote }}
    {{- end }}
{{- end -}}
{{- end -}}
