{{/*
Prometheus Operator objects. Rendered when global.monitoring.<kind>.enabled is true, or when it
is "auto" (the default) and the cluster serves monitoring.coreos.com/v1.

The kit labels its metrics with `service` (dossier, ...). The Prometheus Operator also sets a
`service` target label (the Kubernetes Service name), so in Prometheus the kit's label arrives
as `exported_service`. The rules therefore select by `job` (= the Service name) and `namespace`.
*/}}

{{- define "motcua-lib.servicemonitor" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- if $s.monitoring.serviceMonitor -}}
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
    {{- with $s.monitoring.serviceMonitorLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  namespaceSelector:
    matchNames:
      - {{ .Release.Namespace }}
  selector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 6 }}
  endpoints:
    - port: http-metrics
      path: /metrics
      scheme: http
      interval: {{ $s.monitoring.interval }}
      scrapeTimeout: {{ $s.monitoring.scrapeTimeout }}
{{- end -}}
{{- end -}}

{{/* Alerts. Each names its runbook section: <runbookBaseUrl>#<alert name in lower case>. */}}
{{- define "motcua-lib.prometheusrule" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- if and $s.monitoring.prometheusRule .Values.alerts.enabled -}}
{{- $a := .Values.alerts -}}
{{- $svc := include "motcua-lib.service" . -}}
{{- $sel := printf "namespace=%q, job=%q" .Release.Namespace (include "motcua-lib.fullname" .) -}}
{{- $runbook := $s.monitoring.runbookBaseUrl -}}
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
    {{- with $s.monitoring.prometheusRuleLabels }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
spec:
  groups:
    - name: motcua-{{ $svc }}
      rules:
        - alert: MotcuaGrpcHighErrorRatio
          expr: |
            (
              sum(rate(motcua_grpc_requests_total{ {{- $sel }}, code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNIMPLEMENTED|RESOURCE_EXHAUSTED"}[5m]))
              /
              sum(rate(motcua_grpc_requests_total{ {{- $sel }}}[5m]))
            ) > {{ $a.grpcErrorRatio }}
            and
            sum(rate(motcua_grpc_requests_total{ {{- $sel }}}[5m])) > {{ $a.grpcMinRequestRate }}
          for: 10m
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: more than {{ mulf $a.grpcErrorRatio 100 }}% of gRPC calls fail with a server error"
            description: "{{ "{{" }} $value | humanizePercentage {{ "}}" }} of {{ $svc }} gRPC calls in {{ .Release.Namespace }} ended in a server-side error code over the last 5 minutes."
            runbook_url: "{{ $runbook }}#motcuagrpchigherrorratio"
        - alert: MotcuaConsumerLagGrowing
          expr: |
            sum by (topic) (max by (topic, partition) (motcua_consumer_lag{ {{- $sel }}})) > {{ $a.consumerLagThreshold }}
            and
            deriv(sum by (topic) (max by (topic, partition) (motcua_consumer_lag{ {{- $sel }}}))[15m:1m]) > 0
          for: 15m
          labels:
            severity: warning
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: Kafka consumer lag is high and still growing"
            description: "{{ $svc }} is {{ "{{" }} $value {{ "}}" }} records behind on {{ "{{" }} $labels.topic {{ "}}" }} and falling further behind."
            runbook_url: "{{ $runbook }}#motcuaconsumerlaggrowing"
        - alert: MotcuaOutboxStale
          expr: |
            max(motcua_outbox_oldest_pending_seconds{ {{- $sel }}}) > {{ $a.outboxOldestPendingSeconds }}
          for: 5m
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: events wait in the outbox longer than {{ $a.outboxOldestPendingSeconds }}s"
            description: "The oldest unpublished outbox row of {{ $svc }} is {{ "{{" }} $value | humanizeDuration {{ "}}" }} old: events are not reaching Kafka."
            runbook_url: "{{ $runbook }}#motcuaoutboxstale"
        - alert: MotcuaDeadLetterIncreasing
          expr: |
            sum by (topic) (increase(motcua_dlq_published_total{ {{- $sel }}}[15m])) > 0
          for: 1m
          labels:
            severity: warning
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: records are being dead-lettered"
            description: "{{ "{{" }} $value {{ "}}" }} records from {{ "{{" }} $labels.topic {{ "}}" }} went to its .dlq topic in the last 15 minutes."
            runbook_url: "{{ $runbook }}#motcuadeadletterincreasing"
        {{- if hasKey $a "treeHeadMaxAgeSeconds" }}
        - alert: MotcuaAuditTreeHeadNotSigned
          expr: |
            (time() - max(motcua_audit_tree_head_timestamp_seconds{ {{- $sel }}})) > {{ $a.treeHeadMaxAgeSeconds }}
            or
            absent(motcua_audit_tree_head_timestamp_seconds{ {{- $sel }}})
          for: 10m
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "audit: no signed tree head for more than {{ $a.treeHeadMaxAgeSeconds }}s"
            description: "The audit log has not published a newly signed tree head recently; entries since then are not yet covered by a signature."
            runbook_url: "{{ $runbook }}#motcuaaudittreeheadnotsigned"
        {{- end }}
{{- end -}}
{{- end -}}
