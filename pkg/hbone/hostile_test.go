package hbone

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// Hostile peers against the server: each test plays a client that breaks
// the rules in one way and checks that the server's limits hold.

// frameCounts is what a hostile client's reader saw from the server.
type frameCounts struct {
	mu        sync.Mutex
	status    map[string]int // response HEADERS by :status
	refused   int            // RST_STREAM(REFUSED_STREAM)
	dataBytes int            // DATA payload received (never acknowledged)
	goAway    *http2.ErrCode
	err       error // why reading ended
}

// readAll reads frames from r until the connection ends, counting them and
// never sending WINDOW_UPDATE: the client never reads its streams.
func (fc *frameCounts) readAll(r *rawClient, done chan<- struct{}) {
	defer close(done)
	for {
		f, err := r.fr.ReadFrame()
		fc.mu.Lock()
		if err != nil {
			fc.err = err
			fc.mu.Unlock()
			return
		}
		switch f := f.(type) {
		case *http2.MetaHeadersFrame:
			fc.status[f.PseudoValue("status")]++
		case *http2.RSTStreamFrame:
			if f.ErrCode == http2.ErrCodeRefusedStream {
				fc.refused++
			}
		case *http2.DataFrame:
			fc.dataBytes += len(f.Data())
		case *http2.GoAwayFrame:
			code := f.ErrCode
			fc.goAway = &code
		}
		fc.mu.Unlock()
	}
}

func heapAndStack() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

func onlyConn(t *testing.T, srv *Server) *conn {
	t.Helper()
	var c *conn
	eventually(t, "the server to register the connection", func() bool {
		srv.mu.Lock()
		defer srv.mu.Unlock()
		for x := range srv.conns {
			c = x
		}
		return c != nil
	})
	return c
}

