// Package boundaries holds the test that keeps the layers apart: pkg/ imports
// no component, and no component (ztunnel, waypoint, istiod-lite, ctl)
// imports another.
package boundaries
