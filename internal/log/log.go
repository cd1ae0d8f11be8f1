// Package log carries a request's logger in its context.
//
// The CRI interceptor puts a logger with the request's id and RPC name in
// the context of every request (WithContext); domain packages log through
// FromContext(ctx), so a line logged deep inside a pod start names the
// request that caused it. Background work (exit watchers, reapers, pulls
// that outlive their first caller) runs on a context made from the
// service's own logger, so it logs with the component's fields instead.
//
// No package under internal/ may log through logrus' global logger: a
// test (TestNoGlobalLogger) walks the tree and fails on any such use.
package log

import (
	"context"
	"io"

	"github.com/sirupsen/logrus"
)

type key struct{}

// WithContext returns a context that carries l.
func WithContext(ctx context.Context, l *logrus.Entry) context.Context {
	return context.WithValue(ctx, key{}, l)
}

// FromContext returns the logger ctx carries, or a logger that discards
// everything (never the global one: a caller that forgot to set a logger
// is a wiring bug that tests show as missing lines, not as lines without
// a request id).
func FromContext(ctx context.Context) *logrus.Entry {
	if l, ok := ctx.Value(key{}).(*logrus.Entry); ok && l != nil {
		return l
	}
	return discard
}

// Or returns l, or a logger that discards everything when l is nil; for
// Options structs whose Logger is optional.
func Or(l *logrus.Entry) *logrus.Entry {
	if l != nil {
		return l
	}
	return discard
}

var discard = func() *logrus.Entry {
	l := logrus.New()
	l.SetOutput(io.Discard)
	l.SetLevel(logrus.PanicLevel)
	return logrus.NewEntry(l)
}()
