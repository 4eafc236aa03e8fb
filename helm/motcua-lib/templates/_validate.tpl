{{/*
Refusals that values.schema.json cannot express: they combine a service's values with the
global ones, compare two values, or look at the merged result of serviceDefaults and
services.<svc>. Each message names the value to change. Included by the Deployment and the
migration Job, so `helm lint`, `helm template` and `helm install` all refuse.
*/}}

{{/*
A Kubernetes quantity (the schema has checked its grammar) as a plain number, for comparing
two quantities: "500m" -> 0.5, "1Gi" -> 1073741824, "1e3" -> 1000.
*/}}
{{- define "motcua-lib.quantityValue" -}}
{{- $q := toString . -}}
{{- $number := regexFind "^[+]?([0-9]+([.][0-9]*)?|[.][0-9]+)" $q -}}
{{- $suffix := trimPrefix $number $q -}}
{{- $value := float64 (trimPrefix "+" $number) -}}
{{- $factors := dict "" "1" "m" "0.001" "k" "1000" "M" "1000000" "G" "1000000000" "T" "1000000000000" "P" "1000000000000000" "E" "1000000000000000000" "Ki" "1024" "Mi" "1048576" "Gi" "1073741824" "Ti" "1099511627776" "Pi" "1125899906842624" "Ei" "1152921504606846976" -}}
{{- if hasKey $factors $suffix -}}
{{- $value = mulf $value (float64 (get $factors $suffix)) -}}
{{- else -}}
{{- $exponent := int64 (trimPrefix "+" (substr 1 (len $suffix) $suffix)) -}}
{{- range until (int (ternary (mul -1 $exponent) $exponent (lt $exponent 0))) -}}
{{- $value = ternary (divf $value 10) (mulf $value 10) (lt $exponent 0) -}}
{{- end -}}
{{- end -}}
{{- $value -}}
{{- end -}}

{{/*
requests <= limits for each resource given in both. Call with (dict "resources" <map> "path"
"services.dossier.resources").
*/}}
{{- define "motcua-lib.validateResources" -}}
{{- $r := .resources | default dict -}}
{{- $requests := $r.requests | default dict -}}
{{- $limits := $r.limits | default dict -}}
{{- range $name := list "cpu" "memory" "ephemeral-storage" -}}
{{- if and (hasKey $requests $name) (hasKey $limits $name) -}}
{{- $request := include "motcua-lib.quantityValue" (get $requests $name) | float64 -}}
{{- $limit := include "motcua-lib.quantityValue" (get $limits $name) | float64 -}}
{{- if gt $request $limit -}}
{{- fail (printf "motcua: %s.requests.%s (%v) is above %s.limits.%s (%v): a request may not exceed its limit (the values in effect: serviceDefaults with services.<service> merged over it)" $.path $name (get $requests $name) $.path $name (get $limits $name)) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- range $kind := list "requests" "limits" -}}
{{- $given := get $r $kind | default dict -}}
{{- range $name := ternary (list "cpu" "memory") (list "memory") (eq $kind "requests") -}}
{{- if not (hasKey $given $name) -}}
{{- fail (printf "motcua: %s.%s.%s is required (in serviceDefaults or services.<service>)" $.path $kind $name) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- end -}}

