{{/*
HorizontalPodAutoscaler on CPU, optionally also on Kafka consumer lag.

The lag metric (`motcua_consumer_lag`, a gauge per topic partition) reaches the HPA as a Pods
metric through a custom-metrics adapter, e.g. prometheus-adapter with a rule like:

  - seriesQuery: 'motcua_consumer_lag{namespace!="",pod!=""}'
    resources: {overrides: {namespace: {resource: namespace}, pod: {resource: pod}}}
    name: {as: motcua_consumer_lag}
    metricsQuery: 'sum by (<<.GroupBy>>) (<<.Series>>{<<.LabelMatchers>>})'

Alternative without an adapter: autoscaling.keda.enabled. A KEDA ScaledObject on the lag KEDA
reads from the brokers (motcua-lib/templates/_keda.tpl) then replaces this HPA: KEDA creates
its own, and two autoscalers on one Deployment would fight, so this one is not rendered.
*/}}
{{- define "motcua-lib.hpa" -}}
{{- if and .Values.autoscaling.enabled (not (dig "keda" "enabled" false .Values.autoscaling)) -}}
{{- $a := .Values.autoscaling -}}
apiVersion: autoscaling/v2
kind: HorizontalPodAutoscaler
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  scaleTargetRef:
    apiVersion: apps/v1
    kind: Deployment
    name: {{ include "motcua-lib.fullname" . }}
  minReplicas: {{ $a.minReplicas }}
  maxReplicas: {{ $a.maxReplicas }}
  metrics:
    - type: Resource
      resource:
        name: cpu
        target:
          type: Utilization
          averageUtilization: {{ $a.targetCPUUtilizationPercentage }}
    {{- if $a.consumerLag.enabled }}
    - type: Pods
      pods:
        metric:
          name: motcua_consumer_lag
        target:
          type: AverageValue
          averageValue: {{ $a.consumerLag.averageValue | toString | quote }}
    {{- end }}
  {{- with $a.behavior }}
  behavior:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}
{{- end -}}

{{/* PodDisruptionBudget: minAvailable wins when set, otherwise maxUnavailable (default 1). */}}
{{- define "motcua-lib.pdb" -}}
{{- if .Values.pdb.enabled -}}
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  {{- if not (kindIs "invalid" .Values.pdb.minAvailable) }}
  minAvailable: {{ .Values.pdb.minAvailable }}
  {{- else }}
  maxUnavailable: {{ .Values.pdb.maxUnavailable | default 1 }}
  {{- end }}
  {{- with .Values.pdb.unhealthyPodEvictionPolicy }}
  unhealthyPodEvictionPolicy: {{ . }}
  {{- end }}
  selector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 6 }}
{{- end -}}
{{- end -}}
