package server

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/ambient-mesh/ambient/e2e/apps/echo/api"
)

// TestH2CUpgrade speaks the RFC 7540 §3.2 upgrade by hand (Go's client
// cannot): HTTP/1.1 request with "Upgrade: h2c", 101, then the answer to
// that request arrives as HTTP/2 stream 1.
func TestH2CUpgrade(t *testing.T) {
	a := startServer(t, Config{Identity: testID})
	c, err := net.Dial("tcp", a.http)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "GET /upgraded HTTP/1.1\r\nHost: %s\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n\r\n", a.http)
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("read upgrade response: %v", err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade answered %s, want 101", resp.Status)
	}
	if _, err := c.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, br)
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	// Stream 1 answers the upgrade request itself: the handler saw it as
	// HTTP/1.1, the answer comes framed as HTTP/2.
	code, body := readStream(t, fr, 1)
	if code != "200" {
		t.Errorf("stream 1 :status = %q, want 200", code)
	}
	var r api.HTTPResponse
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if r.Path != "/upgraded" || r.Pod != testID.Pod {
		t.Errorf("stream 1: server saw path %q pod %q, want /upgraded", r.Path, r.Pod)
	}
	// Later requests on the upgraded connection are plain HTTP/2.
	var hb bytes.Buffer
	enc := hpack.NewEncoder(&hb)
	for _, f := range []hpack.HeaderField{{Name: ":method", Value: "GET"}, {Name: ":scheme", Value: "http"}, {Name: ":path", Value: "/second"}, {Name: ":authority", Value: a.http}} {
		if err := enc.WriteField(f); err != nil {
			t.Fatal(err)
		}
	}
	if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: hb.Bytes(), EndStream: true, EndHeaders: true}); err != nil {
		t.Fatal(err)
	}
	code, body = readStream(t, fr, 3)
	if code != "200" {
		t.Errorf("stream 3 :status = %q, want 200", code)
	}
	if err := json.Unmarshal(body, &r); err != nil {
		t.Fatalf("decode %q: %v", body, err)
	}
	if r.Protocol != "HTTP/2.0" || r.Path != "/second" {
		t.Errorf("stream 3: server saw protocol %q path %q, want HTTP/2.0 /second", r.Protocol, r.Path)
	}
}

// readStream reads frames until stream id ends, answering SETTINGS, and
// returns its :status and body.
func readStream(t *testing.T, fr *http2.Framer, id uint32) (string, []byte) {
	t.Helper()
	var code string
	var body []byte
	for {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatalf("read frame: %v", err)
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if err := fr.WriteSettingsAck(); err != nil {
					t.Fatal(err)
				}
			}
		case *http2.MetaHeadersFrame:
			if f.StreamID == id {
				code = f.PseudoValue("status")
			}
		case *http2.DataFrame:
			if f.StreamID == id {
				body = append(body, f.Data()...)
			}
		}
		if f.Header().StreamID == id && f.Header().Flags.Has(http2.FlagDataEndStream) {
			return code, body
		}
	}
}