{{- define "motcua-lib.validate" -}}
{{- $s := include "motcua-lib.settings" . | fromYaml -}}
{{- $svc := .Service -}}
{{- $at := printf "services.%s" $svc -}}
{{- $p := include "motcua-lib.envPrefix" . -}}
{{- if not $s.kafka.bootstrap -}}
{{- fail (printf "motcua %s: global.kafka.bootstrap is required (e.g. kafka:9092)" $svc) -}}
{{- end -}}
{{- if and (not $s.jwt.publicKeySecret) (not $s.jwt.jwksUrl) -}}
{{- fail (printf "motcua %s: global.jwt.publicKeySecret is required: the Secret with the token issuer's public key (every gRPC call is authenticated; the services do not start without it); or global.jwt.jwksUrl, the issuer's JWKS or OIDC discovery URL" $svc) -}}
{{- end -}}
{{- if and $s.jwt.publicKeySecret $s.jwt.jwksUrl -}}
{{- fail (printf "motcua %s: global.jwt.publicKeySecret and global.jwt.jwksUrl are both set: choose one (the services refuse both)" $svc) -}}
{{- end -}}
{{- if not (dig "database" "existingSecret" "" .Values) -}}
{{- fail (printf "motcua %s: %s.database.existingSecret is required: the name of the Secret holding the database URL" $svc $at) -}}
{{- end -}}
{{- /* The migration role's Secret reaches the migration Job only (docs/adr/0077-postgres-roles.md). */ -}}
{{- if and .Values.database.migrationSecret (not .Values.migration.enabled) -}}
{{- fail (printf "motcua %s: %s.database.migrationSecret is set but %s.migration.enabled is false: the Deployment never gets the migration role, so it would migrate at start with the runtime role, which may not run DDL. Turn the migration Job on, or leave database.migrationSecret out" $svc $at $at) -}}
{{- end -}}
{{- if hasKey (.Values.secretEnv | default dict) "MIGRATION_DATABASE_URL" -}}
{{- fail (printf "motcua %s: %s.secretEnv.MIGRATION_DATABASE_URL would give the Deployment the migration role: set %s.database.migrationSecret instead (the migration Job only)" $svc $at $at) -}}
{{- end -}}
{{- range .Values.extraEnv | default list -}}
{{- if eq .name (printf "%sMIGRATION_DATABASE_URL" $p) -}}
{{- fail (printf "motcua %s: %s.extraEnv %s would give the Deployment the migration role: set %s.database.migrationSecret instead (the migration Job only)" $svc $at .name $at) -}}
{{- end -}}
{{- end -}}
{{- if and $s.tls.enabled (not $s.tls.existingSecret) -}}
{{- fail (printf "motcua %s: TLS is on but neither %s.tls.existingSecret nor global.tls.existingSecret names the Secret with the certificate" $svc $at) -}}
{{- end -}}
{{- if eq $s.kafka.securityProtocol "SASL_SSL" -}}
{{- if not $s.kafka.saslMechanism -}}
{{- fail (printf "motcua %s: global.kafka.sasl.mechanism is required when global.kafka.securityProtocol is SASL_SSL" $svc) -}}
{{- end -}}
{{- if not $s.kafka.saslUsername -}}
{{- fail (printf "motcua %s: global.kafka.securityProtocol is SASL_SSL but neither %s.kafka.sasl.username nor global.kafka.sasl.username names the Kafka principal" $svc $at) -}}
{{- end -}}
{{- if not $s.kafka.saslPasswordSecret -}}
{{- fail (printf "motcua %s: global.kafka.securityProtocol is SASL_SSL but neither %s.kafka.sasl.existingSecret nor global.kafka.sasl.existingSecret names the Secret with the SASL password" $svc $at) -}}
{{- end -}}
{{- end -}}
{{- /* Images: never from an implied docker.io in prod. */ -}}
{{- if and (eq $s.environment "prod") (not (include "motcua-lib.imageRegistry" .)) -}}
{{- fail (printf "motcua %s: global.imageRegistry (or %s.image.registry) is required when global.environment is prod: without it the image %s would be pulled from docker.io" $svc $at .Values.image.repository) -}}
{{- end -}}
{{- /* Partitions: one value. The services create the registry's topics with the registry's counts. */ -}}
{{- if and $s.kafka.createTopics (gt (int64 $s.kafka.topicPartitions) 0) -}}
{{- $registry := .Files.Get "topics.json" | fromJson -}}
{{- range $topic := $registry.topics | default list -}}
{{- $count := get $topic.partitions $s.environment | int64 -}}
{{- if ne $count (int64 $s.kafka.topicPartitions) -}}
{{- fail (printf "motcua %s: global.kafka.topicPartitions is %d but global.kafka.createTopics is true, and the services create %s with the topic registry's %d partitions for global.environment %s: set global.kafka.createTopics to false (topics from kafkaTopics or the platform), or leave global.kafka.topicPartitions at 0" $svc (int64 $s.kafka.topicPartitions) $topic.name $count $s.environment) -}}
{{- end -}}
{{- end -}}
{{- end -}}
{{- /* Autoscaling and resources. */ -}}
{{- $a := .Values.autoscaling | default dict -}}
{{- if and $a.enabled (gt (int64 $a.minReplicas) (int64 $a.maxReplicas)) -}}
{{- fail (printf "motcua %s: %s.autoscaling.minReplicas (%d) is above %s.autoscaling.maxReplicas (%d)" $svc $at (int64 $a.minReplicas) $at (int64 $a.maxReplicas)) -}}
{{- end -}}
{{- include "motcua-lib.validateResources" (dict "resources" .Values.resources "path" (printf "%s.resources" $at)) -}}
{{- with dig "migration" "resources" dict .Values -}}
{{- include "motcua-lib.validateResources" (dict "resources" . "path" (printf "%s.migration.resources" $at)) -}}
{{- end -}}
{{- /* Shutdown: one deadline (docs/adr/0010), and a pod grace that covers it. */ -}}
{{- if hasKey (.Values.config | default dict) "SHUTDOWN_GRACE_SECONDS" -}}
{{- fail (printf "motcua %s: %s.config.SHUTDOWN_GRACE_SECONDS: set %s.shutdownGraceSeconds instead (the pod's terminationGracePeriodSeconds is derived from it)" $svc $at $at) -}}
{{- end -}}
{{- range .Values.extraEnv | default list -}}
{{- if eq .name (printf "%sSHUTDOWN_GRACE_SECONDS" $p) -}}
{{- fail (printf "motcua %s: %s.extraEnv %s: set %s.shutdownGraceSeconds instead (the pod's terminationGracePeriodSeconds is derived from it)" $svc $at .name $at) -}}
{{- end -}}
{{- end -}}
{{- $minGrace := include "motcua-lib.minTerminationGrace" . | int64 -}}
{{- if lt (include "motcua-lib.terminationGrace" . | int64) $minGrace -}}
{{- fail (printf "motcua %s: %s.terminationGracePeriodSeconds (%d) is shorter than preStopSleepSeconds (%d) + shutdownGraceSeconds (%d) + 5 s: the kubelet would kill the service before its shutdown deadline. Leave it unset (derived: %d) or raise it" $svc $at (int64 .Values.terminationGracePeriodSeconds) (.Values.preStopSleepSeconds | default 0 | int64) (int64 .Values.shutdownGraceSeconds) $minGrace) -}}
{{- end -}}
{{- /* Secrets are never values: a setting named like one must come from a Secret. A PIN or
passphrase (a signing key's, docs/adr/0086) is read from a file by the keyring: secretFiles. */ -}}
{{- $secretish := "(^|_)(PASSWORD|PASSPHRASE|PIN|SECRET|TOKEN|API_KEY|PRIVATE_KEY|DATABASE_URL)$" -}}
{{- range $suffix, $_ := .Values.config -}}
{{- if regexMatch "(^|_)(PIN|PASSPHRASE)$" $suffix -}}
{{- fail (printf "motcua %s: %s.config.%s looks like a PIN or passphrase, and values never hold secrets: the keyring reads PINs and passphrases from files, so mount it with %s.secretFiles.%s_FILE: {secretName: <Secret>, key: <key>} and point the keyring's pin_file or passphrase_file at its path (helm/README.md, \"Signed papers\")" $svc $at $suffix $at $suffix) -}}
{{- else if regexMatch $secretish $suffix -}}
{{- fail (printf "motcua %s: %s.config.%s looks like a secret, and values never hold secrets: use %s.secretEnv.%s: {secretName: <Secret>, key: <key>}" $svc $at $suffix $at $suffix) -}}
{{- end -}}
{{- end -}}
{{- /* A *_FILE setting holds a path: from secretEnv it would hold the Secret's content. */ -}}
{{- range $suffix, $_ := .Values.secretEnv | default dict -}}
{{- if hasSuffix "_FILE" $suffix -}}
{{- fail (printf "motcua %s: %s.secretEnv.%s would set %s%s to the Secret's content, but the setting is a file's path: use %s.secretFiles.%s: {secretName: <Secret>, key: <key>} (mounted read-only, the setting set to its path)" $svc $at $suffix $p $suffix $at $suffix) -}}
{{- end -}}
{{- end -}}
{{- /* Files the service reads that come from Secrets (the signed papers' keyring, notify's
service token): only through secretFiles, which mounts them where the setting points. A path
under `config` that no secretFiles entry mounts names a file the pod does not have. */ -}}
{{- $paths := include "motcua-lib.paths" . | fromYaml -}}
{{- $mounted := list -}}
{{- range $suffix, $ref := .Values.secretFiles | default dict -}}
{{- $mounted = append $mounted (printf "%s/%s/%s" $paths.files (lower $suffix | replace "_" "-") $ref.key) -}}
{{- end -}}
{{- $config := .Values.config | default dict -}}
{{- range $suffix := get (dict "dossier" (list "DOCUMENTS_KEYRING") "notify" (list "DOSSIER_TOKEN_FILE")) $svc | default list -}}
{{- if and (hasKey $config $suffix) (not (has (toString (get $config $suffix)) $mounted)) -}}
{{- fail (printf "motcua %s: %s.config.%s (%v) is not a file the chart mounts: give it as %s.secretFiles.%s: {secretName: <Secret>, key: <key>}, which mounts the key read-only at %s/%s/<key> and sets %s%s to that path (helm/README.md, \"Signed papers\")" $svc $at $suffix (get $config $suffix) $at $suffix $paths.files (lower $suffix | replace "_" "-") $p $suffix) -}}
{{- end -}}
{{- end -}}
{{- /* Notify fetches the signed papers from the dossier service (docs/adr/0088). */ -}}
{{- if and (eq $svc "notify") (get $config "DOSSIER_GRPC_TARGET") -}}
{{- if not (or (hasKey (.Values.secretFiles | default dict) "DOSSIER_TOKEN_FILE") (hasKey $config "DOSSIER_TOKEN_FILE")) -}}
{{- fail (printf "motcua notify: %s.config.DOSSIER_GRPC_TARGET is set but %s.secretFiles.DOSSIER_TOKEN_FILE is not: notify calls GetDocument with a service account's bearer token read from that file, and refuses to start without it. Add %s.secretFiles.DOSSIER_TOKEN_FILE: {secretName: <Secret>, key: <key>}" $at $at $at) -}}
{{- end -}}
{{- $dossier := include "motcua-lib.peerContext" (dict "root" .Root "service" "dossier") | fromYaml -}}
{{- if and $dossier.enabled $dossier.tls (not (hasKey $config "DOSSIER_GRPC_CA_FILE")) -}}
{{- fail (printf "motcua notify: %s.config.DOSSIER_GRPC_TARGET is set and the dossier service serves gRPC over TLS, but %s.config.DOSSIER_GRPC_CA_FILE is not set, so notify would connect in plaintext and every fetch would fail: set DOSSIER_GRPC_CA_FILE (and, for mTLS, DOSSIER_GRPC_CERT_FILE and DOSSIER_GRPC_KEY_FILE), e.g. to notify's own certificate files under %s (values-prod.yaml)" $at $at (include "motcua-lib.paths" . | fromYaml).tls) -}}
{{- end -}}
{{- end -}}
{{- range .Values.extraEnv -}}
{{- if and (regexMatch $secretish .name) (hasKey . "value") -}}
{{- fail (printf "motcua %s: %s.extraEnv %s has a literal value, and values never hold secrets: use valueFrom.secretKeyRef (or %s.secretEnv)" $svc $at .name $at) -}}
{{- end -}}
{{- end -}}
{{- end -}}
