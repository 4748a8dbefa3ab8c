package listener

import (
	"io"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
)

// h1Writer is the http.ResponseWriter (and http.Flusher) of the lean
// HTTP/1.1 path. The head and the body go to the connection's buffered
// writer; the answer is flushed once at its end (or on Flush, for
// streaming), so a small answer is one write on the tunnel.
type h1Writer struct {
	c      *h1Conn
	req    *http.Request
	header http.Header
	status int

	wroteHead     bool // under c.wmu
	chunked       bool
	noBody        bool // HEAD, 1xx, 204, 304
	closeAfter    bool
	contentLength int64 // -1: unknown
	written       int64
	trailers      []string
	err           error
	scratch       [64]byte
}

func (w *h1Writer) reset(c *h1Conn, req *http.Request) {
	h := w.header
	if h == nil {
		h = make(http.Header, 16)
	} else {
		clear(h)
	}
	tr := w.trailers[:0]
	*w = h1Writer{c: c, req: req, header: h, contentLength: -1, trailers: tr}
}

func (w *h1Writer) Header() http.Header { return w.header }

func (w *h1Writer) WriteHeader(code int) {
	if w.status != 0 {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	w.status = code
}

func (w *h1Writer) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(false)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if w.noBody {
		if w.req.Method == http.MethodHead {
			return len(p), nil
		}
		return 0, http.ErrBodyNotAllowed
	}
	if w.err != nil {
		return 0, w.err
	}
	if w.contentLength >= 0 && w.written+int64(len(p)) > w.contentLength {
		return 0, http.ErrContentLength
	}
	bw := w.c.bw
	if w.chunked {
		bw.Write(strconv.AppendInt(w.scratch[:0], int64(len(p)), 16))
		bw.WriteString("\r\n")
	}
	n, err := bw.Write(p)
	if err == nil && w.chunked {
		_, err = bw.WriteString("\r\n")
	}
	w.written += int64(n)
	if err != nil {
		w.err = err
	}
	return n, err
}

// Flush sends what is buffered (streaming answers).
func (w *h1Writer) Flush() {
	if w.status == 0 {
		w.WriteHeader(http.StatusOK)
	}
	if !w.wroteHead {
		w.writeHead(false)
	}
	if w.err == nil {
		w.err = w.c.bw.Flush()
	}
}

// finish ends the answer after the handler: head if not written yet, last
// chunk and trailers, then one flush.
func (w *h1Writer) finish() {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if !w.wroteHead {
		w.writeHead(true)
	}
	if w.err != nil {
		return
	}
	bw := w.c.bw
	if w.chunked {
		bw.WriteString("0\r\n")
		for _, k := range w.trailers {
			for _, v := range w.header[k] {
				writeField(bw, k, v)
			}
		}
		for k, vv := range w.header {
			if name, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
				for _, v := range vv {
					writeField(bw, textproto.CanonicalMIMEHeaderKey(name), v)
				}
			}
		}
		bw.WriteString("\r\n")
	}
	if !w.noBody && w.contentLength >= 0 && w.written != w.contentLength {
		w.closeAfter = true // the client cannot tell where the answer ends
	}
	w.err = bw.Flush()
}

// writeHead writes the status line and the header fields to the buffer,
// choosing the framing: the handler's Content-Length, else chunked
// (HTTP/1.1) or until close (HTTP/1.0); final means the handler ended
// without writing a body.
func (w *h1Writer) writeHead(final bool) {
	c := w.c
	c.wmu.Lock()
	defer c.wmu.Unlock()
	w.wroteHead = true
	h, req, code := w.header, w.req, w.status
	w.noBody = req.Method == http.MethodHead || code < 200 || code == http.StatusNoContent || code == http.StatusNotModified
	if v := h["Content-Length"]; len(v) > 0 {
		if n, err := strconv.ParseInt(v[0], 10, 64); err == nil && n >= 0 {
			w.contentLength = n
		}
	}
	for _, v := range h["Trailer"] {
		for name := range strings.SplitSeq(v, ",") {
			if name = textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(name)); name != "" {
				w.trailers = append(w.trailers, name)
			}
		}
	}
	http11 := req.ProtoAtLeast(1, 1)
	switch {
	case w.noBody:
		if code < 200 || code == http.StatusNoContent {
			w.contentLength = -1
		}
	case len(w.trailers) > 0 && http11:
		w.chunked, w.contentLength = true, -1
	case w.contentLength >= 0:
	case final:
		w.contentLength = 0
	case http11:
		w.chunked = true
	default:
		w.closeAfter = true
	}
	if req.Close || !http11 || c.l.closing.Load() || hasToken(h["Connection"], "close") {
		w.closeAfter = true
	}

	bw := c.bw
	bw.WriteString("HTTP/1.1 ")
	bw.WriteString(statusLine(code))
	bw.WriteString("\r\n")
	for k, vv := range h {
		switch k {
		case "Content-Length", "Transfer-Encoding", "Connection":
			continue
		}
		if strings.HasPrefix(k, http.TrailerPrefix) || w.isTrailer(k) {
			continue
		}
		for _, v := range vv {
			writeField(bw, k, v)
		}
	}
	if _, ok := h["Date"]; !ok {
		bw.WriteString("Date: ")
		bw.WriteString(httpDate())
		bw.WriteString("\r\n")
	}
	if w.contentLength >= 0 {
		bw.WriteString("Content-Length: ")
		bw.Write(strconv.AppendInt(w.scratch[:0], w.contentLength, 10))
		bw.WriteString("\r\n")
	}
	if w.chunked {
		bw.WriteString("Transfer-Encoding: chunked\r\n")
	}
	if w.closeAfter {
		bw.WriteString("Connection: close\r\n")
	}
	bw.WriteString("\r\n")
}

func (w *h1Writer) isTrailer(k string) bool {
	for _, t := range w.trailers {
		if t == k {
			return true
		}
	}
	return false
}

// writeField writes one header field; line breaks in the value become
// spaces (as net/http does) so a value cannot add fields.
func writeField(bw interface {
	io.Writer
	io.StringWriter
}, k, v string) {
	bw.WriteString(k)
	bw.WriteString(": ")
	if strings.ContainsAny(v, "\r\n") {
		v = strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	bw.WriteString(v)
	bw.WriteString("\r\n")
}

func hasToken(vv []string, token string) bool {
	for _, v := range vv {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// statusLines caches "200 OK" and the like.
var statusLines [600]string

func init() {
	for code := 100; code < len(statusLines); code++ {
		if text := http.StatusText(code); text != "" {
			statusLines[code] = strconv.Itoa(code) + " " + text
		}
	}
}

func statusLine(code int) string {
	if code < len(statusLines) && statusLines[code] != "" {
		return statusLines[code]
	}
	return strconv.Itoa(code) + " status code " + strconv.Itoa(code)
}

func itoa(n int) string { return strconv.Itoa(n) }

// cachedDate is the Date header value, formatted once a second.
type cachedDate struct {
	sec int64
	s   string
}

var dateCache atomic.Pointer[cachedDate]

func httpDate() string {
	now := time.Now()
	if d := dateCache.Load(); d != nil && d.sec == now.Unix() {
		return d.s
	}
	d := &cachedDate{sec: now.Unix(), s: now.UTC().Format(http.TimeFormat)}
	dateCache.Store(d)
	return d.s
}
