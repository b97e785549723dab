{{/* Labels on every object this chart renders. */}}
{{- define "operators.labels" -}}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: strata
app.kubernetes.io/instance: {{ .Release.Name }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end }}

{{/*
The HelmRelease fields every operator shares: reconcile cadence, CRD
policy, remediation and drift detection. CreateReplace on install and on
upgrade because Helm alone installs a chart's crds/ folder once and never
upgrades it (the spotahome, fork and Strimzi charts keep their CRDs there).
*/}}
{{- define "operators.releaseSpec" -}}
interval: {{ .Values.flux.interval }}
timeout: {{ .Values.flux.timeout }}
install:
  crds: CreateReplace
  remediation:
    retries: {{ .Values.flux.remediationRetries }}
upgrade:
  crds: CreateReplace
  cleanupOnFail: true
  remediation:
    retries: {{ .Values.flux.remediationRetries }}
    remediateLastFailure: true
    strategy: rollback
driftDetection:
  mode: {{ .Values.flux.driftDetection }}
{{- end }}

{{/* Fails the render when a prerequisite API is not served. */}}
{{- define "operators.checks" -}}
{{- if .Values.prerequisites.check }}
{{- $need := dict "helm.toolkit.fluxcd.io/v2" "Flux 2.7 (flux install)" "source.toolkit.fluxcd.io/v1" "Flux 2.7 (flux install)" }}
{{- if and .Values.cloudnativePG.enabled .Values.barmanCloudPlugin.enabled }}
{{- $_ := set $need "cert-manager.io/v1" "cert-manager (the barman-cloud plugin's certificates)" }}
{{- end }}
{{- if .Values.monitoring.enabled }}
{{- $_ := set $need "monitoring.coreos.com/v1" "the Prometheus Operator CRDs (or set monitoring.enabled=false)" }}
{{- end }}
{{- $missing := list }}
{{- range $api, $what := $need }}
{{- if not ($.Capabilities.APIVersions.Has $api) }}
{{- $missing = append $missing (printf "%s (install %s)" $api $what) }}
{{- end }}
{{- end }}
{{- if $missing }}
{{- fail (printf "the cluster does not serve %s; see docs/install.md, or set prerequisites.check=false to render without a cluster" (join ", " $missing)) }}
{{- end }}
{{- end }}
{{- end }}