// TestTenThousandStreamsNeverRead: a client opens 10,000 CONNECT streams on
// one connection, sends data on each and never reads (no WINDOW_UPDATE ever).
// The server runs at most MaxConcurrentStreams handlers and refuses the
// rest, its sends stop at the client's flow-control window, what it buffers
// is bounded by its own windows, and the heap stays small.
func TestTenThousandStreamsNeverRead(t *testing.T) {
	const (
		streams    = 10000
		heldPerStr = 112 << 10 // sent on each accepted stream: 100 × 112 KiB stays under the 16 MiB connection window
		maxGrowth  = 64 << 20
	)
	var handlers atomic.Int64
	reply := make([]byte, 1<<20) // shared, read-only
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		handlers.Add(1)
		// The destination has a lot to say; the client never reads it.
		// Write blocks on flow control until the connection closes.
		s.Write(reply)
	}))
	heap0, stack0 := heapAndStack()
	goroutines0 := runtime.NumGoroutine()

	r := newRawClient(t, e)
	r.tc.SetDeadline(time.Now().Add(2 * time.Minute)) // a generous bound on a loaded machine, not a speed check
	fc := &frameCounts{status: map[string]int{}}
	readDone := make(chan struct{})
	go fc.readAll(r, readDone)
	defer func() { r.tc.Close(); <-readDone }()
	c := onlyConn(t, e.srv)

	small, big := make([]byte, 1024), make([]byte, 16<<10)
	lim := Limits{}.withDefaults()
	for i := range streams {
		id := uint32(2*i + 1)
		if err := r.writeHeaders(id, ":method", "CONNECT", ":authority", "10.0.0.1:80"); err != nil {
			t.Fatalf("stream %d: %v", id, err)
		}
		payload := [][]byte{small}
		if i < int(lim.MaxConcurrentStreams) { // these will be accepted: fill them up
			payload = nil
			for n := 0; n < heldPerStr; n += len(big) {
				payload = append(payload, big)
			}
		}
		for _, p := range payload {
			if err := r.fr.WriteData(id, false, p); err != nil {
				t.Fatalf("stream %d DATA: %v", id, err)
			}
		}
	}
	// The read loop is sequential: once it saw this last stream, it has
	// handled every frame before it.
	last := uint32(2*streams + 1)
	r.headers(t, last, ":method", "CONNECT", ":authority", "10.0.0.1:80")
	eventually(t, "the server to read every frame", func() bool { return c.peerIDSnapshot() == last })

	heap1, stack1 := heapAndStack()
	goroutines1 := runtime.NumGoroutine()
	dHeap, dStack := int64(heap1)-int64(heap0), int64(stack1)-int64(stack0)
	growth := dHeap + dStack
	t.Logf("10,000 streams, never read: heap %+.1f MiB, stacks %+.1f MiB, goroutines %+d; %d handlers ran; client data the server holds: %.1f MiB",
		float64(dHeap)/(1<<20), float64(dStack)/(1<<20), goroutines1-goroutines0, handlers.Load(), float64(heldPerStr*int(lim.MaxConcurrentStreams))/(1<<20))

	if got := e.srv.Stats().Streams; got != int64(lim.MaxConcurrentStreams) {
		t.Errorf("server holds %d streams, want MaxConcurrentStreams = %d", got, lim.MaxConcurrentStreams)
	}
	eventually(t, "the handlers of the accepted streams to start", func() bool { return handlers.Load() == int64(lim.MaxConcurrentStreams) })
	eventually(t, "a REFUSED_STREAM for every stream over the limit", func() bool {
		fc.mu.Lock()
		defer fc.mu.Unlock()
		return fc.refused == streams+1-int(lim.MaxConcurrentStreams)
	})
	fc.mu.Lock()
	if fc.status["200"] != int(lim.MaxConcurrentStreams) {
		t.Errorf("%d streams accepted, want %d", fc.status["200"], lim.MaxConcurrentStreams)
	}
	if fc.dataBytes > initialWindow {
		t.Errorf("server sent %d bytes of DATA to a client that never granted more than the initial %d-byte window", fc.dataBytes, initialWindow)
	}
	if fc.goAway != nil {
		t.Errorf("server sent GOAWAY(%v) to a client that kept within the limits", *fc.goAway)
	}
	fc.mu.Unlock()
	if got := handlers.Load(); got != int64(lim.MaxConcurrentStreams) {
		t.Errorf("%d handlers ran, want %d", got, lim.MaxConcurrentStreams)
	}
	if growth > maxGrowth {
		t.Errorf("heap+stack grew by %d MiB, want < %d MiB", growth>>20, maxGrowth>>20)
	}
	if d := goroutines1 - goroutines0; d > int(lim.MaxConcurrentStreams)*2+16 {
		t.Errorf("%d more goroutines, want about one per accepted stream", d)
	}

	// Closing the connection frees everything.
	r.tc.Close()
	eventually(t, "the server to release the connection", func() bool {
		st := e.srv.Stats()
		return st.Conns == 0 && st.Streams == 0
	})
}

// TestOversizedHeaderBlocksCloseConnection: header blocks far beyond
// MaxHeaderBytes — a CONTINUATION flood that keeps adding fields, an endless
// series of empty CONTINUATION frames, one field longer than the limit —
// get GOAWAY and the connection closed long before the flood ends.
func TestOversizedHeaderBlocksCloseConnection(t *testing.T) {
	const floodFrames = 200000
	field := func(name, value string) []byte {
		var b bytes.Buffer
		// Never indexed: each CONTINUATION decodes to one more field.
		hpack.NewEncoder(&b).WriteField(hpack.HeaderField{Name: name, Value: value, Sensitive: true})
		return b.Bytes()
	}
	pad := field("x-pad", strings.Repeat("p", 1000))
	tests := []struct {
		name     string
		first    []byte // HEADERS block fragment
		next     []byte // each CONTINUATION's fragment; nil: no CONTINUATION
		wantCode http2.ErrCode
	}{
		{"CONTINUATION flood of fields", pad, pad, http2.ErrCodeProtocol},
		{"empty CONTINUATION flood", pad, []byte{}, http2.ErrCodeEnhanceYourCalm},
		{"one field over the limit", field("x-big", strings.Repeat("b", 20<<10)), nil, http2.ErrCodeCompression},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
			r := newRawClient(t, e)
			r.tc.SetDeadline(time.Now().Add(20 * time.Second)) // generous: the server must hang up long before

			fc := &frameCounts{status: map[string]int{}}
			readDone := make(chan struct{})
			go fc.readAll(r, readDone)

			r.hbuf.Reset()
			r.henc.WriteField(hpack.HeaderField{Name: ":method", Value: "CONNECT"})
			r.henc.WriteField(hpack.HeaderField{Name: ":authority", Value: "10.0.0.1:80"})
			block := append(r.hbuf.Bytes(), tt.first...)
			writeErr := make(chan error, 1)
			go func() {
				if err := r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: block, EndHeaders: tt.next == nil}); err != nil || tt.next == nil {
					writeErr <- err
					return
				}
				for range floodFrames {
					if err := r.fr.WriteContinuation(1, false, tt.next); err != nil {
						writeErr <- err
						return
					}
				}
				writeErr <- nil
			}()
			<-readDone
			fc.mu.Lock()
			goAway, readErr := fc.goAway, fc.err
			fc.mu.Unlock()
			if goAway == nil || *goAway != tt.wantCode {
				t.Fatalf("connection ended (%v) with GOAWAY %v, want GOAWAY(%v)", readErr, goAway, tt.wantCode)
			}
			if !connClosed(readErr) {
				t.Fatalf("after GOAWAY the read ended with %v, want the connection closed", readErr)
			}
			r.tc.Close() // stop the flood if it is still going
			<-writeErr
			eventually(t, "the server to drop the connection", func() bool { return e.srv.Stats().Conns == 0 })
			if fc.status["200"] != 0 {
				t.Fatal("an oversized header block was served")
			}
		})
	}
}

