package streaming

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	utilexec "k8s.io/utils/exec"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
)

type fakePods struct{ ready map[ids.SandboxID]bool }

func (f fakePods) CheckPortForward(id ids.SandboxID) error {
	ready, ok := f.ready[id]
	if !ok {
		return errdefs.NotFound("pod %s not found", id)
	}
	if !ready {
		return errdefs.FailedPrecondition("pod %s is not ready", id)
	}
	return nil
}

func (fakePods) PortForward(context.Context, ids.SandboxID, int32, io.ReadWriteCloser) error {
	return nil
}

func newServer(t *testing.T, o Options) *Server {
	t.Helper()
	o.Address = "127.0.0.1"
	if o.Pods == nil {
		o.Pods = fakePods{ready: map[ids.SandboxID]bool{"ready": true, "stopped": false}}
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve() }()
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	return s
}

func TestPortForwardURLs(t *testing.T) {
	s := newServer(t, Options{})
	tests := []struct {
		pod     ids.SandboxID
		wantErr error
	}{
		{"ready", nil},
		{"stopped", errdefs.ErrFailedPrecondition},
		{"gone", errdefs.ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(string(tt.pod), func(t *testing.T) {
			resp, err := s.PortForward(tt.pod, &runtimeapi.PortForwardRequest{Port: []int32{80}})
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				return
			}
			// The URL points at the port chosen for stream-port 0.
			if want := "http://" + s.Addr().String() + "/portforward/"; !strings.HasPrefix(resp.GetUrl(), want) {
				t.Fatalf("URL %q, want prefix %q", resp.GetUrl(), want)
			}
		})
	}
}

func TestExecAndAttachWithoutContainers(t *testing.T) {
	s := newServer(t, Options{})
	if _, err := s.Exec("c", &runtimeapi.ExecRequest{Cmd: []string{"sh"}, Stdout: true}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("Exec: %v", err)
	}
	if _, err := s.Attach("c", &runtimeapi.AttachRequest{Stdout: true}); !errors.Is(err, errdefs.ErrNotImplemented) {
		t.Errorf("Attach: %v", err)
	}
}

func TestUnknownTokenIs404(t *testing.T) {
	s := newServer(t, Options{})
	for _, path := range []string{"/portforward/nope", "/exec/nope", "/attach/nope"} {
		r, err := http.Get("http://" + s.Addr().String() + path)
		if err != nil {
			t.Fatal(err)
		}
		r.Body.Close()
		if r.StatusCode != http.StatusNotFound {
			t.Errorf("%s: HTTP %d, want 404", path, r.StatusCode)
		}
	}
}

// writeCert writes a self-signed certificate and key for 127.0.0.1.
func writeCert(t *testing.T, dir, name string) (certPath, keyPath string, cert tls.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: name},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certPath, keyPath = filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
	if err := os.WriteFile(certPath, certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyPath, keyPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	cert, err = tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	return certPath, keyPath, cert
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	srvCert, srvKey, _ := writeCert(t, dir, "server")
	clientCertPath, _, clientCert := writeCert(t, dir, "client")
	pool := x509.NewCertPool()
	b, _ := os.ReadFile(srvCert)
	pool.AppendCertsFromPEM(b)

	s := newServer(t, Options{TLSCert: srvCert, TLSKey: srvKey, TLSCA: clientCertPath})
	resp, err := s.PortForward("ready", &runtimeapi.PortForwardRequest{})
	if err != nil || !strings.HasPrefix(resp.GetUrl(), "https://") {
		t.Fatalf("URL %q, %v: want https", resp.GetUrl(), err)
	}
	get := func(certs []tls.Certificate) error {
		c := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: certs}}}
		r, err := c.Get("https://" + s.Addr().String() + "/portforward/nope")
		if err == nil {
			r.Body.Close()
		}
		return err
	}
	if err := get(nil); err == nil {
		t.Error("a client without a certificate was served; stream-tls-ca requires one")
	}
	if err := get([]tls.Certificate{clientCert}); err != nil {
		t.Errorf("a client with a certificate signed by the CA: %v", err)
	}

	if _, err := New(Options{Address: "127.0.0.1", Pods: fakePods{}, TLSCert: srvCert, TLSKey: filepath.Join(dir, "missing.key")}); err == nil {
		t.Error("New with a missing key succeeded")
	}
}

