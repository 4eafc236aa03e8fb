{{/*
Database migration, run by Helm before the new pods start (pre-install, pre-upgrade): Helm applies
the release's ordinary objects (the Deployment among them) only after every pre-* hook has
succeeded, so the new code never rolls onto an old schema, and the Deployment runs
`serve --no-migrate-first`. The weight puts the migrations after pre-install hooks of weight
below 10 (e.g. a Secret a platform team adds as a hook). A hook runs
before the release's ordinary objects exist, so the Job carries its environment inline instead of
reading the ConfigMap, and uses migration.serviceAccountName (the namespace's default account
when empty) rather than the chart's ServiceAccount. A failed Job is kept for its logs; the next
attempt replaces it. Helm waits for each hook in turn, up to `--timeout` each (default 5m0s):
migration.activeDeadlineSeconds (240) stays below it, so the Job fails by itself before Helm gives
up and leaves it running (helm/README.md, "Install and upgrade"). With network policy on, the
hook <release>-<svc>-migrate (weight 5) lets the Job reach DNS and PostgreSQL. With
database.migrationSecret the Job also gets MOTCUA_<SVC>_MIGRATION_DATABASE_URL, the schema
owner's URL, and migrates with it; the Deployment never gets that Secret (motcua-lib.migrationSecretEnv).
*/}}
{{- define "motcua-lib.migration-job" -}}
{{- if .Values.migration.enabled -}}
{{- include "motcua-lib.validate" . -}}
{{- $m := .Values.migration -}}
apiVersion: batch/v1
kind: Job
metadata:
  name: {{ include "motcua-lib.fullname" . | trunc 55 | trimSuffix "-" }}-migrate
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "migration") | nindent 4 }}
  annotations:
    helm.sh/hook: pre-install,pre-upgrade
    helm.sh/hook-weight: "10"
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  backoffLimit: {{ $m.backoffLimit }}
  activeDeadlineSeconds: {{ $m.activeDeadlineSeconds }}
  template:
    metadata:
      labels:
        {{- include "motcua-lib.labels" (dict "ctx" . "component" "migration") | nindent 8 }}
        {{- with .Values.podLabels }}
        {{- toYaml . | nindent 8 }}
        {{- end }}
    spec:
      restartPolicy: Never
      {{- with $m.serviceAccountName }}
      serviceAccountName: {{ . }}
      {{- end }}
      automountServiceAccountToken: false
      enableServiceLinks: false
      {{- with include "motcua-lib.imagePullSecrets" . | trim }}{{ . | nindent 6 }}{{- end }}
      securityContext:
        {{- include "motcua-lib.podSecurityContext" . | nindent 8 }}
      {{- with include "motcua-lib.scheduling" . | trim }}{{ . | nindent 6 }}{{- end }}
      containers:
        - name: migrate
          image: {{ include "motcua-lib.image" . | quote }}
          imagePullPolicy: {{ .Values.image.pullPolicy }}
          command: ["python", "-m", {{ include "motcua-lib.module" . | quote }}, "migrate"]
          env:
            {{- with include "motcua-lib.inlineEnv" . | trim }}{{ . | nindent 12 }}{{- end }}
            {{- with include "motcua-lib.migrationSecretEnv" . | trim }}{{ . | nindent 12 }}{{- end }}
          resources:
            {{- toYaml ($m.resources | default .Values.resources) | nindent 12 }}
          securityContext:
            {{- include "motcua-lib.containerSecurityContext" . | nindent 12 }}
          volumeMounts:
            {{- include "motcua-lib.volumeMounts" . | nindent 12 }}
      volumes:
        {{- include "motcua-lib.volumes" . | nindent 8 }}
{{- end -}}
{{- end -}}

{{/*
`helm test`: asks the service's gRPC health endpoint (grpc.health.v1.Health/Check) through its
Service, with grpc-health-probe. With TLS on, the probe presents the service's own certificate
(mTLS) and checks the server against the CA in the same Secret.
*/}}
{{- define "motcua-lib.test-pod" -}}
{{- if .Values.tests.enabled -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $paths := include "motcua-lib.paths" . | fromYaml -}}
{{- $fullname := include "motcua-lib.fullname" . -}}
{{- $host := printf "%s.%s.svc" $fullname .Release.Namespace -}}
apiVersion: v1
kind: Pod
metadata:
  name: {{ $fullname | trunc 45 | trimSuffix "-" }}-test-grpc-health
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "test") | nindent 4 }}
  annotations:
    helm.sh/hook: test
    helm.sh/hook-delete-policy: before-hook-creation,hook-succeeded
spec:
  restartPolicy: Never
  automountServiceAccountToken: false
  enableServiceLinks: false
  {{- with include "motcua-lib.imagePullSecrets" . | trim }}{{ . | nindent 2 }}{{- end }}
  securityContext:
    {{- include "motcua-lib.podSecurityContext" . | nindent 4 }}
  containers:
    - name: grpc-health-probe
      image: {{ $s.grpcHealthProbeImage | quote }}
      imagePullPolicy: IfNotPresent
      args:
        - -addr={{ $host }}:{{ .Values.ports.grpc }}
        - -connect-timeout=5s
        - -rpc-timeout=5s
        {{- if $s.tls.enabled }}
        - -tls
        - -tls-server-name={{ $host }}
        - -tls-client-cert={{ $paths.tls }}/{{ $s.tls.certKey }}
        - -tls-client-key={{ $paths.tls }}/{{ $s.tls.keyKey }}
        {{- with $s.tls.clientCAKey }}
        - -tls-ca-cert={{ $paths.tls }}/{{ . }}
        {{- end }}
        {{- end }}
      resources:
        requests:
          cpu: 10m
          memory: 16Mi
        limits:
          cpu: 100m
          memory: 64Mi
      securityContext:
        {{- include "motcua-lib.containerSecurityContext" . | nindent 8 }}
      {{- if $s.tls.enabled }}
      volumeMounts:
        - name: tls
          mountPath: {{ $paths.tls }}
          readOnly: true
      {{- end }}
  {{- if $s.tls.enabled }}
  volumes:
    - name: tls
      secret:
        secretName: {{ $s.tls.existingSecret | quote }}
        defaultMode: 0440
  {{- end }}
{{- end -}}
{{- end -}}
