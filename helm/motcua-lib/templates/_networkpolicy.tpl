{{/*
NetworkPolicies (opt-in: global.networkPolicy.enabled, or a service's own networkPolicy.enabled).

- <release>-default-deny selects every pod of the release's services with network policy on
  (the servers, the migration Jobs, the `helm test` pods) and allows nothing. The policies below
  add what each kind of pod needs; NetworkPolicies are additive, so nothing else gets through.
- <release>-<svc> (the server pods). Ingress: the gRPC port from the allowed namespaces/pods
  (global list + this service's list) and this service's `helm test` pod; the metrics port from
  the monitoring namespaces; an HTTP endpoint port (payment's callbacks, notify's receipts) from
  networkPolicy.ingress.httpNamespaces and httpFrom (the ingress controller, or the callers'
  CIDRs). Egress: DNS, Kafka, PostgreSQL, the OTLP collector (when an endpoint is set) and, for
  services that talk to the outside (notify: SMS/email/Zalo providers; payment: the gateway),
  the CIDRs in networkPolicy.egress.external (dossier: the TSA and a network HSM), plus
  networkPolicy.egress.extra. Notify fetching the signed papers (services.notify.config.
  DOSSIER_GRPC_TARGET set, docs/adr/0088): notify's egress to the dossier server pods' gRPC
  port, and dossier's ingress from the notify server pods on it.
- <release>-<svc>-migrate (the migration Job's pods): egress to DNS and PostgreSQL only. A
  pre-install/pre-upgrade hook of weight 5, so it exists before the Jobs (weight 10) run, even
  on the first install and under a namespace-wide default-deny of the platform's own; deleted
  once every hook has succeeded.
- <release>-<svc>-test (the `helm test` pod): egress to DNS and the service's gRPC port only.

An egress target with an empty `to` allows its ports to any address; set `to` in production.
*/}}

{{/* Prints "true" when network policy is on for this service. Needs .Values and .Global. */}}
{{- define "motcua-lib.networkPolicyOn" -}}
{{- $g := dig "networkPolicy" dict (.Global | default dict) -}}
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

{{/*
The egress targets (dns, kafka, postgresql, otlp, identityProvider: each {to, ports}) for this service: its own
networkPolicy.egress.<target> replaces global.networkPolicy.egress.<target>. Returned as YAML.
*/}}
{{- define "motcua-lib.egressTargets" -}}
{{- $ge := dig "networkPolicy" "egress" dict (.Global | default dict) -}}
{{- $le := dig "networkPolicy" "egress" dict .Values -}}
{{- $dnsDefault := dict "ports" (list 53) "to" (list (dict "namespaceSelector" (dict "matchLabels" (dict "kubernetes.io/metadata.name" "kube-system")) "podSelector" (dict "matchLabels" (dict "k8s-app" "kube-dns")))) -}}
{{- toYaml (dict
      "dns" ($le.dns | default $ge.dns | default $dnsDefault)
      "kafka" ($le.kafka | default $ge.kafka | default (dict "ports" (list 9092)))
      "postgresql" ($le.postgresql | default $ge.postgresql | default (dict "ports" (list 5432)))
      "otlp" ($le.otlp | default $ge.otlp | default (dict "ports" (list 4317)))
      "identityProvider" ($le.identityProvider | default $ge.identityProvider | default (dict "ports" (list 443)))) -}}
{{- end -}}