// connClosed reports whether a read error means the peer closed the
// connection (not a timeout).
func connClosed(err error) bool {
	return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, syscall.ECONNRESET)
}

// TestStalledHandshakesClosed: a client that stalls anywhere before the
// connection is up — silent after TCP connect, half a ClientHello, TLS done
// but no HTTP/2 preface, half the preface — is disconnected after
// HandshakeTimeout, and nothing of it stays on the server.
func TestStalledHandshakesClosed(t *testing.T) {
	const timeout = 100 * time.Millisecond
	tests := []struct {
		name  string
		stall func(t *testing.T, e *env) net.Conn
	}{
		{"silent", func(t *testing.T, e *env) net.Conn { return dialTCP(t, e) }},
		{"half a ClientHello", func(t *testing.T, e *env) net.Conn {
			c := dialTCP(t, e)
			// A handshake record header announcing 512 bytes, then 10 of them.
			c.Write([]byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, 0, 0, 0, 0})
			return c
		}},
		{"no HTTP/2 preface", func(t *testing.T, e *env) net.Conn { return tlsClient(t, e) }},
		{"half the preface", func(t *testing.T, e *env) net.Conn {
			c := tlsClient(t, e)
			c.Write([]byte(http2.ClientPreface[:10]))
			return c
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(s *ServerConfig, _ *ClientConfig) {
				s.HandshakeTimeout = timeout
			})
			c := tt.stall(t, e)
			defer c.Close()
			// A generous bound: the server must hang up by itself, long
			// before this deadline.
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, err := io.Copy(io.Discard, c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatalf("server kept a stalled connection open for 10 s with HandshakeTimeout %v", timeout)
			}
			eventually(t, "the server to forget the connection", func() bool {
				e.srv.mu.Lock()
				defer e.srv.mu.Unlock()
				return len(e.srv.pending) == 0 && len(e.srv.conns) == 0
			})
		})
	}
}

func TestHandshakeTimeoutDefault(t *testing.T) {
	srv, err := NewServer(ServerConfig{GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, nil },
		Bundle: func() spiffe.Bundle { return spiffe.Bundle{} }, Handler: HandlerFunc(func(context.Context, *Request) {})})
	if err != nil {
		t.Fatal(err)
	}
	if srv.cfg.HandshakeTimeout != DefaultHandshakeTimeout || DefaultHandshakeTimeout != 10*time.Second {
		t.Fatalf("HandshakeTimeout = %v, want the 10 s default", srv.cfg.HandshakeTimeout)
	}
}

func dialTCP(t *testing.T, e *env) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", e.peer.String())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// tlsClient completes the TLS handshake (ALPN h2, a valid certificate) and
// sends nothing more.
func tlsClient(t *testing.T, e *env) net.Conn {
	t.Helper()
	cert, _ := e.certs.ClientCertificate(context.Background(), e.src)
	tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	return tc
}
