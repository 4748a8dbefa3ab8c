// Package config parses ztunnel's command line and environment once into an
// immutable Config, validated with errors that say what to fix.
package config
