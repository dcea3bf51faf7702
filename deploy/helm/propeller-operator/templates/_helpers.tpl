{{/* Names and labels shared by every template. */}}

{{- define "propeller.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* The release's full name: the release name when it already holds the
chart's name (helm install propeller-operator ... gives propeller-operator). */}}
{{- define "propeller.fullname" -}}
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

{{- define "propeller.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "propeller.selectorLabels" -}}
app.kubernetes.io/name: {{ include "propeller.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "propeller.labels" -}}
helm.sh/chart: {{ include "propeller.chart" . }}
{{ include "propeller.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.image.tag | default .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: propeller
{{- end }}

{{- define "propeller.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "propeller.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "propeller.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (.Values.image.tag | default .Chart.AppVersion) }}
{{- end }}
{{- end }}

{{- define "propeller.joinTokenSecret" -}}
{{- .Values.joinToken.existingSecret | default (printf "%s-join-token" (include "propeller.fullname" .)) }}
{{- end }}

{{- define "propeller.brokerService" -}}
{{- printf "%s-mqtt" (include "propeller.fullname" .) }}
{{- end }}

{{/* The port the embedded broker serves: TLS or plain. */}}
{{- define "propeller.brokerPort" -}}
{{- if .Values.broker.tls.enabled }}{{ .Values.broker.service.tlsPort }}{{ else }}{{ .Values.broker.service.port }}{{ end }}
{{- end }}

{{/* How in-cluster proplets reach the broker. */}}
{{- define "propeller.brokerURL" -}}
{{- if not .Values.broker.embedded }}
{{- .Values.broker.external.url }}
{{- else }}
{{- printf "%s://%s.%s.svc:%v" (ternary "mqtts" "mqtt" .Values.broker.tls.enabled) (include "propeller.brokerService" .) .Release.Namespace (include "propeller.brokerPort" .) }}
{{- end }}
{{- end }}

{{/* Fail early on settings that cannot work together. */}}
{{- define "propeller.validate" -}}
{{- if and (not .Values.broker.embedded) (not .Values.broker.external.url) }}
{{- fail "broker.embedded=false needs broker.external.url (mqtt://host:1883 or mqtts://host:8883)" }}
{{- end }}
{{- if and .Values.broker.embedded .Values.broker.tls.enabled (not .Values.broker.tls.secretName) }}
{{- fail "broker.tls.enabled needs broker.tls.secretName, a kubernetes.io/tls Secret" }}
{{- end }}
{{- if and .Values.proplet.enabled (not .Values.broker.embedded) (not .Values.proplet.tokenSecret.name) }}
{{- fail "proplet.enabled with an external broker needs proplet.tokenSecret.name: the proplets' credential on that broker" }}
{{- end }}
{{- if and .Values.persistence.enabled (gt (int .Values.replicaCount) 1) (has "ReadWriteOnce" .Values.persistence.accessModes) }}
{{- fail "persistence with ReadWriteOnce cannot be shared by replicaCount > 1; use ReadWriteMany or one replica" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) .Values.broker.embedded }}
{{- fail "replicaCount > 1 needs an external broker (broker.embedded=false): only the leader's embedded broker listens, and the broker Service would send proplets to standbys too" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: two leaders would run every task twice" }}
{{- end }}
{{- end }}

{{/* The operator's pods; the proplet DaemonSet's differ in component. */}}
{{- define "propeller.operatorSelectorLabels" -}}
{{ include "propeller.selectorLabels" . }}
app.kubernetes.io/component: operator
{{- end }}
