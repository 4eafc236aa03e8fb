{{/*
The service loop. The umbrella chart (helm/motcua) has one template file per kind of object,
and each is one line:

  {{- include "motcua-lib.each" (list . "motcua-lib.deployment") }}

For every service under `services:` with `enabled: true` (audit, dossier, notify, payment: Go
templates range over a map in key order) it renders the named template with that service's
context, each object after a `---`. Why a loop and not four subcharts: docs/adr/0053.

The context looks like a chart's root context, for one service:

  .Service       the service's name: dossier, notify, payment or audit. From it follow the
                 Python module (motcua_<svc>), the environment prefix (MOTCUA_<SVC>_) and the
                 object names (<release>-<svc>).
  .Values        the service's effective values: `serviceDefaults` with `services.<svc>` merged
                 over it key by key (maps merge; scalars and lists replace; a null removes the
                 key, where the schema allows a null).
  .Global        the umbrella's `global` block.
  .Release, .Chart, .Capabilities, .Files, .Template: the umbrella chart's.
  .Root          the umbrella's root context.
*/}}

{{- define "motcua-lib.each" -}}
{{- $root := index . 0 -}}
{{- $template := index . 1 -}}
{{- range $svc := include "motcua-lib.enabledServices" $root | fromJsonArray -}}
{{- $values := dict -}}
{{- include "motcua-lib.mergeValues" (dict "root" $root "service" $svc "into" $values) -}}
{{- $ctx := dict "Service" $svc "Values" $values "Global" ($root.Values.global | default dict) "Release" $root.Release "Chart" $root.Chart "Capabilities" $root.Capabilities "Files" $root.Files "Template" $root.Template "Root" $root -}}
{{- $out := include $template $ctx | trim -}}
{{- if $out }}
---
{{ $out }}
{{- end -}}
{{- end -}}
{{- end -}}

{{/*
Fills the dict `into` with a service's effective values: serviceDefaults, then services.<svc>
over it. Prints nothing. Call with (dict "root" $ "service" "dossier" "into" (dict)).
*/}}
{{- define "motcua-lib.mergeValues" -}}
{{- $defaults := deepCopy (.root.Values.serviceDefaults | default dict) -}}
{{- $own := deepCopy (get (.root.Values.services | default dict) .service | default dict) -}}
{{- $_ := mergeOverwrite .into $defaults $own -}}
{{- $_ := unset .into "enabled" -}}
{{- include "motcua-lib.dropNulls" .into -}}
{{- end -}}

{{/* Removes the null values from a map, at every depth (Go templates pass maps by reference). */}}
{{- define "motcua-lib.dropNulls" -}}
{{- $m := . -}}
{{- range $k, $v := $m -}}
{{- if kindIs "invalid" $v -}}
{{- $_ := unset $m $k -}}
{{- else if kindIs "map" $v -}}
{{- include "motcua-lib.dropNulls" $v -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{/* The enabled services' names, in key order, as a JSON list. Call with the root context. */}}
{{- define "motcua-lib.enabledServices" -}}
{{- $out := list -}}
{{- range $svc, $own := .Values.services | default dict -}}
{{- if and $own $own.enabled }}{{ $out = append $out $svc }}{{ end -}}
{{- end -}}
{{- toJson $out -}}
{{- end -}}

{{/*
Another service of the release as this one sees it, for what crosses two services (notify
fetching the signed papers from dossier: the NetworkPolicy rules on both sides, notify's
checks). Returned as YAML: enabled, tls, grpcPort, networkPolicy (on for it), documentsTarget
(its config.DOSSIER_GRPC_TARGET) and selectorLabels (its server pods). Call with
(dict "root" .Root "service" "dossier").
*/}}
{{- define "motcua-lib.peerContext" -}}
{{- $root := .root -}}
{{- $values := dict -}}
{{- include "motcua-lib.mergeValues" (dict "root" $root "service" .service "into" $values) -}}
{{- $ctx := dict "Service" .service "Values" $values "Global" ($root.Values.global | default dict) "Release" $root.Release "Chart" $root.Chart "Capabilities" $root.Capabilities "Files" $root.Files "Template" $root.Template "Root" $root -}}
{{- $s := include "motcua-lib.settings" $ctx | fromYaml -}}
enabled: {{ has .service (include "motcua-lib.enabledServices" $root | fromJsonArray) }}
tls: {{ $s.tls.enabled }}
grpcPort: {{ dig "ports" "grpc" 50051 $values | int64 }}
networkPolicy: {{ include "motcua-lib.networkPolicyOn" $ctx | eq "true" }}
documentsTarget: {{ dig "config" "DOSSIER_GRPC_TARGET" "" $values | toString | quote }}
selectorLabels:
  {{- include "motcua-lib.selectorLabels" (dict "ctx" $ctx "component" "server") | nindent 2 }}
{{- end -}}
