{{- define "cc-heartbeat.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "cc-heartbeat.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "cc-heartbeat.selectorLabels" -}}
app.kubernetes.io/name: {{ include "cc-heartbeat.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "cc-heartbeat.labels" -}}
{{ include "cc-heartbeat.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "cc-heartbeat.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "cc-heartbeat.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "cc-heartbeat.healthcheck" -}}
["cc-heartbeat", "--config=/etc/cc-heartbeat/config.ini", "--web.config.file=/etc/cc-heartbeat/web/web.yml", "healthcheck", "--address=127.0.0.1:8080"]
{{- end -}}

{{/* Whether the kubelet can ask /ready itself: no user or client certificate needed, or the
     Authorization header given. */}}
{{- define "cc-heartbeat.readyOverHttp" -}}
{{- $web := .Values.webConfig -}}
{{- if or (not $web.existingSecret) .Values.probes.ready.httpHeaders (not (or $web.basicAuth $web.clientCertificates)) -}}
true
{{- end -}}
{{- end -}}

{{- define "cc-heartbeat.scheme" -}}
{{- if .Values.webConfig.tls -}}HTTPS{{- else -}}HTTP{{- end -}}
{{- end -}}
