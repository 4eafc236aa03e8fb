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

{{/*
Alerts. Each links to its own runbook page, <runbookBaseUrl>/<page>.md (docs/runbooks/ in the
repository; tests/helm checks that every alert has one). Severities: critical pages someone
(citizens are affected now, or evidence is at risk), warning goes to the team's queue.
*/}}
{{- define "motcua-lib.runbookUrl" -}}
{{- printf "%s/%s.md" (trimSuffix "/" .base) .page -}}
{{- end -}}

{{- define "motcua-lib.prometheusrule" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- if and $s.monitoring.prometheusRule .Values.alerts.enabled -}}
{{- $a := .Values.alerts -}}
{{- $svc := .Service -}}
{{- $sel := printf "namespace=%q, job=%q" .Release.Namespace (include "motcua-lib.fullname" .) -}}
{{- $rb := $s.monitoring.runbookBaseUrl -}}
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
        - alert: MotcuaGrpcHighErrorRate
          expr: |
            (
              sum(rate(motcua_grpc_requests_total{ {{- $sel }}, code=~"UNKNOWN|INTERNAL|UNAVAILABLE|DATA_LOSS|DEADLINE_EXCEEDED|UNIMPLEMENTED|RESOURCE_EXHAUSTED"}[5m]))
              /
              sum(rate(motcua_grpc_requests_total{ {{- $sel }}}[5m]))
            ) > {{ $a.grpcErrorRatio }}
            and
            sum(rate(motcua_grpc_requests_total{ {{- $sel }}}[5m])) > {{ $a.grpcMinRequestRate }}
          for: {{ $a.pendingFor.grpcHighErrorRate }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: more than {{ mulf $a.grpcErrorRatio 100 }}% of gRPC calls fail with a server error"
            description: "{{ "{{" }} $value | humanizePercentage {{ "}}" }} of {{ $svc }} gRPC calls in {{ .Release.Namespace }} ended in a server-side error code over the last 5 minutes."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "grpc-high-error-rate") | quote }}
        {{- /*
        The lag as the service reports it, or, when the service cannot (it is down, or stuck
        before its first poll), as the broker reports it for the service's consumer group: the
        OpenTelemetry Collector's kafkametrics receiver (kafka_consumer_group_lag{group}; its
        Prometheus exporter appends the unit suffix _ratio unless add_metric_suffixes is off) or
        Strimzi's Kafka Exporter (kafka_consumergroup_lag{consumergroup}). `or` keeps the
        service's own series where both exist.
        */}}
        {{- $group := include "motcua-lib.consumerGroup" . }}
        {{- $lag := printf `sum by (topic) (max by (topic, partition) (motcua_consumer_lag{%s})) or sum by (topic) (max by (topic, partition) ({__name__=~"kafka_consumer_group_lag(_ratio)?", group=%q})) or sum by (topic) (max by (topic, partition) (kafka_consumergroup_lag{consumergroup=%q}))` $sel $group $group }}
        - alert: MotcuaConsumerLagGrowing
          expr: |
            ({{ $lag }}) > {{ $a.consumerLagThreshold }}
            and
            deriv(({{ $lag }})[{{ $a.consumerLagWindow }}:]) > 0
          for: {{ $a.pendingFor.consumerLagGrowing }}
          labels:
            severity: warning
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: Kafka consumer lag is high and still growing"
            description: "{{ $svc }} is {{ "{{" }} $value {{ "}}" }} records behind on {{ "{{" }} $labels.topic {{ "}}" }} and falling further behind."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "consumer-lag-growing") | quote }}
        - alert: MotcuaOutboxStuck
          expr: |
            max(motcua_outbox_oldest_pending_seconds{ {{- $sel }}}) > {{ $a.outboxOldestPendingSeconds }}
          for: {{ $a.pendingFor.outboxStuck }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: events wait in the outbox longer than {{ $a.outboxOldestPendingSeconds }}s"
            description: "The oldest unpublished outbox row of {{ $svc }} is {{ "{{" }} $value | humanizeDuration {{ "}}" }} old: events are not reaching Kafka."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "outbox-stuck") | quote }}
        {{- /*
        A labelled counter appears only at its first increment, and increase() cannot see that
        first step; the second branch catches every series that is new in the window. It
        compares series, not sums: a second replica's first dead letter of a topic that the
        first replica already had is a new series too, and a sum by topic would hide it.
        */}}
        - alert: MotcuaDeadLetterQueueNotEmpty
          expr: |
            sum by (topic) (increase(motcua_dlq_published_total{ {{- $sel }}}[{{ $a.deadLetterWindow }}])) > 0
            or
            sum by (topic) (
              motcua_dlq_published_total{ {{- $sel }}} > 0
              unless
              motcua_dlq_published_total{ {{- $sel }}} offset {{ $a.deadLetterWindow }}
            )
          {{- if ne $a.pendingFor.deadLetterQueueNotEmpty "0s" }}
          for: {{ $a.pendingFor.deadLetterQueueNotEmpty }}
          {{- end }}
          labels:
            severity: warning
            service: {{ $svc }}
          annotations:
            summary: "{{ $svc }}: records went to a dead-letter topic in the last {{ $a.deadLetterWindow }}"
            description: "{{ "{{" }} $value | printf `%.0f` {{ "}}" }} records of {{ "{{" }} $labels.topic {{ "}}" }} were dead-lettered by {{ $svc }}; they wait in {{ "{{" }} $labels.topic {{ "}}" }}.dlq to be looked at and replayed."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "dead-letter-queue-not-empty") | quote }}
        {{- if eq $svc "dossier" }}
        {{- /* Same two branches as the DLQ alert: a replica's first refusal of a reason is a new series. */}}
        - alert: MotcuaDossierPaymentRefused
          expr: |
            sum by (reason) (increase(motcua_dossier_payments_refused_total{ {{- $sel }}}[1h])) > 0
            or
            sum by (reason) (
              motcua_dossier_payments_refused_total{ {{- $sel }}} > 0
              unless
              motcua_dossier_payments_refused_total{ {{- $sel }}} offset 1h
            )
          {{- if ne $a.pendingFor.dossierPaymentRefused "0s" }}
          for: {{ $a.pendingFor.dossierPaymentRefused }}
          {{- end }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "dossier: a payment success did not match its dossier's own fee request"
            description: "{{ "{{" }} $value | printf `%.0f` {{ "}}" }} payment successes were kept out of their dossiers in the last hour (reason {{ "{{" }} $labels.reason {{ "}}" }}): money was taken that no open fee request asked for. Each is in the audit log as vn.motcua.dossier.payment_refused.v1."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "dossier-payment-refused") | quote }}
        {{- /*
        A key that cannot sign refuses the move that issues the paper (docs/adr/0086). One
        refusal is often a blip (the TSA, a token session) that the officer's retry gets past:
        with the window as long as pendingFor (5m), a lone failure leaves the condition true
        for less than pendingFor and does not fire; failures that keep coming (another within
        5 minutes of the last) do. increase() cannot see a series' first step either (a pod's
        first failure for an agency), which "a lone failure" covers too.
        */}}
        - alert: MotcuaDocumentSigningFailing
          expr: |
            sum by (agency) (increase(motcua_dossier_signing_failures_total{ {{- $sel }}}[5m])) > 0
          for: {{ $a.pendingFor.documentSigningFailing }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "dossier: the signing key of agency {{ "{{" }} $labels.agency {{ "}}" }} keeps failing"
            description: "{{ "{{" }} $value | printf `%.0f` {{ "}}" }} papers of agency {{ "{{" }} $labels.agency {{ "}}" }} could not be signed in the last 5 minutes: its officers cannot receive, refuse, ask for supplements on or return the results of its dossiers (each such move is refused with FAILED_PRECONDITION naming the agency's key), and its citizens get no receipt."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "dossier-document-signing") | quote }}
        {{- end }}
        {{- if eq $svc "notify" }}
        {{- /*
        Fetches of a signed paper (GetDocument) for an email that did not return the event's
        bytes. Temporary outcomes (unavailable, unauthenticated, error) are retried; during a
        dossier rollout a few are normal. pendingFor (15m) longer than the window (10m): it
        fires when failures have kept coming for 5 minutes or more, no gap of 10.
        */}}
        - alert: MotcuaDocumentFetchFailing
          expr: |
            sum by (outcome) (increase(motcua_notify_document_fetches_total{ {{- $sel }}, outcome!="fetched"}[10m])) > 0
          for: {{ $a.pendingFor.documentFetchFailing }}
          labels:
            severity: warning
            service: {{ $svc }}
          annotations:
            summary: "notify: fetching signed papers from the dossier service keeps failing ({{ "{{" }} $labels.outcome {{ "}}" }})"
            description: "{{ "{{" }} $value | printf `%.0f` {{ "}}" }} fetches of a receipt or result from the dossier service ended {{ "{{" }} $labels.outcome {{ "}}" }} in the last 10 minutes: those citizens' emails wait for a retry or were given up (permanent-failure) without the signed paper; the SMS with the link still goes out."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "notify-document-fetch") | quote }}
        {{- end }}
        {{- if eq $svc "payment" }}
        {{- /* The second branch: a series new in the window (a reason's first rejections, or a
        restarted pod's) whose whole count is over the threshold; increase() cannot see it. */}}
        - alert: MotcuaPaymentCallbackRejectionsSpike
          expr: |
            sum by (reason) (increase(motcua_payment_callback_rejections_total{ {{- $sel }}}[10m])) > {{ $a.callbackRejections }}
            or
            sum by (reason) (
              motcua_payment_callback_rejections_total{ {{- $sel }}}
              unless
              motcua_payment_callback_rejections_total{ {{- $sel }}} offset 10m
            ) > {{ $a.callbackRejections }}
          for: {{ $a.pendingFor.paymentCallbackRejectionsSpike }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "payment: more than {{ $a.callbackRejections }} gateway callbacks rejected in 10 minutes"
            description: "{{ "{{" }} $value | printf `%.0f` {{ "}}" }} payment gateway callbacks (return URL or IPN) were rejected with reason {{ "{{" }} $labels.reason {{ "}}" }} in the last 10 minutes: forged or replayed callbacks, or a gateway secret that no longer matches."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "payment-callback-rejections-spike") | quote }}
        {{- end }}
        {{- if eq $svc "audit" }}
        - alert: MotcuaAuditTreeHeadStale
          expr: |
            (time() - max(motcua_audit_tree_head_timestamp_seconds{ {{- $sel }}})) > {{ $a.treeHeadMaxAgeSeconds }}
            or
            absent(motcua_audit_tree_head_timestamp_seconds{ {{- $sel }}})
          for: {{ $a.pendingFor.auditTreeHeadStale }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "audit: no signed tree head for more than {{ $a.treeHeadMaxAgeSeconds }}s"
            description: "The audit log has not published a newly signed tree head recently; entries since then are not yet covered by a signature."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "audit-tree-head-stale") | quote }}
        - alert: MotcuaAuditVerificationFailed
          expr: |
            sum(increase(motcua_audit_verification_failures_total{ {{- $sel }}}[10m])) > 0
          {{- if ne $a.pendingFor.auditVerificationFailed "0s" }}
          for: {{ $a.pendingFor.auditVerificationFailed }}
          {{- end }}
          labels:
            severity: critical
            service: {{ $svc }}
          annotations:
            summary: "audit: the log failed its own verification"
            description: "The audit service's self-check found stored entries, Merkle nodes or signed tree heads that do not verify: the log may have been altered outside the service."
            runbook_url: {{ include "motcua-lib.runbookUrl" (dict "base" $rb "page" "audit-verification-failed") | quote }}
        {{- end }}
{{- end -}}
{{- end -}}
