// Package streaming is noded's CRI streaming server: the HTTP endpoint
// that the URLs returned by Exec, Attach and PortForward point to, on
// which kubectl (through the API server and the kubelet), crictl and
// critest run their interactive sessions.
//
// The protocols are the kubelet's own streaming library,
// k8s.io/cri-streaming: SPDY (channel.k8s.io v1 to v4, portforward.k8s.io)
// and WebSocket (v5.channel.k8s.io for exec and attach; port-forward over
// WebSocket with SPDY tunnelling). Its token cache makes every URL
// single-use and short-lived (an unknown, reused or expired token is an
// HTTP 404). noded only decides where the server listens and what runs
// behind it: the pod and container services (internal/sandbox), through
// the small interfaces below.
//
// Lifecycle: New listens (so the port of stream-port 0 is known before
// the first URL is made), Serve serves until Close, which closes the
// listener and every open stream.
package streaming

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"time"

	"github.com/sirupsen/logrus"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	cristreaming "k8s.io/cri-streaming/pkg/streaming"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/ids"
	"github.com/noded-dev/noded/internal/log"
)

// Options configure the server (config keys stream-*).
type Options struct {
	// Address and Port are where it listens; port 0 picks a free port.
	Address string
	Port    int
	// IdleTimeout closes a stream with no traffic for this long.
	IdleTimeout time.Duration
	// TLSCert and TLSKey serve HTTPS; TLSCA additionally requires client
	// certificates signed by it.
	TLSCert, TLSKey, TLSCA string

	// Containers runs exec and attach sessions (nil: Exec and Attach
	// answer Unimplemented); Pods port-forwards.
	Containers containers
	Pods       pods
	Logger     *logrus.Entry
}

// Server is the streaming server. Its methods are safe for concurrent use.
type Server struct {
	lib  cristreaming.Server
	ln   net.Listener
	http *http.Server
	log  *logrus.Entry
	pods pods
	ctrs containers
	// rt is what the library calls; serveV5 calls it too.
	rt     *runtime
	idle   time.Duration
	tokens tokens
}

// New checks the options, listens, and builds the server; Serve starts
// serving.
func New(o Options) (*Server, error) {
	if o.Pods == nil {
		return nil, errors.New("streaming: pods are required")
	}
	tlsConfig, err := tlsConfig(o)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(o.Address, strconv.Itoa(o.Port)))
	if err != nil {
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	scheme := "http"
	if tlsConfig != nil {
		scheme = "https"
	}
	cfg := cristreaming.DefaultConfig
	cfg.Addr = ln.Addr().String()
	cfg.BaseURL = &url.URL{Scheme: scheme, Host: ln.Addr().String()}
	if o.IdleTimeout > 0 {
		cfg.StreamIdleTimeout = o.IdleTimeout
	}
	cfg.TLSConfig = tlsConfig
	lg := log.Or(o.Logger)
	rt := &runtime{containers: o.Containers, pods: o.Pods, log: lg}
	lib, err := cristreaming.NewServer(cfg, rt)
	if err != nil {
		ln.Close()
		return nil, fmt.Errorf("streaming server: %w", err)
	}
	if tlsConfig != nil {
		ln = tls.NewListener(ln, tlsConfig)
	}
	ln = closeWatcher{ln} // outside TLS: Hijack hands out this conn
	s := &Server{lib: lib, ln: ln, log: lg, pods: o.Pods, ctrs: o.Containers, rt: rt, idle: cfg.StreamIdleTimeout}
	// In front of the library: noded's exec/attach tokens and WebSocket
	// v5 (websocket.go), then port-forward tunnelled in a WebSocket
	// (tunnel.go).
	s.http = &http.Server{Handler: s.sessions(tunnelled(lib, lg)), ReadHeaderTimeout: 30 * time.Second, ConnContext: connContext}
	return s, nil
}

// tlsConfig is nil without a certificate.
func tlsConfig(o Options) (*tls.Config, error) {
	if o.TLSCert == "" {
		return nil, nil
	}
	cert, err := tls.LoadX509KeyPair(o.TLSCert, o.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("stream-tls-cert/stream-tls-key: %w", err)
	}
	c := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.TLSCA != "" {
		pem, err := os.ReadFile(o.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("stream-tls-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("stream-tls-ca: no certificate in %s", o.TLSCA)
		}
		c.ClientCAs, c.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return c, nil
}

// Addr is the address the server listens on (with the chosen port).
func (s *Server) Addr() net.Addr { return s.ln.Addr() }

// Serve serves until Close; it returns nil after Close.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close stops accepting and waits up to ctx for open streams to end,
// then closes those still open.
func (s *Server) Close(ctx context.Context) error {
	if err := s.http.Shutdown(ctx); err != nil {
		return s.http.Close()
	}
	return nil
}

// Exec checks that the container can run an exec and returns its URL.
// req's container ID is replaced by the resolved id.
func (s *Server) Exec(id ids.ContainerID, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error) {
	if s.ctrs == nil {
		return nil, errdefs.NotImplemented("streaming exec is not enabled")
	}
	if err := s.ctrs.CheckExec(id); err != nil {
		return nil, err
	}
	r := &runtimeapi.ExecRequest{
		ContainerId: string(id), Cmd: req.GetCmd(), Tty: req.GetTty(),
		Stdin: req.GetStdin(), Stdout: req.GetStdout(), Stderr: req.GetStderr(),
	}
	resp, err := s.lib.GetExec(r)
	if err != nil {
		return nil, err
	}
	if err := s.tokens.put(resp.GetUrl(), r); err != nil {
		return nil, errdefs.ResourceExhausted("%v", err)
	}
	return resp, nil
}

// Attach checks that the container can be attached to as asked and
// returns the URL.
func (s *Server) Attach(id ids.ContainerID, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error) {
	if s.ctrs == nil {
		return nil, errdefs.NotImplemented("attach is not enabled")
	}
	if err := s.ctrs.CheckAttach(id, req.GetStdin()); err != nil {
		return nil, err
	}
	r := &runtimeapi.AttachRequest{ContainerId: string(id), Stdin: req.GetStdin(), Tty: req.GetTty(), Stdout: req.GetStdout(), Stderr: req.GetStderr()}
	resp, err := s.lib.GetAttach(r)
	if err != nil {
		return nil, err
	}
	if err := s.tokens.put(resp.GetUrl(), r); err != nil {
		return nil, errdefs.ResourceExhausted("%v", err)
	}
	return resp, nil
}

// PortForward checks that the pod is ready and returns the URL.
func (s *Server) PortForward(id ids.SandboxID, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error) {
	if err := s.pods.CheckPortForward(id); err != nil {
		return nil, err
	}
	return s.lib.GetPortForward(&runtimeapi.PortForwardRequest{PodSandboxId: string(id), Port: req.GetPort()})
}
