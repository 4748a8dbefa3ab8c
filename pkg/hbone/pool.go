package hbone

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"time"

	"github.com/ambient-mesh/ambient/pkg/spiffe"
)

// connLoad is what the pool needs to know about a connection to place a
// new stream on it.
type connLoad struct {
	usable bool // open, no GOAWAY either way, stream ids left
	stale  bool // opened with a certificate other than the source's current one
	active int  // open streams plus slots already promised
	max    int  // min(our cap, the peer's SETTINGS_MAX_CONCURRENT_STREAMS)
}

// spread is the pool's policy for placing streams on connections.
type spread struct {
	// at: a connection carrying this many streams takes more only once
	// maxConns current connections exist; <= 0 packs streams up to max.
	at       int
	maxConns int
}

// pickConn chooses the connection for a new stream; -1 means a new
// connection is needed. Streams pack onto the first usable connection
// opened with the current certificate while it carries fewer than sp.at
// streams, so at low load one connection does and the rest go idle and get
// reaped. When every such connection carries sp.at or more, a new one is
// dialled (up to sp.maxConns), so that busy streams are read, decrypted
// and dispatched by several read loops on several cores instead of one;
// past sp.maxConns streams go to the least loaded connection with room.
func pickConn(loads []connLoad, sp spread) int {
	current, best := 0, -1
	for i, l := range loads {
		if !l.usable || l.stale {
			continue
		}
		current++
		if l.active >= l.max {
			continue
		}
		if sp.at <= 0 || l.active < sp.at {
			return i
		}
		if best < 0 || l.active < loads[best].active {
			best = i
		}
	}
	if current < sp.maxConns {
		return -1
	}
	return best
}

// sameCert reports whether a connection opened with certificate opened
// may carry new streams for a source whose current certificate is cur:
// the same *tls.Certificate, or one with the same leaf (DER bytes).
func sameCert(opened, cur *tls.Certificate) bool {
	if opened == cur {
		return true
	}
	if opened == nil || cur == nil || len(opened.Certificate) == 0 || len(cur.Certificate) == 0 {
		return false
	}
	return bytes.Equal(opened.Certificate[0], cur.Certificate[0])
}

// ErrCertExpired is (errors.Is) the error of Dial when the source's
// current certificate has expired: it is never presented, on a new
// connection or a pooled one.
var ErrCertExpired = errors.New("client certificate expired")

type certExpiredError struct {
	id       spiffe.Identity
	notAfter time.Time
}

func (e *certExpiredError) Error() string {
	return fmt.Sprintf("certificate for %s expired at %s; is the CA reachable?", e.id, e.notAfter.UTC().Format(time.RFC3339))
}

func (e *certExpiredError) Is(target error) bool { return target == ErrCertExpired }

// checkCertExpiry fails if cert's leaf expired before now. The leaf is
// cert.Leaf, or parsed from the chain when a source leaves Leaf unset; a
// certificate without a parsable leaf is left to the TLS handshake.
func checkCertExpiry(id spiffe.Identity, cert *tls.Certificate, now time.Time) error {
	leaf := cert.Leaf
	if leaf == nil {
		if len(cert.Certificate) == 0 {
			return nil
		}
		var err error
		if leaf, err = x509.ParseCertificate(cert.Certificate[0]); err != nil {
			return nil
		}
	}
	if now.After(leaf.NotAfter) {
		return &certExpiredError{id: id, notAfter: leaf.NotAfter}
	}
	return nil
}
