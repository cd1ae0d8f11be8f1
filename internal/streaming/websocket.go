package streaming

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-streaming/pkg/streaming/remotecommand"
	"k8s.io/streaming/pkg/httpstream/wsstream"
	utilexec "k8s.io/utils/exec"
)

// Exec and attach over WebSocket "v5.channel.k8s.io" (kubectl >= 1.30,
// client-go's WebSocket executor, critest -websocket-exec and
// -websocket-attach) are refused by k8s.io/cri-streaming, which offers
// the older channel protocols only. v5 is v4's framing (one byte of
// channel number per message: stdin, stdout, stderr, error, resize) plus
// a signal that closes one stream, which k8s.io/streaming's wsstream
// already implements; noded serves it with that, and runs the session
// through the same runtime calls the library uses.
//
// The requests behind exec and attach URLs are kept here too (tokens),
// since the library's token cache is private: every exec and attach
// request passes through noded's table first, which makes a token
// single-use across both paths (a token noded does not know is a 404,
// whichever protocol asks).
const v5Protocol = remotecommand.StreamProtocolV5Name

// tokenTTL and maxTokens match the library's cache.
const (
	tokenTTL  = time.Minute
	maxTokens = 1000
)

// tokens maps the token of an exec or attach URL to its request until it
// is used or expires. Safe for concurrent use.
type tokens struct {
	mu sync.Mutex
	m  map[string]tokenEntry
}

type tokenEntry struct {
	req     any // *runtimeapi.ExecRequest or *runtimeapi.AttachRequest
	expires time.Time
}

// put remembers the request behind rawURL's token.
func (t *tokens) put(rawURL string, req any) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.m == nil {
		t.m = map[string]tokenEntry{}
	}
	now := time.Now()
	for tok, e := range t.m {
		if now.After(e.expires) {
			delete(t.m, tok)
		}
	}
	if len(t.m) >= maxTokens {
		return errors.New("too many streaming requests in flight")
	}
	t.m[path.Base(u.Path)] = tokenEntry{req: req, expires: now.Add(tokenTTL)}
	return nil
}

// take returns and forgets token's request; false if unknown or expired.
func (t *tokens) take(token string) (any, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	e, ok := t.m[token]
	delete(t.m, token)
	if !ok || time.Now().After(e.expires) {
		return nil, false
	}
	return e.req, true
}

// sessions is the handler in front of the library for exec and attach
// URLs: it takes the token, serves v5 WebSocket clients itself and hands
// every other client to the library (which checks its own token).
func (s *Server) sessions(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		kind, token := path.Split(r.URL.Path)
		if kind != "/exec/" && kind != "/attach/" {
			next.ServeHTTP(w, r)
			return
		}
		req, ok := s.tokens.take(token)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if !wantsV5(r) {
			next.ServeHTTP(w, r)
			return
		}
		s.serveV5(w, r, req)
	})
}

func wantsV5(r *http.Request) bool {
	if !websocket.IsWebSocketUpgrade(r) {
		return false
	}
	for _, p := range websocket.Subprotocols(r) {
		if p == v5Protocol {
			return true
		}
	}
	return false
}

// The v5 channels, in order.
const (
	chStdin = iota
	chStdout
	chStderr
	chError
	chResize
)

// serveV5 runs one exec or attach session over a v5 WebSocket.
func (s *Server) serveV5(w http.ResponseWriter, r *http.Request, req any) {
	var stdin, stdout, stderr, tty bool
	switch q := req.(type) {
	case *runtimeapi.ExecRequest:
		stdin, stdout, stderr, tty = q.GetStdin(), q.GetStdout(), q.GetStderr(), q.GetTty()
	case *runtimeapi.AttachRequest:
		stdin, stdout, stderr, tty = q.GetStdin(), q.GetStdout(), q.GetStderr(), q.GetTty()
	default:
		http.NotFound(w, r)
		return
	}
	channel := func(want bool, typ wsstream.ChannelType) wsstream.ChannelType {
		if want {
			return typ
		}
		return wsstream.IgnoreChannel
	}
	conn := wsstream.NewConn(map[string]wsstream.ChannelProtocolConfig{v5Protocol: {Binary: true, Channels: []wsstream.ChannelType{
		channel(stdin, wsstream.ReadChannel), channel(stdout, wsstream.WriteChannel), channel(stderr, wsstream.WriteChannel),
		wsstream.WriteChannel, wsstream.ReadChannel,
	}}})
	conn.SetIdleTimeout(s.idle)
	_, streams, err := conn.Open(w, r)
	if err != nil {
		s.log.WithError(err).Debug("v5 WebSocket upgrade failed")
		return
	}
	defer conn.Close()
	// An empty message on the lowest writable channel tells the client the
	// session is open (as the library does).
	switch {
	case stdout:
		_, _ = streams[chStdout].Write(nil)
	case stderr:
		_, _ = streams[chStderr].Write(nil)
	default:
		_, _ = streams[chError].Write(nil)
	}

	var in io.Reader
	var out, errw io.WriteCloser
	if stdin {
		in = streams[chStdin]
	}
	if stdout {
		out = streams[chStdout]
	}
	if stderr {
		errw = streams[chStderr]
	}
	ctx := r.Context()
	resize := make(chan remotecommand.TerminalSize)
	go func() {
		defer close(resize)
		dec := json.NewDecoder(streams[chResize])
		for {
			var size remotecommand.TerminalSize
			if dec.Decode(&size) != nil {
				return
			}
			select {
			case resize <- size:
			case <-ctx.Done():
				return
			}
		}
	}()
	switch q := req.(type) {
	case *runtimeapi.ExecRequest:
		err = s.rt.Exec(ctx, q.GetContainerId(), q.GetCmd(), in, out, errw, tty, resize)
	case *runtimeapi.AttachRequest:
		err = s.rt.Attach(ctx, q.GetContainerId(), in, out, errw, tty, resize)
	}
	b, _ := json.Marshal(statusOf(err))
	_, _ = streams[chError].Write(b)
}

// status is the Kubernetes Status the v4/v5 error channel carries.
type status struct {
	Metadata struct{}       `json:"metadata"`
	Status   string         `json:"status"`
	Message  string         `json:"message,omitempty"`
	Reason   string         `json:"reason,omitempty"`
	Details  *statusDetails `json:"details,omitempty"`
	Code     int32          `json:"code,omitempty"`
}

type statusDetails struct {
	Causes []statusCause `json:"causes,omitempty"`
}

type statusCause struct {
	Type    string `json:"reason,omitempty"`
	Message string `json:"message,omitempty"`
}

// statusOf says how a session ended, as the kubelet's library says it: a
// non-zero exit code is a NonZeroExitCode failure with the code as cause
// (kubectl exits with it), anything else an internal error.
func statusOf(err error) status {
	var st status
	var exitErr utilexec.ExitError
	switch {
	case err == nil:
		st.Status = "Success"
	case errors.As(err, &exitErr) && exitErr.Exited():
		st.Status, st.Reason = "Failure", remotecommand.NonZeroExitCodeReason
		st.Message = fmt.Sprintf("command terminated with non-zero exit code: %v", err)
		st.Details = &statusDetails{Causes: []statusCause{{Type: remotecommand.ExitCodeCauseType, Message: fmt.Sprint(exitErr.ExitStatus())}}}
	default:
		st.Status, st.Reason, st.Code = "Failure", "InternalError", http.StatusInternalServerError
		st.Message = "Internal error occurred: " + strings.TrimSpace(err.Error())
	}
	return st
}
