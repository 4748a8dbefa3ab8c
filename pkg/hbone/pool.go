package hbone

// connLoad is what the pool needs to know about a connection to place a
// new stream on it.
type connLoad struct {
	usable bool // open, no GOAWAY either way, stream ids left
	active int  // open streams plus slots already promised
	max    int  // min(our cap, the peer's SETTINGS_MAX_CONCURRENT_STREAMS)
}

// pickConn chooses the connection for a new stream: the first usable one
// with room, so streams pack onto few connections and the rest go idle and
// get reaped. -1 means a new connection is needed.
func pickConn(loads []connLoad) int {
	for i, l := range loads {
		if l.usable && l.active < l.max {
			return i
		}
	}
	return -1
}
