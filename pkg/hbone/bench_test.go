package hbone

import (
	"context"
	"io"
	"net"
	"runtime"
	"sync"
	"syscall"
	"testing"
	"time"
)

// cpuTime is the process's user+system CPU time: on a shared machine it
// compares data paths better than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	cpu := cpuTime() - start
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.ReportMetric(float64(b.N)*benchChunk/1e6/cpu.Seconds(), "MB/cpu-s")
}

const benchChunk = 32 << 10

func BenchmarkThroughputDirectTCP(b *testing.B) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer ln.Close()
	done := make(chan int64)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- 0
			return
		}
		n, _ := io.CopyBuffer(io.Discard, c, make([]byte, benchChunk))
		c.Close()
		done <- n
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := c.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	c.(*net.TCPConn).CloseWrite()
	if n := <-done; n != int64(b.N)*benchChunk {
		b.Fatalf("sink got %d bytes, want %d", n, int64(b.N)*benchChunk)
	}
	reportCPU(b, start)
	c.Close()
}

func BenchmarkThroughputHBONE(b *testing.B) {
	done := make(chan int64, 1)
	e := newEnv(b, acceptHandler(func(_ *Request, s *Stream) {
		n, _ := io.CopyBuffer(io.Discard, s, make([]byte, benchChunk))
		done <- n
	}))
	s := e.dial(b, "10.0.0.1:80")
	defer s.Close()
	buf := make([]byte, benchChunk)
	b.SetBytes(benchChunk)
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := s.Write(buf); err != nil {
			b.Fatal(err)
		}
	}
	s.CloseWrite()
	if n := <-done; n != int64(b.N)*benchChunk {
		b.Fatalf("sink got %d bytes, want %d", n, int64(b.N)*benchChunk)
	}
	reportCPU(b, start)
}

// BenchmarkThroughputHBONE8Streams sends over 8 concurrent streams to one
// peer, packed onto one connection or spread over several (the default).
func BenchmarkThroughputHBONE8Streams(b *testing.B) {
	for _, mode := range []struct {
		name   string
		spread int
	}{{"pack", -1}, {"spread", 0}} {
		b.Run(mode.name, func(b *testing.B) {
			const streams = 8
			done := make(chan int64, streams)
			e := newEnv(b, acceptHandler(func(_ *Request, s *Stream) {
				n, _ := io.Copy(io.Discard, s)
				done <- n
			}), func(_ *ServerConfig, c *ClientConfig) { c.SpreadStreams = mode.spread })
			ss := make([]*Stream, streams)
			for i := range ss {
				ss[i] = e.dial(b, "10.0.0.1:80")
				defer ss[i].Close()
			}
			b.SetBytes(benchChunk)
			b.ReportAllocs()
			b.ResetTimer()
			start := cpuTime()
			var wg sync.WaitGroup
			for i, s := range ss {
				n := b.N / streams
				if i < b.N%streams {
					n++
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					buf := make([]byte, benchChunk)
					for j := 0; j < n; j++ {
						if _, err := s.Write(buf); err != nil {
							b.Error(err)
							return
						}
					}
					s.CloseWrite()
				}()
			}
			wg.Wait()
			var total int64
			for range ss {
				total += <-done
			}
			if total != int64(b.N)*benchChunk {
				b.Fatalf("sinks got %d bytes, want %d", total, int64(b.N)*benchChunk)
			}
			reportCPU(b, start)
			b.ReportMetric(float64(e.cl.Stats().Conns), "conns")
		})
	}
}

func BenchmarkStreamOpenWarm(b *testing.B) {
	e := newEnv(b, acceptHandler(func(_ *Request, s *Stream) { io.Copy(io.Discard, s) }))
	e.dial(b, "10.0.0.1:80").Close() // warm the pool
	req := e.req("10.0.0.1:80")
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		s, err := e.cl.Dial(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
	}
}

// BenchmarkIdleStreamMemory reports heap plus goroutine stack per open,
// idle stream, client and server side together (the server side includes
// the handler goroutine blocked in Read).
func BenchmarkIdleStreamMemory(b *testing.B) {
	const streams = 1000
	release := make(chan struct{})
	e := newEnv(b, acceptHandler(func(_ *Request, s *Stream) { s.Read(make([]byte, 1)) }))
	e.dial(b, "10.0.0.1:80").Close()
	defer close(release)
	var perStream float64
	for i := 0; i < b.N; i++ {
		before := memUse()
		open := make([]*Stream, 0, streams)
		for j := 0; j < streams; j++ {
			open = append(open, e.dial(b, "10.0.0.1:80"))
		}
		after := memUse()
		perStream = float64(after-before) / streams
		for _, s := range open {
			s.Close()
		}
		eventually(b, "streams to close", func() bool { return e.srv.Stats().Streams == 0 })
	}
	b.ReportMetric(perStream, "bytes/stream")
}

func memUse() int64 {
	var m runtime.MemStats
	runtime.GC()
	runtime.GC()
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc + m.StackInuse)
}

// BenchmarkHandshake measures new mTLS HBONE connections (TCP + TLS 1.3 +
// HTTP/2 setup + one stream), client and server in this process.
func BenchmarkHandshake(b *testing.B) {
	e := newEnv(b, acceptHandler(func(*Request, *Stream) {}))
	ctx := context.Background()
	req := e.req("10.0.0.1:80")
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cl, err := NewClient(e.cl.cfg)
		if err != nil {
			b.Fatal(err)
		}
		s, err := cl.Dial(ctx, req)
		if err != nil {
			b.Fatal(err)
		}
		s.Close()
		cl.Close()
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "conns/s")
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds()/float64(runtime.GOMAXPROCS(0)), "conns/s/core")
}
