package hbone

import (
	"io"
	"testing"
)

// BenchmarkRequestResponse is ztunnel's data path for request/response
// traffic, in one process: app → TCP → relay → HBONE stream → relay → TCP
// → echo server, 1 KiB each way per op, on one kept-alive stream. The
// relays copy with io.Copy, as ztunnel's relay does (ReadFrom and WriteTo
// of the stream).
func BenchmarkRequestResponse(b *testing.B) {
	e := newEnv(b, acceptHandler(func(_ *Request, s *Stream) {
		up, echo := tcpPair(b)
		go func() { io.Copy(echo, echo) }()
		go func() { io.Copy(s, up) }()
		io.Copy(up, s)
	}))
	s := e.dial(b, "10.0.0.1:80")
	defer s.Close()
	app, proxy := tcpPair(b)
	go func() { io.Copy(s, proxy) }()
	go func() { io.Copy(proxy, s) }()
	buf := make([]byte, 1024)
	b.SetBytes(int64(len(buf)))
	b.ReportAllocs()
	b.ResetTimer()
	start := cpuTime()
	for i := 0; i < b.N; i++ {
		if _, err := app.Write(buf); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(app, buf); err != nil {
			b.Fatal(err)
		}
	}
	cpu := cpuTime() - start
	b.ReportMetric(float64(cpu.Nanoseconds())/float64(b.N), "cpu-ns/op")
	b.StopTimer()
	app.Close()
}
