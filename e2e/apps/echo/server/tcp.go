package server

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"sync"

	"go.uber.org/zap"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// tcpServer greets each connection with one JSON line and echoes the bytes
// it reads until the client half-closes; then it half-closes too.
type tcpServer struct {
	id  api.Identity
	log *zap.Logger

	mu        sync.Mutex
	closing   bool
	listeners map[net.Listener]struct{}
	conns     map[net.Conn]struct{}
	wg        sync.WaitGroup // connection handlers
}

func newTCPServer(id api.Identity, log *zap.Logger) *tcpServer {
	return &tcpServer{
		id:        id,
		log:       log,
		listeners: make(map[net.Listener]struct{}),
		conns:     make(map[net.Conn]struct{}),
	}
}

// serve accepts on l until shutdown; it returns nil after shutdown.
func (s *tcpServer) serve(l net.Listener) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		_ = l.Close()
		return nil
	}
	s.listeners[l] = struct{}{}
	s.mu.Unlock()
	for {
		c, err := l.Accept()
		if err != nil {
			s.mu.Lock()
			closing := s.closing
			s.mu.Unlock()
			if closing {
				return nil
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		s.mu.Lock()
		if s.closing {
			s.mu.Unlock()
			_ = c.Close()
			return nil
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handle(c)
	}
}

func (s *tcpServer) handle(c net.Conn) {
	defer func() {
		_ = c.Close()
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.wg.Done()
	}()
	srcIP, srcPort := splitAddr(c.RemoteAddr().String())
	g := api.TCPGreeting{Identity: s.id, ServerPort: addrPort(c.LocalAddr()), SourceIP: srcIP, SourcePort: srcPort}
	line, err := json.Marshal(g)
	if err != nil {
		s.log.Error("encode tcp greeting failed", zap.Error(err))
		return
	}
	if _, err := c.Write(append(line, '\n')); err != nil {
		s.log.Debug("write tcp greeting failed", zap.Error(err))
		return
	}
	n, err := io.Copy(c, c)
	if err != nil {
		s.log.Debug("tcp echo failed", zap.Error(err), zap.Int64("bytes", n))
		return
	}
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	s.log.Debug("tcp connection done", zap.String("src", c.RemoteAddr().String()), zap.Int64("bytes", n))
}

// shutdown stops accepting, waits for open connections until ctx ends,
// then closes those left.
func (s *tcpServer) shutdown(ctx context.Context) {
	s.mu.Lock()
	s.closing = true
	for l := range s.listeners {
		_ = l.Close()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return
	case <-ctx.Done():
	}
	s.mu.Lock()
	for c := range s.conns {
		_ = c.Close()
	}
	s.mu.Unlock()
	<-done
}
