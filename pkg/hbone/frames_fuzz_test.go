package hbone

import (
	"bytes"
	"crypto/tls"
	"io"
	"net"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// FuzzServerFrames feeds arbitrary bytes, as the frames after the client
// preface, to the server side of a connection (read loop, HEADERS/CONTINUATION
// decoding, CONNECT parsing, flow control, handlers): it must never panic or
// hang, and once the peer is gone every goroutine must end (Close returns).
func FuzzServerFrames(f *testing.F) {
	for _, seed := range frameSeeds() {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		srv, err := NewServer(ServerConfig{
			GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
			Bundle:         func() spiffe.Bundle { return spiffe.Bundle{} },
			Handler: acceptHandler(func(_ *Request, s *Stream) {
				io.Copy(s, s) // echo until EOF, a reset or the end of the connection
			}),
			// Small limits so that short inputs reach them.
			Limits: Limits{MaxConcurrentStreams: 4, StreamWindow: 1 << 16, ConnWindow: 1 << 17, MaxHeaderBytes: 1 << 10, ReadIdleTimeout: -1},
		})
		if err != nil {
			t.Fatal(err)
		}
		client, server := net.Pipe()
		h := &serverConn{srv: srv, peer: spiffe.Identity{TrustDomain: "cluster.local", Namespace: "ns", ServiceAccount: "fuzz"}}
		c := newConn(server, nil, false, srv.cfg.Limits, h, &srv.stats, &srv.wg)
		srv.mu.Lock()
		srv.conns[c] = struct{}{}
		srv.mu.Unlock()
		drained := make(chan struct{})
		go func() { defer close(drained); io.Copy(io.Discard, client) }()
		if err := c.start(); err != nil {
			t.Fatal(err)
		}
		client.Write(data) // fails once the server hangs up: fine
		client.Close()
		srv.Close() // waits for the read, write and handler goroutines
		<-drained
		if st := srv.Stats(); st.Conns != 0 || st.Streams != 0 {
			t.Fatalf("after Close: %+v", st)
		}
	})
}

// frameSeeds are valid and nearly valid frame sequences.
func frameSeeds() [][]byte {
	var seeds [][]byte
	build := func(write func(fr *http2.Framer, block func(kv ...string) []byte)) {
		var buf bytes.Buffer
		fr := http2.NewFramer(&buf, nil)
		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		block := func(kv ...string) []byte {
			hbuf.Reset()
			for i := 0; i+1 < len(kv); i += 2 {
				enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
			}
			return bytes.Clone(hbuf.Bytes())
		}
		fr.WriteSettings()
		write(fr, block)
		seeds = append(seeds, buf.Bytes())
	}
	connect := []string{":method", "CONNECT", ":authority", "10.0.0.1:80"}
	// A tunnel: CONNECT, data both ways, half-close.
	build(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(connect...), EndHeaders: true})
		fr.WriteData(1, false, []byte("hello"))
		fr.WriteWindowUpdate(1, 1000)
		fr.WriteWindowUpdate(0, 1000)
		fr.WriteData(1, true, []byte("bye"))
	})
	// Header block split into CONTINUATIONs, with forwarded/baggage.
	build(func(fr *http2.Framer, block func(...string) []byte) {
		b := block(append(connect, "forwarded", "for=10.0.0.2", "baggage", "k=v")...)
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: b[:4]})
		fr.WriteContinuation(3, false, b[4:8])
		fr.WriteContinuation(3, true, b[8:])
		fr.WriteRSTStream(3, http2.ErrCodeCancel)
	})
	// Bad requests, pings, settings, goaway.
	build(func(fr *http2.Framer, block func(...string) []byte) {
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block(":method", "GET", ":path", "/"), EndHeaders: true, EndStream: true})
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 5, BlockFragment: block(":method", "CONNECT", ":authority", "host:80"), EndHeaders: true})
		fr.WritePing(false, [8]byte{1, 2, 3})
		fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20}, http2.Setting{ID: http2.SettingMaxFrameSize, Val: 1 << 14})
		fr.WriteSettingsAck()
		fr.WriteGoAway(0, http2.ErrCodeNo, nil)
	})
	// Several streams, one over the limit, padded data, priority.
	build(func(fr *http2.Framer, block func(...string) []byte) {
		for id := uint32(1); id <= 11; id += 2 {
			fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block(connect...), EndHeaders: true})
		}
		fr.WriteDataPadded(1, false, []byte("padded"), make([]byte, 10))
		fr.WritePriority(3, http2.PriorityParam{StreamDep: 1, Weight: 5})
		fr.WriteData(99, false, []byte("idle stream"))
	})
	return seeds
}
