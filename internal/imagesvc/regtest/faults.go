package regtest

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
)

// Hijack lets a hook take the connection over (see ResetConn).
func (c *countingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := c.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, fmt.Errorf("regtest: %T cannot be hijacked", c.ResponseWriter)
	}
	return hj.Hijack()
}

// matches reports whether r is one of the first n GETs of the blob or
// manifest ref (any when ref is ""; n < 0: every one).
func (r *Request) matches(kind, ref string, n int) bool {
	return r.Method == http.MethodGet && r.Kind == kind && (ref == "" || r.Ref == ref) && (n < 0 || r.N < n)
}

// record is the registry's own answer to r.
func (reg *Registry) record(r *Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	reg.reg.ServeHTTP(rec, r.HTTP)
	return rec
}

// ResetConn answers the first n GETs (every one if n < 0) of the blob or
// manifest ref (any when ref is "") with the registry's status, headers
// and half its body, then resets the connection (SO_LINGER 0: the client
// reads ECONNRESET, as from a proxy or load balancer that drops it).
func ResetConn(reg *Registry, kind, ref string, n int) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if !r.matches(kind, ref, n) {
			return false
		}
		rec := reg.record(r)
		body := rec.Body.Bytes()
		conn, buf, err := w.(http.Hijacker).Hijack()
		if err != nil {
			panic(err)
		}
		rec.Header().Set("Content-Length", strconv.Itoa(len(body)))
		_, _ = fmt.Fprintf(buf, "HTTP/1.1 %d %s\r\n", rec.Code, http.StatusText(rec.Code))
		_ = rec.Header().Write(buf)
		_, _ = buf.WriteString("\r\n")
		_, _ = buf.Write(body[:len(body)/2])
		_ = buf.Flush()
		if tc, ok := conn.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = conn.Close()
		return true
	}
}

// TruncateBlob serves the first half of the blob as if it were all of it
// (a consistent, shorter Content-Length): a registry whose copy is short.
func TruncateBlob(reg *Registry, digest string) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if !r.matches("blob", digest, -1) {
			return false
		}
		rec := reg.record(r)
		body := rec.Body.Bytes()
		body = body[:len(body)/2]
		for k, v := range rec.Header() {
			w.Header()[k] = v
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(rec.Code)
		_, _ = w.Write(body)
		return true
	}
}

// Hang never answers GETs of the blob or manifest ref (any when ref is
// ""): it holds the request until the client goes away.
func Hang(kind, ref string) Hook {
	return func(_ http.ResponseWriter, r *Request) bool {
		if !r.matches(kind, ref, -1) {
			return false
		}
		<-r.HTTP.Context().Done()
		return true
	}
}

// HugeManifest answers GETs of the manifest ref with a 200 and size bytes
// of an image manifest padded with one enormous annotation, streamed
// without a Content-Length (until the client stops reading).
func HugeManifest(ref string, size int64) Hook {
	return func(w http.ResponseWriter, r *Request) bool {
		if !r.matches("manifest", ref, -1) {
			return false
		}
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		head := `{"schemaVersion":2,"annotations":{"padding":"`
		_, _ = io.WriteString(w, head)
		pad := bytes.Repeat([]byte("x"), 64<<10)
		for n := int64(len(head)); n < size-3; n += int64(len(pad)) {
			if _, err := w.Write(pad[:min(int64(len(pad)), size-3-n)]); err != nil {
				return true
			}
		}
		_, _ = io.WriteString(w, `"}}`)
		return true
	}
}
