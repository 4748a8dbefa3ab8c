package api

// Identity is who an echo server is. It is sent on every answer: the JSON
// body of HTTP responses, the greeting line of TCP connections and the
// fields of gRPC responses.
type Identity struct {
	Pod            string `json:"pod"`
	Namespace      string `json:"namespace"`
	ServiceAccount string `json:"serviceAccount"`
	Version        string `json:"version"`
	Node           string `json:"node"`
	PodIP          string `json:"podIP"`
	Hostname       string `json:"hostname"`
}

// Environment variables read by IdentityFromEnv (set through the downward
// API in pod specs).
const (
	EnvPodName        = "POD_NAME"
	EnvPodNamespace   = "POD_NAMESPACE"
	EnvServiceAccount = "SERVICE_ACCOUNT"
	EnvVersion        = "VERSION"
	EnvNodeName       = "NODE_NAME"
	EnvPodIP          = "POD_IP"
)

// IdentityFromEnv builds an Identity from environment lookups (os.LookupEnv
// in the binary, a map in tests). Pod falls back to hostname when POD_NAME
// is unset, so a server started by hand still names itself.
func IdentityFromEnv(lookup func(string) (string, bool), hostname string) Identity {
	get := func(k string) string {
		v, _ := lookup(k)
		return v
	}
	id := Identity{
		Pod:            get(EnvPodName),
		Namespace:      get(EnvPodNamespace),
		ServiceAccount: get(EnvServiceAccount),
		Version:        get(EnvVersion),
		Node:           get(EnvNodeName),
		PodIP:          get(EnvPodIP),
		Hostname:       hostname,
	}
	if id.Pod == "" {
		id.Pod = hostname
	}
	return id
}
