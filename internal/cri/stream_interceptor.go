package cri

import (
	"context"
	"fmt"
	"path"
	"runtime/debug"
	"time"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	nlog "github.com/noded-dev/noded/internal/log"
)

// StreamInterceptor is UnaryInterceptor for the server-streaming RPCs
// (the Stream* lists): the call gets an id and a logger in its context,
// its request is logged at debug when the handler reads it, and the
// handler's domain error becomes a gRPC status here too, so that a
// streaming handler returns errdefs errors like any other.
func StreamInterceptor(base *logrus.Entry, obs Observer) grpc.StreamServerInterceptor {
	return func(srv any, ss grpc.ServerStream, info *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
		method := path.Base(info.FullMethod)
		log := base.WithFields(logrus.Fields{"id": newRequestID(), "method": method})
		start := time.Now()
		err := streamRecovering(srv, &loggedStream{ServerStream: ss, ctx: nlog.WithContext(ss.Context(), log), log: log}, handler, log)
		return finish(log, obs, method, start, err, nil)
	}
}

// loggedStream carries the call's logger in its context and logs the
// request it receives.
type loggedStream struct {
	grpc.ServerStream
	ctx context.Context
	log *logrus.Entry
}

func (s *loggedStream) Context() context.Context { return s.ctx }

func (s *loggedStream) RecvMsg(m any) error {
	err := s.ServerStream.RecvMsg(m)
	if err == nil && s.log.Logger.IsLevelEnabled(logrus.DebugLevel) {
		s.log.WithField("request", loggable(m)).Debug("request")
	}
	return err
}

// streamRecovering is callRecovering for a stream.
func streamRecovering(srv any, ss grpc.ServerStream, handler grpc.StreamHandler, log *logrus.Entry) (err error) {
	defer func() {
		if p := recover(); p != nil {
			log.WithField("panic", p).WithField("stack", string(debug.Stack())).Error("handler panicked")
			err = status.Error(codes.Internal, fmt.Sprintf("internal error: %v", p))
		}
	}()
	return handler(srv, ss)
}
