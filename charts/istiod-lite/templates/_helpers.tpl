{{/* Image reference: .Values.image, or <hub>/istiod-lite:<tag>. */}}
{{- define "istiod-lite.image" -}}
{{- if .Values.image -}}
{{- .Values.image -}}
{{- else -}}
{{- printf "%s/istiod-lite:%s" .Values.global.hub (toString .Values.global.tag) -}}
{{- end -}}
{{- end -}}

{{- define "istiod-lite.waypointImage" -}}
{{- printf "%s/waypoint:%s" .Values.global.hub (toString .Values.global.tag) -}}
{{- end -}}

{{- define "istiod-lite.logLevel" -}}
{{- default .Values.global.logLevel .Values.logLevel -}}
{{- end -}}

{{/* Labels on every object. */}}
{{- define "istiod-lite.labels" -}}
app: istiod-lite
app.kubernetes.io/name: istiod-lite
app.kubernetes.io/part-of: ambient
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/version: {{ .Values.global.tag | toString | quote }}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- define "istiod-lite.validate" -}}
{{- if not (has .Values.caSource (list "selfsigned" "cacerts")) -}}
{{- fail (printf "caSource must be selfsigned or cacerts, not %q" .Values.caSource) -}}
{{- end -}}
{{- end -}}
