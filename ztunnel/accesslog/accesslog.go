package accesslog

import (
	"net/netip"
	"time"

	"go.uber.org/zap"
)

// Message is the constant message of every access log line.
const Message = "connection complete"

// Directions of a connection, as seen by this ztunnel.
const (
	Outbound         = "outbound"
	Inbound          = "inbound"
	InboundPlaintext = "inbound_plaintext"
)

// Entry is one finished (or refused) connection.
type Entry struct {
	Direction string
	// Src and Dst are the client's address and the destination it asked
	// for (outbound: the original destination; inbound: the pod target).
	Src, Dst netip.AddrPort
	// Via is the HBONE peer (outbound) or the upstream dialed when it
	// differs from Dst; zero when none.
	Via netip.AddrPort
	// SrcWorkload and DstWorkload are workload names ("" when unknown).
	SrcWorkload, DstWorkload string
	// SrcIdentity and DstIdentity are SPIFFE URIs ("" for plaintext or
	// unknown).
	SrcIdentity, DstIdentity string
	// Service is the destination service hostname, if any.
	Service string
	// Sent is bytes sent to the client, Received bytes received from it.
	Sent, Received int64
	Duration       time.Duration
	// Reason is a constant string explaining a refusal or the route taken.
	Reason string
	// Err is why the connection failed, nil for a clean close.
	Err error
}

// Fields returns the structured fields of e's log line. Empty strings and
// zero addresses are left out so lines stay short.
func Fields(e Entry) []zap.Field {
	f := make([]zap.Field, 0, 14)
	f = append(f, zap.String("direction", e.Direction))
	addr := func(k string, a netip.AddrPort) {
		if a.IsValid() {
			f = append(f, zap.String(k, a.String()))
		}
	}
	str := func(k, v string) {
		if v != "" {
			f = append(f, zap.String(k, v))
		}
	}
	addr("src.addr", e.Src)
	str("src.workload", e.SrcWorkload)
	str("src.identity", e.SrcIdentity)
	addr("dst.addr", e.Dst)
	addr("dst.hbone_addr", e.Via)
	str("dst.service", e.Service)
	str("dst.workload", e.DstWorkload)
	str("dst.identity", e.DstIdentity)
	f = append(f,
		zap.Int64("bytes_sent", e.Sent),
		zap.Int64("bytes_recv", e.Received),
		zap.Duration("duration", e.Duration),
	)
	str("reason", e.Reason)
	if e.Err != nil {
		f = append(f, zap.Error(e.Err))
	}
	return f
}

// Log writes e's line: at info level, or warn when the connection failed.
func Log(l *zap.Logger, e Entry) {
	if e.Err != nil {
		l.Warn(Message, Fields(e)...)
		return
	}
	l.Info(Message, Fields(e)...)
}
