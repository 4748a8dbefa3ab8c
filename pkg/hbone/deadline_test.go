package hbone

import (
	"errors"
	"io"
	"os"
	"testing"
	"time"
)

// Deadlines changed while a Read or Write is blocked take effect: sooner
// ones wake it, later or cleared ones let it go on and succeed.
func TestDeadlinesWhileBlocked(t *testing.T) {
	const long = time.Hour
	tests := []struct {
		name    string
		write   bool            // block in Write (no window) instead of Read
		first   time.Duration   // deadline before blocking; 0: none
		then    []time.Duration // deadlines set, in order, while blocked (0: clear)
		wantErr bool            // the operation fails with ErrDeadlineExceeded
	}{
		{name: "read: sooner deadline wakes", first: long, then: []time.Duration{20 * time.Millisecond}, wantErr: true},
		{name: "read: deadline in the past wakes", then: []time.Duration{-time.Second}, wantErr: true},
		{name: "read: later deadline lets it wait", first: 300 * time.Millisecond, then: []time.Duration{long}},
		{name: "read: cleared deadline lets it wait", first: 300 * time.Millisecond, then: []time.Duration{0}},
		{name: "read: later, then sooner", first: 300 * time.Millisecond, then: []time.Duration{long, 40 * time.Millisecond}, wantErr: true},
		{name: "write: sooner deadline wakes", write: true, first: long, then: []time.Duration{20 * time.Millisecond}, wantErr: true},
		{name: "write: cleared deadline lets it wait", write: true, first: 300 * time.Millisecond, then: []time.Duration{0}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// The server echoes once released; until then it neither writes
			// nor reads (so a large Write runs out of window).
			release := make(chan struct{})
			e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) {
				<-release
				io.Copy(s, s)
			}), func(s *ServerConfig, _ *ClientConfig) { s.StreamWindow = 1 << 16 })
			s := e.dial(t, "10.0.0.1:80")
			defer s.Close()
			set := func(d time.Duration) {
				if d == 0 {
					s.SetDeadline(time.Time{})
				} else {
					s.SetDeadline(time.Now().Add(d))
				}
			}
			if tt.first != 0 {
				set(tt.first)
			}
			payload := make([]byte, 1<<18) // 4 stream windows
			done := make(chan error, 1)
			go func() {
				var err error
				if tt.write {
					_, err = s.Write(payload)
				} else {
					_, err = s.Read(make([]byte, 1))
				}
				done <- err
			}()
			// Let the operation block before changing the deadline.
			time.Sleep(10 * time.Millisecond)
			for _, d := range tt.then {
				set(d)
				time.Sleep(10 * time.Millisecond)
			}
			if !tt.wantErr {
				time.Sleep(500 * time.Millisecond) // past every first deadline
				select {
				case err := <-done:
					t.Fatalf("operation ended with %v before the peer moved, want it still blocked", err)
				default:
				}
				close(release)
				if !tt.write {
					if _, err := s.Write([]byte("x")); err != nil {
						t.Fatal(err)
					}
				} else {
					go io.Copy(io.Discard, s)
				}
				if err := <-done; err != nil {
					t.Fatalf("operation failed: %v", err)
				}
				return
			}
			defer close(release)
			select {
			case err := <-done:
				if !errors.Is(err, os.ErrDeadlineExceeded) {
					t.Fatalf("operation err = %v, want deadline exceeded", err)
				}
			case <-time.After(10 * time.Second):
				t.Fatal("operation still blocked 10 s after its deadline")
			}
		})
	}
}

// A stream whose deadline was set and cleared many times without blocking
// reads normally, and a past deadline fails a Read that finds no data.
func TestDeadlineSetOftenWithoutBlocking(t *testing.T) {
	e := newEnv(t, acceptHandler(func(_ *Request, s *Stream) { io.Copy(s, s) }))
	s := e.dial(t, "10.0.0.1:80")
	defer s.Close()
	for i := 0; i < 1000; i++ {
		s.SetReadDeadline(time.Now().Add(time.Millisecond))
		s.SetReadDeadline(time.Time{})
	}
	if _, err := s.Write([]byte("ab")); err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 2)
	if _, err := io.ReadFull(s, b); err != nil || string(b) != "ab" {
		t.Fatalf("ReadFull = %q, %v", b, err)
	}
	s.SetReadDeadline(time.Now().Add(-time.Second))
	if _, err := s.Read(b); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("Read with a past deadline and no data: %v, want deadline exceeded", err)
	}
}
