{{/*
Chart name, truncated to the 63 characters a label value allows.
*/}}
{{- define "strata-broker.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Full resource name prefix: the release name, with the chart name appended
unless the release name already contains it.
*/}}
{{- define "strata-broker.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/*
Chart name and version, for the helm.sh/chart label.
*/}}
{{- define "strata-broker.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels on every object.
*/}}
{{- define "strata-broker.labels" -}}
helm.sh/chart: {{ include "strata-broker.chart" . }}
{{ include "strata-broker.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/component: service-broker
app.kubernetes.io/part-of: strata
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{/*
Labels selecting the broker pods (immutable in the Deployment selector).
*/}}
{{- define "strata-broker.selectorLabels" -}}
app.kubernetes.io/name: {{ include "strata-broker.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{/*
ServiceAccount the broker runs as.
*/}}
{{- define "strata-broker.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "strata-broker.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
Secret holding the broker's basic-auth username and password.
*/}}
{{- define "strata-broker.credentialsSecretName" -}}
{{- default (printf "%s-credentials" (include "strata-broker.fullname" .)) .Values.credentials.existingSecret }}
{{- end }}

{{/*
Secret holding the serving certificate (written by cert-manager unless
tls.existingSecret is set).
*/}}
{{- define "strata-broker.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "strata-broker.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{/*
Namespace holding the broker's records: config.brokerNamespace, or the
release namespace.
*/}}
{{/*
Namespace of the restore drills' throwaway clusters; empty when drills are
off (config.drills.enabled false). The broker's default is strata-drills.
*/}}
{{- define "strata-broker.drillsNamespace" -}}
{{- $d := default (dict) .Values.config.drills }}
{{- if or (not (hasKey $d "enabled")) (eq (toString $d.enabled) "<nil>") $d.enabled }}
{{- default "strata-drills" $d.namespace }}
{{- end }}
{{- end }}

{{- define "strata-broker.recordsNamespace" -}}
{{- default .Release.Namespace .Values.config.brokerNamespace }}
{{- end }}

{{/*
In-cluster DNS name of the Service (<svc>.<ns>.svc), the name clients use and
the certificate is verified against.
*/}}
{{- define "strata-broker.serviceHost" -}}
{{- printf "%s.%s.svc" (include "strata-broker.fullname" .) .Release.Namespace }}
{{- end }}

{{/*
Container image reference; a digest wins over the tag.
*/}}
{{- define "strata-broker.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{/*
The broker configuration file (config.yaml): .Values.config, with
brokerNamespace defaulted to the release namespace. The broker decodes it
strictly (an unknown key stops it at start-up), so rendering fails first,
naming the key. The key lists mirror Config in broker/config.go, binding.OpenBaoConfig in binding/openbao.go,
postgres.Config in provisioners/postgres/builders.go, redis.Config in
provisioners/redis/builders.go and provisioners.BackupConfig (both engines'
backup).
*/}}
{{- define "strata-broker.config" -}}
{{- $config := deepCopy (default (dict) .Values.config) }}
{{- $_ := set $config "brokerNamespace" (include "strata-broker.recordsNamespace" .) }}
{{- include "strata-broker.checkKeys" (list "config" $config (list "brokerNamespace" "dashboardURLTemplate" "instancePage" "pollIntervalSeconds" "reconcileIntervalSeconds" "kubernetes" "tenancy" "postgres" "openBao" "redis" "kafka" "drills")) }}
{{- with $config.drills }}
{{- include "strata-broker.checkKeys" (list "config.drills" . (list "enabled" "namespace" "intervalSeconds" "timeoutSeconds" "minIntervalHours" "maxIntervalHours")) }}
{{- end }}
{{- with $config.instancePage }}
{{- include "strata-broker.checkKeys" (list "config.instancePage" . (list "externalURL" "prometheusURL")) }}
{{- end }}
{{- with $config.kubernetes }}
{{- include "strata-broker.checkKeys" (list "config.kubernetes" . (list "qps" "burst")) }}
{{- end }}
{{- $redis := default (dict) $config.redis }}
{{- include "strata-broker.checkKeys" (list "config.redis" $redis (list "redisImage" "exporterImage" "roleAgentImage" "storageClass" "operatorNamespace" "monitoringNamespace" "serverCertificates" "podMonitor" "backup" "snapshotImage")) }}
{{- with $redis.backup }}
{{- include "strata-broker.checkKeys" (list "config.redis.backup" . (list "bucket" "pathPrefix" "region" "kmsKeyId" "iamRoleArn" "endpointURL" "credentialsDir")) }}
{{- end }}
{{- /* A seed from S3 fetches with the broker's own image. */}}
{{- $postgres := default (dict) $config.postgres }}
{{- if not $postgres.seedImage }}
{{- $_ := set $postgres "seedImage" (include "strata-broker.image" .) }}
{{- end }}
{{- $_ := set $config "postgres" $postgres }}
{{- /* The snapshot jobs and restores run the broker's own image. */}}
{{- if not $redis.snapshotImage }}
{{- $_ := set $redis "snapshotImage" (include "strata-broker.image" .) }}
{{- end }}
{{- $_ := set $config "redis" $redis }}
{{- with $config.kafka }}
{{- include "strata-broker.checkKeys" (list "config.kafka" . (list "shared" "kafkaVersion" "metadataVersion" "storageClass" "podMonitor" "monitoringNamespace" "disasterRecovery")) }}
{{- with .shared }}
{{- include "strata-broker.checkKeys" (list "config.kafka.shared" . (list "name" "namespace" "bootstrapServers" "listener")) }}
{{- end }}
{{- range .disasterRecovery }}
{{- include "strata-broker.checkKeys" (list "config.kafka.disasterRecovery[]" . (list "name" "bootstrapServers" "secret" "username")) }}
{{- end }}
{{- end }}
{{- with $config.openBao }}
{{- include "strata-broker.checkKeys" (list "config.openBao" . (list "address" "caCertFile" "namespace" "databaseMount" "postgresCAFile" "credentialTTL" "bindingTokenRole" "auth")) }}
{{- with .auth }}
{{- include "strata-broker.checkKeys" (list "config.openBao.auth" . (list "method" "mount" "role" "serviceAccountTokenFile" "roleIdFile" "secretIdFile" "tokenFile")) }}
{{- end }}
{{- if and .address $.Values.openBaoCA.existingSecret (not .caCertFile) }}
{{- $_ := set . "caCertFile" "/etc/strata/openbao/ca.crt" }}
{{- end }}
{{- end }}
{{- if .Values.backupCredentials.existingSecret }}
{{- $postgres := default (dict) $config.postgres }}
{{- $backup := default (dict) $postgres.backup }}
{{- if not $backup.credentialsDir }}
{{- $_ := set $backup "credentialsDir" "/etc/strata/backup" }}
{{- end }}
{{- $_ := set $postgres "backup" $backup }}
{{- $_ := set $config "postgres" $postgres }}
{{- /* One Secret of static keys serves both engines' buckets (unless
Redis's snapshots use an IAM role, which excludes them). */}}
{{- $redisBackup := default (dict) $redis.backup }}
{{- if not (or $redisBackup.credentialsDir $redisBackup.iamRoleArn) }}
{{- $_ := set $redisBackup "credentialsDir" "/etc/strata/backup" }}
{{- end }}
{{- $_ := set $redis "backup" $redisBackup }}
{{- end }}
{{- with $config.tenancy }}
{{- include "strata-broker.checkKeys" (list "config.tenancy" . (list "cloudFoundryNamespaceTemplate" "deniedNamespaces" "allowedNamespaceSelector" "limits")) }}
{{- end }}
{{- with $config.postgres }}
{{- include "strata-broker.checkKeys" (list "config.postgres" . (list "images" "storageClass" "backup" "restore" "podMonitor" "operatorNamespace" "monitoringNamespace" "serverCertificates" "seedImage" "seedCABundle")) }}
{{- with .serverCertificates }}
{{- include "strata-broker.checkKeys" (list "config.postgres.serverCertificates" . (list "issuerName" "issuerKind" "issuerGroup")) }}
{{- end }}
{{- with .backup }}
{{- include "strata-broker.checkKeys" (list "config.postgres.backup" . (list "bucket" "pathPrefix" "region" "kmsKeyId" "iamRoleArn" "endpointURL" "credentialsDir" "archiveTimeoutSeconds")) }}
{{- end }}
{{- with .restore }}
{{- include "strata-broker.checkKeys" (list "config.postgres.restore" . (list "acrossNamespaces")) }}
{{- end }}
{{- if hasKey . "images" }}
{{- if not (kindIs "map" .images) }}
{{- fail "config.postgres.images must be a map of major version to image (or {} for the broker's pinned images)" }}
{{- end }}
{{- end }}
{{- end }}
{{- toYaml $config }}
{{- end }}

{{/*
Fails when the map (list path map allowedKeys) has a key not allowed.
*/}}
{{- define "strata-broker.checkKeys" -}}
{{- $path := index . 0 }}
{{- $m := index . 1 }}
{{- $allowed := index . 2 }}
{{- if not (kindIs "map" $m) }}
{{- fail (printf "%s must be a map" $path) }}
{{- end }}
{{- range $k, $_ := $m }}
{{- if not (has $k $allowed) }}
{{- fail (printf "%s.%s is not a broker configuration key; known keys: %s (docs/configuration.md)" $path $k (join ", " $allowed)) }}
{{- end }}
{{- end }}
{{- end }}
