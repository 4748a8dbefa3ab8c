// Package config parses istiod-lite's flags and environment once into an
// immutable Config, validated and with defaults filled, which the binary logs
// at start-up and hands to package app.
package config
