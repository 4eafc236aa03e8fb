{{/*
Probes. Kubernetes' built-in gRPC probe (1.24+) speaks plaintext only, so when the gRPC port
serves TLS the probes fall back ("auto") to the same health over HTTP on the metrics port:
/healthz (alive) and /readyz (can take work).
*/}}
{{- define "motcua-lib.probeMode" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $mode := .Values.probes.mode | default "auto" -}}
{{- if eq $mode "auto" -}}
{{- ternary "http" "grpc" $s.tls.enabled -}}
{{- else -}}
{{- $mode -}}
{{- end -}}
{{- end -}}

{{/* One probe. Call with (dict "ctx" . "probe" <values> "path" "/healthz|/readyz"). */}}
{{- define "motcua-lib.probe" -}}
{{- if eq (include "motcua-lib.probeMode" .ctx) "grpc" }}
grpc:
  port: {{ .ctx.Values.ports.grpc }}
{{- else }}
httpGet:
  path: {{ .path }}
  port: http-metrics
{{- end }}
{{- with .probe }}
initialDelaySeconds: {{ .initialDelaySeconds | default 0 }}
periodSeconds: {{ .periodSeconds | default 10 }}
timeoutSeconds: {{ .timeoutSeconds | default 3 }}
failureThreshold: {{ .failureThreshold | default 3 }}
{{- end }}
{{- end -}}

{{- define "motcua-lib.topologySpreadConstraints" -}}
{{- $t := .Values.topologySpread | default dict -}}
{{- if $t.enabled }}
topologySpreadConstraints:
  - maxSkew: {{ $t.maxSkew | default 1 }}
    topologyKey: topology.kubernetes.io/zone
    whenUnsatisfiable: {{ $t.zoneWhenUnsatisfiable | default "ScheduleAnyway" }}
    labelSelector:
      matchLabels:
        {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 8 }}
  - maxSkew: {{ $t.maxSkew | default 1 }}
    topologyKey: kubernetes.io/hostname
    whenUnsatisfiable: {{ $t.hostnameWhenUnsatisfiable | default "ScheduleAnyway" }}
    labelSelector:
      matchLabels:
        {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 8 }}
{{- end }}
{{- end -}}

{{- define "motcua-lib.scheduling" -}}
{{- with .Values.priorityClassName }}
priorityClassName: {{ . | quote }}
{{- end }}
{{- with .Values.nodeSelector }}
nodeSelector:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.affinity }}
affinity:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- with .Values.tolerations }}
tolerations:
  {{- toYaml . | nindent 2 }}
{{- end }}
{{- end -}}

{{- define "motcua-lib.deployment" -}}
{{- include "motcua-lib.validate" . -}}
{{- $fullname := include "motcua-lib.fullname" . -}}
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {{ $fullname }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
spec:
  {{- if not .Values.autoscaling.enabled }}
  replicas: {{ .Values.replicaCount }}
  {{- end }}
  revisionHistoryLimit: 5
  strategy:
    type: RollingUpdate
    rollingUpdate:
      maxSurge: 1
      maxUnavailable: 0
  selector:
    matchLabels:
      {{- include "motcua-lib.selectorLabels" (dict "ctx" . "component" "server") | nindent 6 }}
  template:
    metadata:
      labels:
        {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
      annotations:
        checksum/config: {{ include "motcua-lib.configData" . | sha256sum }}
        {{- with .Values.podAnnotations }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      serviceAccountName: {{ include "motcua-lib.serviceAccountName" . }}
      # The services never call the Kubernetes API.
      automountServiceAccountToken: false
      # Service links would inject MOTCUA_<SVC>_SERVICE_HOST and friends into the env prefix the
      # settings read.
      enableServiceLinks: false
      {{- with include "motcua-lib.imagePullSecrets" . | trim }}{{ . | nindent 6 }}{{- end }}
      securityContext:
        {{- include "motcua-lib.podSecurityContext" . | nindent 8 }}
      # preStop + shutdownGraceSeconds + 5 s, unless set longer (motcua-lib.terminationGrace).
      terminationGracePeriodSeconds: {{ include "motcua-lib.terminationGrace" . }}
      {{- with include "motcua-lib.topologySpreadConstraints" . | trim }}{{ . | nindent 6 }}{{- end }}
      {{- with include "motcua-lib.scheduling" . | trim }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: {{ .Service }}
          image: {{ include "motcua-lib.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          {{- /* The migration hook has already migrated; without it the service migrates itself. */}}
          command: ["python", "-m", {{ include "motcua-lib.module" . | quote }}, "serve"{{ if .Values.migration.enabled }}, "--no-migrate-first"{{ end }}]
          ports:
            - name: grpc
              containerPort: {{ .Values.ports.grpc }}
              protocol: TCP
            - name: http-metrics
              containerPort: {{ .Values.ports.metrics }}
              protocol: TCP
            {{- range (include "motcua-lib.httpPorts" . | fromYaml).ports }}
            - name: {{ .name }}
              containerPort: {{ .port }}
              protocol: TCP
            {{- end }}
          envFrom:
            - configMapRef:
                name: {{ $fullname }}
          env:
            {{- with include "motcua-lib.secretEnv" . | trim }}{{ . | nindent 12 }}{{- end }}
          startupProbe:
            {{- with include "motcua-lib.probe" (dict "ctx" . "probe" .Values.probes.startup "path" "/healthz") | trim }}{{ . | nindent 12 }}{{- end }}
          livenessProbe:
            {{- with include "motcua-lib.probe" (dict "ctx" . "probe" .Values.probes.liveness "path" "/healthz") | trim }}{{ . | nindent 12 }}{{- end }}
          readinessProbe:
            {{- with include "motcua-lib.probe" (dict "ctx" . "probe" .Values.probes.readiness "path" "/readyz") | trim }}{{ . | nindent 12 }}{{- end }}
          {{- if .Values.preStopSleepSeconds }}
          lifecycle:
            # Give endpoints and load balancers time to stop sending before the service drains.
            preStop:
              exec:
                command: ["sleep", {{ .Values.preStopSleepSeconds | toString | quote }}]
          {{- end }}
          resources:
            {{- toYaml .Values.resources | nindent 12 }}
          securityContext:
            {{- include "motcua-lib.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "motcua-lib.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "motcua-lib.volumes" . | nindent 8 }}
{{- end -}}
