// Package waypoint builds waypoint Gateways exactly as `istioctl waypoint
// apply` does and turns Gateways into list and status rows (pure functions).
package waypoint
