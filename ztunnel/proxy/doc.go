// Package proxy assembles ztunnel's data path: the outbound proxy (15001,
// package outbound), the HBONE inbound (15008, package inbound) and the
// plaintext inbound (15006, package passthrough) on listeners the caller
// provides (the capture layer's transparent listeners in production, plain
// loopback listeners in tests), sharing one state store, one HBONE client
// pool, one connection tracker (access log, /config_dump "connections")
// and the Istio TCP metrics.
//
// Goroutines: one accept loop per plaintext listener plus one per accepted
// connection (which relays in itself and one more goroutine); the HBONE
// server's own connection and per-stream goroutines. Run stops accepting
// when its context ends, lets open connections finish for DrainTimeout,
// then closes what is left and returns once every goroutine is gone.
package proxy
