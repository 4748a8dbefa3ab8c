{{/* Image reference: .Values.image, or <hub>/ztunnel:<tag>. */}}
{{- define "ztunnel.image" -}}
{{- if .Values.image -}}
{{- .Values.image -}}
{{- else -}}
{{- printf "%s/ztunnel:%s" .Values.global.hub (toString .Values.global.tag) -}}
{{- end -}}
{{- end -}}

{{- define "ztunnel.logLevel" -}}
{{- default .Values.global.logLevel .Values.logLevel -}}
{{- end -}}

{{- define "ztunnel.istiod" -}}
{{- printf "istiod-lite.%s.svc:15012" .Release.Namespace -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "ztunnel.labels" -}}
app: ztunnel
app.kubernetes.io/name: ztunnel
app.kubernetes.io/part-of: ambient
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.global.tag | toString | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{/* Downward-API environment shared by both containers. */}}
{{- define "ztunnel.env" -}}
- name: NODE_NAME
  valueFrom:
    fieldRef:
      fieldPath: spec.nodeName
- name: POD_NAME
  valueFrom:
    fieldRef:
      fieldPath: metadata.name
- name: POD_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: INSTANCE_IP
  valueFrom:
    fieldRef:
      fieldPath: status.podIP
{{- end -}}
