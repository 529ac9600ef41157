{{/* The release's base name, at most 40 characters so that suffixes fit. */}}
{{- define "tocsin.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 40 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 40 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "tocsin.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{/* Selector labels of one component: (dict "root" $ "component" "controller"). */}}
{{- define "tocsin.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end -}}

{{- define "tocsin.image" -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end -}}

{{- define "tocsin.secretName" -}}
{{- .Values.secrets.existingSecret | default (printf "%s-secrets" (include "tocsin.fullname" .)) -}}
{{- end -}}

{{/* The controllers' Service, which the nodes use. */}}
{{- define "tocsin.controllerUrl" -}}
http://{{ include "tocsin.fullname" . }}-controller.{{ .Release.Namespace }}.svc.{{ .Values.clusterDomain }}:{{ .Values.controller.service.port }}
{{- end -}}

{{/* One controller pod's stable address: (dict "root" $ "index" 0). */}}
{{- define "tocsin.controllerPodUrl" -}}
{{- $name := include "tocsin.fullname" .root -}}
http://{{ $name }}-controller-{{ .index }}.{{ $name }}-controller-pods.{{ .root.Release.Namespace }}.svc.{{ .root.Values.clusterDomain }}:7400
{{- end -}}

{{/* One watchdog pod's stable address: (dict "root" $ "index" 0). */}}
{{- define "tocsin.watchdogPodUrl" -}}
{{- $name := include "tocsin.fullname" .root -}}
http://{{ $name }}-watchdog-{{ .index }}.{{ $name }}-watchdog-pods.{{ .root.Release.Namespace }}.svc.{{ .root.Values.clusterDomain }}:7500
{{- end -}}
