package hbone

import (
	"bytes"
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// rawClient speaks HTTP/2 frame by frame to the env's server.
type rawClient struct {
	tc   *tls.Conn
	fr   *http2.Framer
	hbuf bytes.Buffer
	henc *hpack.Encoder
}

func newRawClient(t *testing.T, e *env) *rawClient {
	t.Helper()
	cert, _ := e.certs.ClientCertificate(context.Background(), e.src)
	tc, err := tls.Dial("tcp", e.peer.String(), &tls.Config{
		InsecureSkipVerify: true, NextProtos: []string{"h2"}, Certificates: []tls.Certificate{*cert},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { tc.Close() })
	tc.SetDeadline(time.Now().Add(10 * time.Second))
	tc.Write([]byte(http2.ClientPreface))
	r := &rawClient{tc: tc, fr: http2.NewFramer(tc, tc)}
	r.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	r.henc = hpack.NewEncoder(&r.hbuf)
	r.fr.WriteSettings()
	return r
}

func (r *rawClient) headers(t *testing.T, id uint32, kv ...string) {
	t.Helper()
	if err := r.writeHeaders(id, kv...); err != nil {
		t.Fatal(err)
	}
}

func (r *rawClient) writeHeaders(id uint32, kv ...string) error {
	r.hbuf.Reset()
	for i := 0; i < len(kv); i += 2 {
		r.henc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return r.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: r.hbuf.Bytes(), EndHeaders: true})
}

// status reads frames until the response HEADERS of stream id.
func (r *rawClient) status(t *testing.T, id uint32) string {
	t.Helper()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("reading response of stream %d: %v", id, err)
		}
		if mh, ok := f.(*http2.MetaHeadersFrame); ok && mh.StreamID == id {
			return mh.PseudoValue("status")
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok && rst.StreamID == id {
			return "RST " + rst.ErrCode.String()
		}
	}
}

func TestOversizedHeadersGet400(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(s *ServerConfig, _ *ClientConfig) {
		s.MaxHeaderBytes = 1024
	})
	r := newRawClient(t, e)
	// Over the limit but not grossly: grossly oversized blocks (a field
	// longer than the limit, a block over twice it) make x/net's Framer end
	// the whole connection instead.
	v := strings.Repeat("x", 500)
	r.headers(t, 1, ":method", "CONNECT", ":authority", "10.0.0.1:80", "baggage", v, "x-a", v, "x-b", v)
	if got := r.status(t, 1); got != "400" {
		t.Fatalf("status %s, want 400", got)
	}
	// The connection survives (HPACK state stays in sync).
	r.headers(t, 3, ":method", "CONNECT", ":authority", "10.0.0.1:80")
	if got := r.status(t, 3); got != "200" {
		t.Fatalf("next stream: status %s, want 200", got)
	}
}

func TestServerRefusesStreamsOverLimit(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, acceptHandler(func(*Request, *Stream) { <-release }), func(s *ServerConfig, _ *ClientConfig) {
		s.MaxConcurrentStreams = 1
	})
	r := newRawClient(t, e)
	r.headers(t, 1, ":method", "CONNECT", ":authority", "10.0.0.1:80")
	if got := r.status(t, 1); got != "200" {
		t.Fatalf("stream 1: %s", got)
	}
	r.headers(t, 3, ":method", "CONNECT", ":authority", "10.0.0.1:80")
	if got := r.status(t, 3); got != "RST REFUSED_STREAM" {
		t.Fatalf("stream 3 over the limit: %s, want RST REFUSED_STREAM", got)
	}
}

func TestGetCertificateSeesLocalAddr(t *testing.T) {
	seen := make(chan net.Addr, 1)
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}), func(s *ServerConfig, _ *ClientConfig) {
		inner := s.GetCertificate
		s.GetCertificate = func(h *tls.ClientHelloInfo) (*tls.Certificate, error) {
			seen <- h.Conn.LocalAddr()
			return inner(h)
		}
	})
	s := e.dial(t, "10.0.0.1:80")
	s.Close()
	if got := <-seen; got.String() != e.peer.String() {
		t.Fatalf("GetCertificate saw local address %v, want %v", got, e.peer)
	}
}

func TestHandlerContextEndsWithConnection(t *testing.T) {
	done := make(chan error, 1)
	e := newEnv(t, HandlerFunc(func(ctx context.Context, r *Request) {
		r.Accept()
		<-ctx.Done()
		done <- ctx.Err()
	}))
	e.dial(t, "10.0.0.1:80")
	e.ln.killAll()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("ctx done without error")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("handler context still live 10 s after its connection died")
	}
}

func TestRapidResetClosesConnection(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, HandlerFunc(func(_ context.Context, r *Request) {
		<-release // a slow handler that does not notice the reset
		r.Reject(503)
	}), func(s *ServerConfig, _ *ClientConfig) {
		s.MaxConcurrentStreams = 5
	})
	r := newRawClient(t, e)
	go func() {
		for id := uint32(1); id < 200; id += 2 {
			if r.writeHeaders(id, ":method", "CONNECT", ":authority", "10.0.0.1:80") != nil ||
				r.fr.WriteRSTStream(id, http2.ErrCodeCancel) != nil {
				return
			}
		}
	}()
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("connection ended without GOAWAY: %v", err)
		}
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			if ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
				t.Fatalf("GOAWAY %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
			}
			return
		}
	}
}

func TestFlowControlViolationsCloseConnection(t *testing.T) {
	tests := []struct {
		name   string
		limits Limits
		sizes  []int
	}{
		{"stream window", Limits{StreamWindow: 20000}, []int{16384, 16384}},
		{"connection window", Limits{StreamWindow: 1 << 20, ConnWindow: 65535}, []int{40000, 40000}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			release := make(chan struct{})
			defer close(release)
			e := newEnv(t, acceptHandler(func(*Request, *Stream) { <-release }), func(s *ServerConfig, _ *ClientConfig) {
				s.Limits = tt.limits
			})
			r := newRawClient(t, e)
			r.headers(t, 1, ":method", "CONNECT", ":authority", "10.0.0.1:80")
			if got := r.status(t, 1); got != "200" {
				t.Fatalf("status %s", got)
			}
			for _, n := range tt.sizes {
				if err := r.fr.WriteData(1, false, make([]byte, n)); err != nil {
					t.Fatal(err)
				}
			}
			for {
				f, err := r.fr.ReadFrame()
				if err != nil {
					t.Fatalf("connection ended without GOAWAY: %v", err)
				}
				if ga, ok := f.(*http2.GoAwayFrame); ok {
					if ga.ErrCode != http2.ErrCodeFlowControl {
						t.Fatalf("GOAWAY %v, want FLOW_CONTROL_ERROR", ga.ErrCode)
					}
					return
				}
			}
		})
	}
}
