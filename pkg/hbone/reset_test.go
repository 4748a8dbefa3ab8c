package hbone

import (
	"context"
	"errors"
	"io"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
)

// TestReset: Reset aborts a stream from either side; the peer reads the
// bytes sent before it and then ErrStreamReset, never a clean io.EOF, and
// both sides forget the stream while the connection stays usable.
func TestReset(t *testing.T) {
	tests := []struct {
		name         string
		serverResets bool
		// closeWriteFirst: the resetting side half-closed before it reset,
		// so the peer's Read ends with io.EOF, but its Write still fails.
		closeWriteFirst bool
		wantRead        error
	}{
		{name: "client resets", wantRead: ErrStreamReset},
		{name: "server resets", serverResets: true, wantRead: ErrStreamReset},
		{name: "client resets after CloseWrite", closeWriteFirst: true, wantRead: io.EOF},
		{name: "server resets after CloseWrite", serverResets: true, closeWriteFirst: true, wantRead: io.EOF},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			streams := make(chan *Stream, 1)
			release := make(chan struct{})
			e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
				streams <- s
				<-release // the test drives the server's stream
			}))
			defer close(release)
			cs := e.dial(t, "10.0.0.1:80")
			defer cs.Close()
			ss := <-streams
			resetter, peer := cs, ss
			if tt.serverResets {
				resetter, peer = ss, cs
			}

			if _, err := resetter.Write([]byte("partial")); err != nil {
				t.Fatal(err)
			}
			if tt.closeWriteFirst {
				if err := resetter.CloseWrite(); err != nil {
					t.Fatal(err)
				}
			}
			buf := make([]byte, 7)
			if _, err := io.ReadFull(peer, buf); err != nil || string(buf) != "partial" {
				t.Fatalf("peer read %q, %v; want the bytes sent before the reset", buf, err)
			}
			if err := resetter.Reset(); err != nil {
				t.Fatalf("Reset: %v", err)
			}

			if _, err := peer.Read(buf); err != tt.wantRead && !errors.Is(err, tt.wantRead) {
				t.Fatalf("peer Read after the reset: %v, want %v", err, tt.wantRead)
			}
			// More than the stream window: it cannot all be accepted by a
			// stream that is gone, so Write ends with the reset either way.
			if _, err := peer.Write(make([]byte, 2*DefaultStreamWindow)); !errors.Is(err, ErrStreamReset) {
				t.Fatalf("peer Write after the reset: %v, want ErrStreamReset", err)
			}
			if _, err := resetter.Read(buf); !errors.Is(err, ErrClosed) {
				t.Errorf("Read after Reset: %v, want ErrClosed", err)
			}
			if _, err := resetter.Write(buf); !errors.Is(err, ErrClosed) {
				t.Errorf("Write after Reset: %v, want ErrClosed", err)
			}
			if err := resetter.Reset(); err != nil {
				t.Errorf("second Reset: %v", err)
			}
			if err := resetter.Close(); err != nil {
				t.Errorf("Close after Reset: %v", err)
			}
			if c, s := e.cl.Stats().Streams, e.srv.Stats().Streams; c != 0 || s != 0 {
				t.Errorf("open streams after the reset: client %d, server %d; want 0", c, s)
			}

			// A reset ends the stream, not the connection.
			again, err := e.cl.Dial(context.Background(), e.req("10.0.0.1:80"))
			if err != nil {
				t.Fatalf("Dial after a reset: %v", err)
			}
			again.Close()
			<-streams
			if n := e.dials.count(); n != 1 {
				t.Errorf("%d connections dialed, want 1 (a reset must not break the connection)", n)
			}
		})
	}
}

// TestResetUnblocksLocalReadAndWrite: Reset from another goroutine ends a
// blocked Read and a Write waiting for flow-control window, as Close does.
func TestResetUnblocksLocalReadAndWrite(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	e := newEnv(t, acceptHandler(func(*Request, *Stream) { <-release })) // never reads
	s := e.dial(t, "10.0.0.1:80")
	errs := make(chan error, 2)
	go func() { _, err := s.Read(make([]byte, 1)); errs <- err }()
	go func() { _, err := s.Write(make([]byte, 2*DefaultStreamWindow)); errs <- err }()
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	for range 2 {
		if err := <-errs; !errors.Is(err, ErrClosed) {
			t.Errorf("blocked call ended with %v, want ErrClosed", err)
		}
	}
}

// TestResetOnTheWire: the server's Reset is a RST_STREAM(CANCEL) with no
// END_STREAM before it, as an independent HTTP/2 reader sees it.
func TestResetOnTheWire(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
		s.Write([]byte("x"))
		s.Reset()
	}))
	r := newRawClient(t, e)
	r.headers(t, 1, ":method", "CONNECT", ":authority", "10.0.0.1:80")
	for {
		f, err := r.fr.ReadFrame()
		if err != nil {
			t.Fatalf("stream 1 never reset: %v", err)
		}
		if f.Header().StreamID != 1 {
			continue
		}
		if f.Header().Flags.Has(http2.FlagDataEndStream) { // same bit for HEADERS
			t.Fatalf("%v carries END_STREAM: a reset must not look like a clean end", f.Header())
		}
		if rst, ok := f.(*http2.RSTStreamFrame); ok {
			if rst.ErrCode != http2.ErrCodeCancel {
				t.Fatalf("RST_STREAM %v, want CANCEL", rst.ErrCode)
			}
			return
		}
	}
}

// TestResetReachesXNetServer: our client's Reset makes an independent
// HTTP/2 server's request body fail with the stream error, not io.EOF.
func TestResetReachesXNetServer(t *testing.T) {
	e := newEnv(t, acceptHandler(func(*Request, *Stream) {}))
	bodyErr := make(chan error, 1)
	peer := xnetServer(t, e, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(200)
		w.(http.Flusher).Flush()
		_, err := io.Copy(io.Discard, r.Body)
		bodyErr <- err
	})
	req := e.req("10.0.0.7:9")
	req.Peer = peer
	s, err := e.cl.Dial(context.Background(), req)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	if err := s.Reset(); err != nil {
		t.Fatal(err)
	}
	err = <-bodyErr
	var se http2.StreamError
	if !errors.As(err, &se) || se.Code != http2.ErrCodeCancel {
		t.Fatalf("x/net server's body ended with %v, want stream error CANCEL", err)
	}
	e.cl.Close()
}
