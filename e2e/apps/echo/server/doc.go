// Package server is the echo test app's server: raw TCP (greeting line,
// then echo with half-close), HTTP/1.1 and h2c (prior knowledge and
// upgrade) on the same port, HTTP over TLS, and gRPC (echo.Echo plus the
// standard health service). Every answer carries the server's Identity so
// tests can see which pod answered and what it saw; requests can script
// the answer with knobs (see package api). Run serves listeners handed in
// by the caller (port 0 in tests) until its context ends, then drains.
package server
