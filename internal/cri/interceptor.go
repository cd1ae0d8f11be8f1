package cri

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"path"
	"time"

	"github.com/containerd/errdefs/pkg/errgrpc"
	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type loggerKey struct{}

// logFrom returns the request's logger, carrying its request id and method.
func logFrom(ctx context.Context) *logrus.Entry {
	if l, ok := ctx.Value(loggerKey{}).(*logrus.Entry); ok {
		return l
	}
	return logrus.NewEntry(logrus.StandardLogger())
}

// WithLogger returns ctx carrying l; domain packages may use LoggerFrom.
func WithLogger(ctx context.Context, l *logrus.Entry) context.Context {
	return context.WithValue(ctx, loggerKey{}, l)
}

// LoggerFrom is logFrom for domain packages handed a request context.
func LoggerFrom(ctx context.Context) *logrus.Entry { return logFrom(ctx) }

// Observer records the outcome of one RPC (metrics); method is the short
// RPC name such as "PullImage".
type Observer interface {
	Observe(method string, code codes.Code, d time.Duration)
}

// UnaryInterceptor gives each request an id and a logger, logs it at debug,
// converts the handler's domain error into a gRPC status in this one place,
// and reports the outcome to obs (which may be nil).
func UnaryInterceptor(base *logrus.Entry, obs Observer) grpc.UnaryServerInterceptor {
	return func(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
		method := path.Base(info.FullMethod)
		log := base.WithFields(logrus.Fields{"id": newRequestID(), "method": method})
		ctx = WithLogger(ctx, log)
		start := time.Now()
		log.WithField("request", req).Debug("request")

		resp, err := handler(ctx, req)
		err = toGRPC(err)

		elapsed := time.Since(start)
		code := status.Code(err)
		if obs != nil {
			obs.Observe(method, code, elapsed)
		}
		fields := logrus.Fields{"code": code.String(), "duration": elapsed}
		switch {
		case err == nil:
			log.WithFields(fields).WithField("response", resp).Debug("response")
		case code == codes.Unimplemented || code == codes.NotFound:
			// Expected in normal operation (probes, idempotent removes).
			log.WithFields(fields).WithError(err).Debug("request failed")
		default:
			log.WithFields(fields).WithError(err).Warn("request failed")
		}
		return resp, err
	}
}

// toGRPC maps an errdefs class (or context error) to its gRPC code. Errors
// that carry no class become codes.Unknown with their message intact.
func toGRPC(err error) error {
	if err == nil {
		return nil
	}
	return errgrpc.ToGRPC(err)
}

func newRequestID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
