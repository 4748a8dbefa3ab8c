package dns

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
	"golang.org/x/net/dns/dnsmessage"
)

// Store holds the Index being served: one writer (Watch), any number of
// readers. The zero value serves nothing (every query REFUSED).
type Store struct{ p atomic.Pointer[Index] }

// Load returns the current Index (nil before the first Set).
func (s *Store) Load() *Index { return s.p.Load() }

// Set replaces the current Index.
func (s *Store) Set(ix *Index) { s.p.Store(ix) }

// tcpIdle closes a TCP connection that sends no query for this long.
const tcpIdle = 10 * time.Second

// Serve answers queries from store on udp and tcp (either may be nil) until
// ctx is done; it closes both.
func Serve(ctx context.Context, udp net.PacketConn, tcp net.Listener, store *Store, log *zap.Logger) error {
	var wg sync.WaitGroup
	errc := make(chan error, 2)
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	closed := false
	closeAll := func() {
		mu.Lock()
		defer mu.Unlock()
		closed = true
		if udp != nil {
			udp.Close()
		}
		if tcp != nil {
			tcp.Close()
		}
		for c := range conns {
			c.Close()
		}
	}
	stop := context.AfterFunc(ctx, closeAll)
	defer stop()
	if udp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := serveUDP(udp, store, log); err != nil {
				errc <- err
				closeAll()
			}
		}()
	}
	if tcp != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				c, err := tcp.Accept()
				if err != nil {
					mu.Lock()
					wasClosed := closed
					mu.Unlock()
					if !wasClosed {
						errc <- fmt.Errorf("dns: accept: %w", err)
						closeAll()
					}
					return
				}
				mu.Lock()
				if closed {
					mu.Unlock()
					c.Close()
					continue
				}
				conns[c] = struct{}{}
				mu.Unlock()
				wg.Add(1)
				go func() {
					defer wg.Done()
					serveTCP(c, store, log)
					mu.Lock()
					delete(conns, c)
					mu.Unlock()
					c.Close()
				}()
			}
		}()
	}
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

// serveUDP answers datagrams until pc is closed (nil) or fails.
func serveUDP(pc net.PacketConn, store *Store, log *zap.Logger) error {
	buf := make([]byte, 65535)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("dns: read udp: %w", err)
		}
		out, ok := handle(buf[:n], store.Load(), true, log)
		if !ok {
			continue
		}
		if _, err := pc.WriteTo(out, from); err != nil {
			log.Debug("dns udp write failed", zap.Stringer("client", from), zap.Error(err))
		}
	}
}

func serveTCP(c net.Conn, store *Store, log *zap.Logger) {
	var lenbuf [2]byte
	for {
		_ = c.SetReadDeadline(time.Now().Add(tcpIdle))
		if _, err := io.ReadFull(c, lenbuf[:]); err != nil {
			return
		}
		msg := make([]byte, binary.BigEndian.Uint16(lenbuf[:]))
		if _, err := io.ReadFull(c, msg); err != nil {
			return
		}
		out, ok := handle(msg, store.Load(), false, log)
		if !ok {
			return
		}
		if len(out) > 65535 {
			return
		}
		frame := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(out)), uint16(len(out)))
		if _, err := c.Write(append(frame, out...)); err != nil {
			log.Debug("dns tcp write failed", zap.Stringer("client", c.RemoteAddr()), zap.Error(err))
			return
		}
	}
}

// handle parses one query and packs the response; ok is false when nothing
// should be sent (unparseable header).
func handle(b []byte, ix *Index, udp bool, log *zap.Logger) ([]byte, bool) {
	var q dnsmessage.Message
	if err := q.Unpack(b); err != nil {
		var p dnsmessage.Parser
		h, herr := p.Start(b)
		if herr != nil || h.Response {
			return nil, false
		}
		r := dnsmessage.Message{Header: dnsmessage.Header{ID: h.ID, Response: true, OpCode: h.OpCode, RCode: dnsmessage.RCodeFormatError}}
		out, err := r.Pack()
		return out, err == nil
	}
	if q.Response {
		return nil, false
	}
	r := Answer(q, ix)
	limit := 65535
	if udp {
		limit = UDPLimit(q)
	}
	out, err := Truncate(r, limit)
	if err != nil {
		log.Warn("dns response pack failed", zap.Error(err))
		r = dnsmessage.Message{Header: dnsmessage.Header{ID: q.ID, Response: true, RCode: dnsmessage.RCodeServerFailure}, Questions: q.Questions}
		out, err = r.Pack()
		if err != nil {
			return nil, false
		}
	}
	return out, true
}
