package streaming

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/sirupsen/logrus"
	"k8s.io/cri-streaming/pkg/streaming/portforward"
)

// Port-forward over WebSocket, as kubectl >= 1.30 and critest's
// -websocket-portforward speak it, is SPDY tunnelled in a WebSocket: the
// client asks for the subprotocol "SPDY/3.1+portforward.k8s.io" and then
// sends SPDY frames as binary messages. k8s.io/cri-streaming serves SPDY
// and the older v4 WebSocket channel protocols, but not this tunnelling
// (in a cluster the API server terminates it and talks plain SPDY to the
// kubelet). tunnelled serves it in front of the library: it upgrades the
// WebSocket, then gives the library's own SPDY handler a request that
// looks like a plain SPDY upgrade and a response whose hijacked
// connection is the tunnel, so the port-forward protocol itself is still
// the library's.
//
// The tunnel is a few lines over gorilla/websocket rather than client-go's
// TunnelingConnection: importing client-go would register its API scheme
// at start and cost noded several MiB of resident memory.
func tunnelled(lib http.Handler, lg *logrus.Entry) http.Handler {
	upgrader := websocket.Upgrader{
		Subprotocols: []string{portforward.WebsocketsSPDYTunnelingPortForwardV1},
		// The single-use token in the URL is the credential, as for the
		// library's own WebSocket protocols; browsers are not clients.
		CheckOrigin: func(*http.Request) bool { return true },
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasPrefix(r.URL.Path, "/portforward/") || !wantsTunnel(r) {
			if isSPDYUpgrade(r) {
				w = spdyUpgrade{w}
			}
			lib.ServeHTTP(w, r)
			return
		}
		ws, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			lg.WithError(err).Debug("port-forward tunnel: WebSocket upgrade failed")
			return // the upgrader has answered the client
		}
		conn := newWSConn(ws)
		defer conn.Close()
		inner := r.Clone(r.Context())
		for _, h := range []string{"Sec-Websocket-Key", "Sec-Websocket-Version", "Sec-Websocket-Protocol", "Sec-Websocket-Extensions"} {
			inner.Header.Del(h)
		}
		inner.Header.Set("Connection", "Upgrade")
		inner.Header.Set("Upgrade", "SPDY/3.1")
		inner.Header.Set("X-Stream-Protocol-Version", strings.TrimPrefix(ws.Subprotocol(), portforward.WebsocketsSPDYTunnelingPrefix))
		// One WebSocket message a SPDY frame, not one a piece of it.
		resp := &tunnelResponse{header: http.Header{}, conn: newFrameConn(conn), log: lg}
		lib.ServeHTTP(resp, inner)
	})
}

// wantsTunnel: a WebSocket upgrade asking for SPDY tunnelling.
func wantsTunnel(r *http.Request) bool {
	if !websocket.IsWebSocketUpgrade(r) {
		return false
	}
	for _, p := range websocket.Subprotocols(r) {
		if strings.HasPrefix(p, portforward.WebsocketsSPDYTunnelingPrefix) {
			return true
		}
	}
	return false
}

// tunnelResponse is the http.ResponseWriter the library upgrades to SPDY:
// the client already speaks SPDY through the tunnel, so the 101 status is
// not sent, and Hijack returns the tunnel. A body (an error the library
// answers before upgrading) cannot reach the client as HTTP; it is logged
// and the tunnel closed.
type tunnelResponse struct {
	header http.Header
	conn   net.Conn
	status int
	log    *logrus.Entry
}

func (t *tunnelResponse) Header() http.Header { return t.header }

func (t *tunnelResponse) WriteHeader(code int) { t.status = code }

func (t *tunnelResponse) Write(b []byte) (int, error) {
	if t.status != http.StatusSwitchingProtocols {
		t.log.WithField("status", t.status).Debugf("port-forward tunnel: refused: %s", strings.TrimSpace(string(b)))
		_ = t.conn.Close()
	}
	return len(b), nil
}

func (t *tunnelResponse) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return t.conn, bufio.NewReadWriter(bufio.NewReader(t.conn), bufio.NewWriter(t.conn)), nil
}

// wsConn is a byte stream over binary WebSocket messages (a net.Conn).
// Reads and writes may run concurrently with each other (gorilla allows
// one reader and one writer), each serialised by its own lock.
type wsConn struct {
	ws *websocket.Conn

	rmu sync.Mutex
	cur io.Reader // the message being read; nil between messages

	wmu       sync.Mutex
	closeOnce sync.Once
}

func newWSConn(ws *websocket.Conn) *wsConn { return &wsConn{ws: ws} }

func (c *wsConn) Read(p []byte) (int, error) {
	c.rmu.Lock()
	defer c.rmu.Unlock()
	for {
		if c.cur == nil {
			typ, r, err := c.ws.NextReader()
			if err != nil {
				if websocket.IsCloseError(err, websocket.CloseNormalClosure, websocket.CloseGoingAway) {
					return 0, io.EOF
				}
				return 0, err
			}
			if typ != websocket.BinaryMessage {
				continue // the tunnel carries binary frames only
			}
			c.cur = r
		}
		n, err := c.cur.Read(p)
		if errors.Is(err, io.EOF) {
			c.cur = nil
			if n == 0 {
				continue
			}
			err = nil
		}
		return n, err
	}
}

func (c *wsConn) Write(p []byte) (int, error) {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if err := c.ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Close says goodbye (best effort, bounded) and closes the connection.
func (c *wsConn) Close() error {
	var err error
	c.closeOnce.Do(func() {
		c.wmu.Lock()
		_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
		c.wmu.Unlock()
		err = c.ws.Close()
	})
	return err
}

func (c *wsConn) LocalAddr() net.Addr                { return c.ws.LocalAddr() }
func (c *wsConn) RemoteAddr() net.Addr               { return c.ws.RemoteAddr() }
func (c *wsConn) SetDeadline(t time.Time) error      { return c.ws.NetConn().SetDeadline(t) }
func (c *wsConn) SetReadDeadline(t time.Time) error  { return c.ws.SetReadDeadline(t) }
func (c *wsConn) SetWriteDeadline(t time.Time) error { return c.ws.SetWriteDeadline(t) }
