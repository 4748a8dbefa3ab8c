// Command waypoint is the ambient mesh's L7 proxy for the services and
// workloads bound to a waypoint Gateway. See waypoint/config for its flags
// and waypoint/app for what it runs.
package main