{{- define "motcua-lib.networkpolicy" -}}
{{- if include "motcua-lib.networkPolicyOn" . -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $t := include "motcua-lib.egressTargets" . | fromYaml -}}
{{- $g := dig "networkPolicy" dict .Global -}}
{{- $l := .Values.networkPolicy | default dict -}}
{{- $gi := $g.ingress | default dict -}}
{{- $li := $l.ingress | default dict -}}
{{- $le := $l.egress | default dict -}}
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
        # this service's `helm test` pod
        - podSelector:
            matchLabels:
              {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "test") | nindent 14 }}
        {{- with $grpcPeers }}
        {{- . | nindent 8 }}
        {{- end }}
        {{- if eq .Service "dossier" }}
        {{- $notify := include "motcua-lib.peerContext" (dict "root" .Root "service" "notify") | fromYaml }}
        {{- if and $notify.enabled $notify.documentsTarget }}
        # notify fetches the signed papers (GetDocument; services.notify.config.DOSSIER_GRPC_TARGET)
        - podSelector:
            matchLabels:
              {{- toYaml $notify.selectorLabels | nindent 14 }}
        {{- end }}
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
    {{- include "motcua-lib.egressRule" (dict "target" $t.dns "protocols" (list "UDP" "TCP")) | nindent 4 }}
    {{- include "motcua-lib.egressRule" (dict "target" $t.kafka "protocols" (list "TCP")) | nindent 4 }}
    {{- include "motcua-lib.egressRule" (dict "target" $t.postgresql "protocols" (list "TCP")) | nindent 4 }}
    {{- if $s.otlpEndpoint }}
    {{- include "motcua-lib.egressRule" (dict "target" $t.otlp "protocols" (list "TCP")) | nindent 4 }}
    {{- end }}
    {{- if $s.jwt.jwksUrl }}
    {{- include "motcua-lib.egressRule" (dict "target" $t.identityProvider "protocols" (list "TCP")) | nindent 4 }}
    {{- end }}
    {{- if and (eq .Service "notify") (dig "config" "DOSSIER_GRPC_TARGET" "" .Values) }}
    {{- $dossier := include "motcua-lib.peerContext" (dict "root" .Root "service" "dossier") | fromYaml }}
    {{- if $dossier.enabled }}
    # the dossier service's gRPC port: GetDocument, for the signed papers attached to emails
    - ports:
        - port: {{ $dossier.grpcPort }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- toYaml $dossier.selectorLabels | nindent 14 }}
    {{- end }}
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

{{/* The migration Job's pods: DNS and PostgreSQL, nothing else (`migrate` touches neither Kafka nor OTLP). */}}
{{- define "motcua-lib.networkpolicy-migration" -}}
{{- if and (include "motcua-lib.networkPolicyOn" .) .Values.migration.enabled -}}
{{- $t := include "motcua-lib.egressTargets" . | fromYaml -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "motcua-lib.fullname" . | trunc 55 | trimSuffix "-" }}-migrate
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "migration") | nindent 4 }}
  annotations:
    # Before the migration Jobs (weight 10): on a first install nothing of the release exists yet.
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "5"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  podSelector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "migration") | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  egress:
    {{- include "motcua-lib.egressRule" (dict "target" $t.dns "protocols" (list "UDP" "TCP")) | nindent 4 }}
    {{- include "motcua-lib.egressRule" (dict "target" $t.postgresql "protocols" (list "TCP")) | nindent 4 }}
{{- end -}}
{{- end -}}

{{/* The `helm test` pod: DNS and its service's gRPC port, nothing else. */}}
{{- define "motcua-lib.networkpolicy-test" -}}
{{- if and (include "motcua-lib.networkPolicyOn" .) .Values.tests.enabled -}}
{{- $t := include "motcua-lib.egressTargets" . | fromYaml -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ include "motcua-lib.fullname" . | trunc 58 | trimSuffix "-" }}-test
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "test") | nindent 4 }}
spec:
  podSelector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "test") | nindent 6 }}
  policyTypes:
    - Ingress
    - Egress
  egress:
    {{- include "motcua-lib.egressRule" (dict "target" $t.dns "protocols" (list "UDP" "TCP")) | nindent 4 }}
    - ports:
        - port: {{ .Values.ports.grpc }}
          protocol: TCP
      to:
        - podSelector:
            matchLabels:
              {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 14 }}
{{- end -}}
{{- end -}}

{{/*
The release's default-deny. Called with the umbrella's root context: one object per release,
selecting the pods of every enabled service whose network policy is on.
*/}}
{{- define "motcua-lib.networkpolicy-default-deny" -}}
{{- $root := . -}}
{{- $on := list -}}
{{- range $svc := include "motcua-lib.enabledServices" $root | fromJsonArray -}}
{{- $values := dict -}}
{{- include "motcua-lib.mergeValues" (dict "root" $root "service" $svc "into" $values) -}}
{{- if include "motcua-lib.networkPolicyOn" (dict "Values" $values "Global" ($root.Values.global | default dict)) -}}
{{- $on = append $on (default $svc $values.nameOverride) -}}
{{- end -}}
{{- end -}}
{{- if $on -}}
apiVersion: networking.k8s.io/v1
kind: NetworkPolicy
metadata:
  name: {{ printf "%s-default-deny" .Release.Name | trunc 63 | trimSuffix "-" }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "name" "motcua" "component" "network-policy") | nindent 4 }}
spec:
  # Every pod of these services in this release: servers, migration Jobs, `helm test` pods.
  podSelector:
    matchLabels:
      app.kubernetes.io/instance: {{ .Release.Name }}
    matchExpressions:
      - key: app.kubernetes.io/name
        operator: In
        values:
          {{- toYaml $on | nindent 10 }}
  policyTypes:
    - Ingress
    - Egress
{{- end -}}
{{- end -}}
