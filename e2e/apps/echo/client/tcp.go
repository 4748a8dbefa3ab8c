package client

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// tcpDoer opens a connection per request: reads the greeting, writes the
// payload, half-closes and reads the echo back.
type tcpDoer struct {
	addr    string
	payload []byte
	timeout time.Duration
}

func tcpPayload(size int) []byte {
	if size <= 0 {
		return []byte("ping\n")
	}
	return bytes.Repeat([]byte("x"), size)
}

func (d *tcpDoer) close() {}

func (d *tcpDoer) do(ctx context.Context) outcome {
	var dialer net.Dialer
	c, err := dialer.DialContext(ctx, "tcp", d.addr)
	if err != nil {
		return outcome{err: err}
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = c.SetDeadline(dl)
	}
	br := bufio.NewReader(c)
	line, err := br.ReadBytes('\n')
	if err != nil {
		return outcome{err: fmt.Errorf("read greeting: %w", err)}
	}
	var g api.TCPGreeting
	if err := json.Unmarshal(line, &g); err != nil {
		return outcome{err: fmt.Errorf("greeting %.60q is not an echo greeting: %w", line, err)}
	}
	werr := make(chan error, 1)
	go func() {
		_, err := c.Write(d.payload)
		if err == nil {
			if cw, ok := c.(interface{ CloseWrite() error }); ok {
				err = cw.CloseWrite()
			}
		}
		werr <- err
	}()
	got, rerr := io.ReadAll(br)
	if err := <-werr; err != nil {
		return outcome{err: fmt.Errorf("write payload: %w", err)}
	}
	if rerr != nil {
		return outcome{err: fmt.Errorf("read echo: %w", rerr)}
	}
	if !bytes.Equal(got, d.payload) {
		return outcome{err: fmt.Errorf("echo mismatch: sent %d bytes, got %d back", len(d.payload), len(got))}
	}
	return outcome{responded: true, ok: true, pod: g.Pod, version: g.Version}
}
