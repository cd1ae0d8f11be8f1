package streaming

import (
	"context"
	"errors"
	"net"
	"sync"
)

// A session's request context must end when its client goes away: that
// is how an exec'd process learns to die and an attach to detach. But
// net/http stops watching a connection once a handler hijacks it (SPDY
// and WebSocket both do), so r.Context() would stay alive until the
// session ended by itself — never, for a `cat` on a terminal whose
// client vanished. closeWatcher gives every connection a context that
// ends when a read of the connection fails (the peer closed it, or the
// idle timeout closed it) or the connection is closed; ConnContext hangs
// each request's context on it.
type closeWatcher struct {
	net.Listener
}

func (l closeWatcher) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &watchedConn{Conn: c, ctx: ctx, cancel: cancel}, nil
}

// watchedConn ends ctx at its first failed read or its close.
type watchedConn struct {
	net.Conn
	ctx    context.Context
	cancel context.CancelFunc
	once   sync.Once
}

func (c *watchedConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	// A deadline is not the peer going away: net/http ends its background
	// read with a deadline in the past when a handler hijacks.
	if err != nil && !isTimeout(err) {
		c.once.Do(c.cancel)
	}
	return n, err
}

func (c *watchedConn) Close() error {
	c.once.Do(c.cancel)
	return c.Conn.Close()
}

// connContext is the http.Server's ConnContext: requests on c get a
// context that ends with c (see closeWatcher).
func connContext(ctx context.Context, c net.Conn) context.Context {
	wc, ok := c.(*watchedConn)
	if !ok {
		return ctx
	}
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(wc.ctx, cancel)
	return ctx
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
