{{/*
Ingress to a service's HTTP endpoint (payment: the gateway's IPN and the payer's return;
notify: the providers' delivery receipts). Off by default: many platforms route with their own
ingress objects; those point at the Service port http-<key>.
*/}}
{{- define "motcua-lib.ingress" -}}
{{- $i := .Values.ingress | default dict -}}
{{- $ports := (include "motcua-lib.httpPorts" . | fromYaml).ports -}}
{{- if and $i.enabled $ports -}}
{{- $port := first $ports -}}
apiVersion: networking.k8s.io/v1
kind: Ingress
metadata:
  name: {{ include "motcua-lib.fullname" . }}
  namespace: {{ .Release.Namespace }}
  labels:
    {{- include "motcua-lib.labels" (dict "ctx" . "component" "server") | nindent 4 }}
  {{- with $i.annotations }}
  annotations:
    {{- toYaml . | nindent 4 }}
  {{- end }}
spec:
  {{- with $i.className }}
  ingressClassName: {{ . | quote }}
  {{- end }}
  {{- with $i.tlsSecret }}
  tls:
    - hosts:
        - {{ $i.host | quote }}
      secretName: {{ . | quote }}
  {{- end }}
  rules:
    - host: {{ $i.host | quote }}
      http:
        paths:
          - path: {{ $i.path | default "/" | quote }}
            pathType: {{ $i.pathType | default "Prefix" }}
            backend:
              service:
                name: {{ include "motcua-lib.fullname" . }}
                port:
                  name: {{ $port.name }}
{{- end -}}
{{- end -}}
