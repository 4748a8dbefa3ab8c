package hbone

import (
	"net"
	"sync"
)

// corkLimit is how much a corked connection buffers before writing anyway:
// a whole DATA frame from Stream.ReadFrom's large buffer.
const corkLimit = 136 << 10

// corkConn sits between tls.Conn and the TCP connection. Once corked, it
// collects the TLS records of one flush and writes them with a single
// syscall: a 32 KiB DATA frame is three records (16 KiB, 16 KiB and the
// frame header's spill-over), which would otherwise be three writes and
// three wake-ups of the reader.
type corkConn struct {
	net.Conn
	mu     sync.Mutex
	corked bool
	buf    []byte
	err    error
}

func (c *corkConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.corked {
		return c.Conn.Write(p)
	}
	if c.err != nil {
		return 0, c.err
	}
	if len(c.buf)+len(p) > corkLimit {
		if err := c.flushLocked(); err != nil {
			return 0, err
		}
		if len(p) > corkLimit {
			return c.Conn.Write(p)
		}
	}
	c.buf = append(c.buf, p...)
	return len(p), nil
}

// cork starts buffering (after the TLS handshake).
func (c *corkConn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// flush writes what is buffered.
func (c *corkConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.flushLocked()
}

func (c *corkConn) flushLocked() error {
	if c.err != nil {
		return c.err
	}
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.buf)
	c.buf = c.buf[:0]
	if err != nil {
		c.err = err
	}
	return err
}

// Close sends what is buffered (such as TLS close_notify) if no write is
// stuck, then closes the connection.
func (c *corkConn) Close() error {
	if c.mu.TryLock() {
		c.flushLocked()
		c.buf = nil
		c.mu.Unlock()
	}
	return c.Conn.Close()
}
