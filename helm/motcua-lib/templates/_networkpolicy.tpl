{{/*
NetworkPolicy for the server pods (opt-in: global.networkPolicy.enabled, or the service's own
networkPolicy.enabled).

Ingress: the gRPC port from the allowed namespaces/pods (global list + this service's list) and
this chart's `helm test` pod; the metrics port from the monitoring namespaces; an HTTP endpoint
port (payment's callbacks, notify's receipts) from networkPolicy.ingress.httpNamespaces and
httpFrom (the ingress controller, or the callers' CIDRs). Nothing else.
Egress: DNS, Kafka, PostgreSQL, the OTLP collector (when an endpoint is set) and, for services
that talk to the outside (notify: SMS/email/Zalo providers; payment: the gateway), the CIDRs in
networkPolicy.egress.external. An egress target with an empty `to` allows its ports to any
address; set `to` in production.
*/}}

{{- define "motcua-lib.networkPolicyOn" -}}
{{- $g := dig "networkPolicy" dict (.Values.global | default dict) -}}
{{- $l := .Values.networkPolicy | default dict -}}
{{- if hasKey $l "enabled" -}}
{{- if $l.enabled }}true{{ end -}}
{{- else if $g.enabled -}}
true
{{- end -}}
{{- end -}}

{{/* Peers from namespace names, pod label maps and raw peers. Call with (dict "namespaces" .. "pods" .. "from" ..). */}}
{{- define "motcua-lib.peers" -}}
{{- range .namespaces }}
- namespaceSelector:
    matchLabels:
      kubernetes.io/metadata.name: {{ . | quote }}
{{- end }}
{{- range .pods }}
- podSelector:
    matchLabels:
      {{- toYaml . | nindent 6 }}
{{- end }}
{{- with .from }}
{{ toYaml . }}
{{- end }}
{{- end -}}

{{/* One egress rule. Call with (dict "target" <{to, ports}> "protocols" (list "TCP")). */}}
{{- define "motcua-lib.egressRule" -}}
- ports:
    {{- range $port := .target.ports }}
    {{- range $proto := $.protocols }}
    - port: {{ $port }}
      protocol: {{ $proto }}
    {{- end }}
    {{- end }}
  {{- with .target.to }}
  to:
    {{- toYaml . | nindent 4 }}
  {{- end }}
{{- end -}}

{{- define "motcua-lib.networkpolicy" -}}
{{- if include "motcua-lib.networkPolicyOn" . -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $g := dig "networkPolicy" dict (.Values.global | default dict) -}}
{{- $l := .Values.networkPolicy | default dict -}}
{{- $gi := $g.ingress | default dict -}}
{{- $li := $l.ingress | default dict -}}
{{- $ge := $g.egress | default dict -}}
{{- $le := $l.egress | default dict -}}
{{- $dnsDefault := dict "ports" (list 53) "to" (list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" "kube-system")) "podSelector" (dict "matchLabels" (dict "k8s-app" "kube-dns")))) -}}
{{- $dns := $le.dns | default $ge.dns | default $dnsDefault -}}
{{- $kafka := $le.kafka | default $ge.kafka | default (dict "ports" (list 9092)) -}}
{{- $postgresql := $le.postgresql | default $ge.postgresql | default (dict "ports" (list 5432)) -}}
{{- $otlp := $le.otlp | default $ge.otlp | default (dict "ports" (list 4317)) -}}
{{- $grpcPeers := include "motcua-lib.peers" (dict
      "namespaces" (concat ($gi.namespaces | default list) ($li.namespaces | default list))
      "pods" (concat ($gi.pods | default list) ($li.pods | default list))
      "from" (concat ($gi.from | default list) ($li.from | default list))) | trim -}}
{{- $metricsPeers := include "motcua-lib.peers" (dict
      "namespaces" (concat ($gi.metricsNamespaces | default list) ($li.metricsNamespaces | default list))
      "pods" list
      "from" (concat ($gi.metricsFrom | default list) ($li.metricsFrom | default list))) | trim -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  ingress:
    - ports:
        - port: {{ .Values.ports.grpc }}
          protocol: TCP
      from:
        # this chart's `helm test` pod
        - podSelector:
            matchLabels:
              {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "test") | nindent 14 }}
        {{- with $grpcPeers }}
        {{- . | nindent 8 }}
        {{- end }}
    {{- with $metricsPeers }}
    - ports:
        - port: {{ $.Values.ports.metrics }}
          protocol: TCP
      from:
        {{- . | nindent 8 }}
    {{- end }}
    {{- $httpPeers := include "motcua-lib.peers" (dict "namespaces" ($li.httpNamespaces | default list) "pods" list "from" ($li.httpFrom | default list)) | trim }}
    {{- $httpPorts := (include "motcua-lib.httpPorts" . | fromYaml).ports }}
    {{- if and $httpPeers $httpPorts }}
    - ports:
        {{- range $httpPorts }}
        - port: {{ .port }}
          protocol: TCP
        {{- end }}
      from:
        {{- $httpPeers | nindent 8 }}
    {{- end }}
  egress:
    {{- include "motcua-lib.egressRule" (dict "target" $dns "protocols" (list "UDP" "TCP")) | nindent 4 }}
    {{- include "motcua-lib.egressRule" (dict "target" $kafka "protocols" (list "TCP")) | nindent 4 }}
    {{- include "motcua-lib.egressRule" (dict "target" $postgresql "protocols" (list "TCP")) | nindent 4 }}
    {{- if $s.otlpEndpoint }}
    {{- include "motcua-lib.egressRule" (dict "target" $otlp "protocols" (list "TCP")) | nindent 4 }}
    {{- end }}
    {{- range $le.external }}
    - to:
        - ipBlock:
            cidr: {{ .cidr | quote }}
            {{- with .except }}
            except:
              {{- toYaml . | nindent 14 }}
            {{- end }}
      ports:
        {{- range .ports }}
        - port: {{ . }}
          protocol: TCP
        {{- end }}
    {{- end }}
    {{- with $le.extra }}
    {{- toYaml . | nindent 4 }}
    {{- end }}
{{- end -}}
{{- end -}}
