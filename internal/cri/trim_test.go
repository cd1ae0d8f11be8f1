package cri

import (
	"context"
	"testing"

	"google.golang.org/grpc"
)

type countingTrimmer struct{ begun, ended int }

func (c *countingTrimmer) Begin() func() {
	c.begun++
	return func() { c.ended++ }
}

// Pod and container lifecycle calls are work for the trimmer, from before
// the handler runs to after it returned; lists and statuses are not.
func TestTrimInterceptor(t *testing.T) {
	for _, tc := range []struct {
		method string
		work   bool
	}{
		{"/runtime.v1.RuntimeService/RunPodSandbox", true},
		{"/runtime.v1.RuntimeService/CreateContainer", true},
		{"/runtime.v1.RuntimeService/RemovePodSandbox", true},
		{"/runtime.v1.ImageService/RemoveImage", true},
		{"/runtime.v1.RuntimeService/ListContainers", false},
		{"/runtime.v1.RuntimeService/PodSandboxStatus", false},
		{"/runtime.v1.RuntimeService/ExecSync", false},
	} {
		t.Run(tc.method, func(t *testing.T) {
			tr := &countingTrimmer{}
			var inHandler int
			_, err := TrimInterceptor(tr)(context.Background(), nil, &grpc.UnaryServerInfo{FullMethod: tc.method},
				func(context.Context, any) (any, error) { inHandler = tr.begun - tr.ended; return nil, nil })
			if err != nil {
				t.Fatal(err)
			}
			want := 0
			if tc.work {
				want = 1
			}
			if tr.begun != want || tr.ended != want || inHandler != want {
				t.Errorf("begun %d, ended %d, in flight during the handler %d; want %d", tr.begun, tr.ended, inHandler, want)
			}
		})
	}
}
