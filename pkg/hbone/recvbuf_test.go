package hbone

import (
	"bytes"
	"testing"
)

func TestRecvBuf(t *testing.T) {
	var b recvBuf
	var want bytes.Buffer
	src := func(n int, seed byte) []byte {
		p := make([]byte, n)
		for i := range p {
			p[i] = seed + byte(i)
		}
		want.Write(p)
		return p
	}
	b.write(src(10, 1))
	b.write(src(chunkSize, 2)) // spills into a second chunk
	direct := chunkPool.Get().(*chunk)
	direct.r, direct.w = 0, chunkSize/2
	copy(direct.b[:], src(chunkSize/2, 3))
	b.add([]*chunk{direct}, chunkSize/2)
	b.write(src(5, 4)) // lands in the tail of the added chunk

	var got bytes.Buffer
	p := make([]byte, 7000)
	n := b.read(p)
	got.Write(p[:n])
	for b.n > 0 {
		ch := b.pop()
		got.Write(ch.b[ch.r:ch.w])
	}
	if !bytes.Equal(got.Bytes(), want.Bytes()) {
		t.Fatalf("read back %d bytes, want %d identical", got.Len(), want.Len())
	}
	if b.n != 0 || len(b.chunks) != 0 || b.head != 0 {
		t.Fatalf("drained buffer: n=%d chunks=%d head=%d", b.n, len(b.chunks), b.head)
	}
	b.write(src(3, 5))
	b.reset()
	if b.n != 0 || b.chunks != nil {
		t.Fatal("reset left data")
	}
}
