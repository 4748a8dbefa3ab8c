// Package shim runs one container of the local cluster as a process. The
// node agent (package nodelet) writes a Spec as JSON and starts
// `<daemon> run-container <spec.json>`; the daemon's main calls Main, which
// gives the calling OS thread a private mount namespace, bind-mounts the
// pod's volumes at their mount paths, joins the pod's network namespace and
// then execve's the container binary from that same thread, so the new
// program inherits exactly those namespaces. Exec does the same for an exec
// probe or `kubectl exec`-like command with another argv.
//
// No container runtime is involved: the filesystem is the host's, seen
// through the container's own bind mounts, so two pods never see each
// other's volume files.
package shim