// The tunnel is a byte stream over binary messages: reads cross message
// boundaries, text messages are ignored, a close is EOF.
func TestWSConn(t *testing.T) {
	server := make(chan *wsConn, 1)
	up := websocket.Upgrader{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			t.Error(err)
			return
		}
		server <- newWSConn(ws)
	}))
	defer hs.Close()
	client, resp, err := websocket.DefaultDialer.Dial("ws"+strings.TrimPrefix(hs.URL, "http"), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	conn := <-server
	for _, m := range []struct {
		typ  int
		data string
	}{{websocket.BinaryMessage, "hello "}, {websocket.TextMessage, "ignored"}, {websocket.BinaryMessage, "world"}} {
		if err := client.WriteMessage(m.typ, []byte(m.data)); err != nil {
			t.Fatal(err)
		}
	}
	_ = client.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""))
	got, err := io.ReadAll(conn)
	if err != nil || string(got) != "hello world" {
		t.Fatalf("read %q, %v", got, err)
	}
	if n, err := conn.Write([]byte("back")); err != nil || n != 4 {
		t.Logf("write after the peer's close: %d, %v", n, err)
	}
	if err := conn.Close(); err != nil {
		t.Logf("close: %v", err)
	}
	if err := conn.Close(); err != nil {
		t.Errorf("second close: %v", err)
	}
}

func TestTokensAreSingleUse(t *testing.T) {
	var tk tokens
	req := &runtimeapi.ExecRequest{ContainerId: "c"}
	if err := tk.put("http://127.0.0.1:1/exec/abc", req); err != nil {
		t.Fatal(err)
	}
	if got, ok := tk.take("abc"); !ok || got != req {
		t.Fatalf("first take: %v %v", got, ok)
	}
	if _, ok := tk.take("abc"); ok {
		t.Fatal("a token was taken twice")
	}
	if _, ok := tk.take("never"); ok {
		t.Fatal("an unknown token was taken")
	}
	// Expired entries are not served, and are dropped when others come.
	tk.m["old"] = tokenEntry{req: req, expires: time.Now().Add(-time.Second)}
	if _, ok := tk.take("old"); ok {
		t.Fatal("an expired token was taken")
	}
	for i := range maxTokens {
		if err := tk.put(fmt.Sprintf("http://h/exec/t%d", i), req); err != nil {
			t.Fatalf("put %d: %v", i, err)
		}
	}
	if err := tk.put("http://h/exec/one-too-many", req); err == nil {
		t.Fatal("the table grew past its bound")
	}
}

func TestStatusOf(t *testing.T) {
	tests := []struct {
		name       string
		err        error
		wantStatus string
		wantReason string
		wantCause  string
	}{
		{"success", nil, "Success", "", ""},
		{"exit code", utilexec.CodeExitError{Err: errors.New("exit 3"), Code: 3}, "Failure", "NonZeroExitCode", "3"},
		{"other error", errors.New("monitor gone"), "Failure", "InternalError", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := statusOf(tt.err)
			if st.Status != tt.wantStatus || st.Reason != tt.wantReason {
				t.Fatalf("status %+v", st)
			}
			if tt.wantCause != "" && (st.Details == nil || st.Details.Causes[0].Message != tt.wantCause || st.Details.Causes[0].Type != "ExitCode") {
				t.Fatalf("causes %+v", st.Details)
			}
		})
	}
}

// A request's context ends when its client goes away, even after the
// handler hijacked the connection (which net/http stops watching).
func TestHijackedRequestEndsWithItsClient(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ended := make(chan struct{})
	hijacked := make(chan struct{})
	srv := &http.Server{ConnContext: connContext, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, _, err := w.(http.Hijacker).Hijack()
		if err != nil {
			t.Error(err)
			return
		}
		defer conn.Close()
		close(hijacked)
		// Whoever owns the hijacked conn reads it (as SPDY does).
		go func() { _, _ = io.Copy(io.Discard, conn) }()
		select {
		case <-r.Context().Done():
			close(ended)
		case <-time.After(5 * time.Second):
		}
	})}
	go func() { _ = srv.Serve(closeWatcher{ln}) }()
	defer srv.Close()

	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	<-hijacked
	select {
	case <-ended:
		t.Fatal("the context ended while the client was still there (the hijack's read deadline must not count)")
	case <-time.After(200 * time.Millisecond):
	}
	c.Close()
	select {
	case <-ended:
	case <-time.After(3 * time.Second):
		t.Fatal("the request's context outlived its client")
	}
}
