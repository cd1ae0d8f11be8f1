package cri

import (
	"context"

	"google.golang.org/grpc/stats"

	"github.com/noded-dev/noded/internal/callend"
)

// CallEnd is the server's stats handler that marks every call and runs
// its end hooks once gRPC is done with it, answer sent (internal/callend):
// ExecSync's output budget is given back there, not when the handler
// returns.
type CallEnd struct{}

var _ stats.Handler = CallEnd{}

func (CallEnd) TagRPC(ctx context.Context, _ *stats.RPCTagInfo) context.Context {
	return callend.With(ctx)
}

func (CallEnd) HandleRPC(ctx context.Context, s stats.RPCStats) {
	if _, ok := s.(*stats.End); ok {
		callend.Run(ctx)
	}
}

func (CallEnd) TagConn(ctx context.Context, _ *stats.ConnTagInfo) context.Context { return ctx }

func (CallEnd) HandleConn(context.Context, stats.ConnStats) {}
