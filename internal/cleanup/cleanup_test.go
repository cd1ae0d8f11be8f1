package cleanup

import (
	"context"
	"errors"
	"strings"
	"testing"
)

func TestStackRunsLIFOOnDetachedContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // the request is already gone
	var order []string
	var s Stack
	for _, name := range []string{"name", "netns", "storage"} {
		s.Push(name, func(ctx context.Context) error {
			if ctx.Err() != nil {
				t.Errorf("step %s ran on a cancelled context", name)
			}
			order = append(order, name)
			if name == "netns" {
				return errors.New("busy")
			}
			return nil
		})
	}
	err := s.Run(ctx, nil)
	if got := strings.Join(order, ","); got != "storage,netns,name" {
		t.Fatalf("order = %s", got)
	}
	if err == nil || !strings.Contains(err.Error(), "netns: busy") {
		t.Fatalf("err = %v", err)
	}
	if s.Len() != 0 {
		t.Fatal("steps kept after Run")
	}
}

func TestRunIf(t *testing.T) {
	tests := []struct {
		desc    string
		err     error
		release bool
		wantRan bool
	}{
		{desc: "success keeps resources", err: nil, wantRan: false},
		{desc: "failure rolls back", err: errors.New("boom"), wantRan: true},
		{desc: "released stack does nothing", err: errors.New("boom"), release: true, wantRan: false},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			ran := false
			var s Stack
			s.Push("x", func(context.Context) error { ran = true; return nil })
			if tt.release {
				s.Release()
			}
			retErr := tt.err
			s.RunIf(context.Background(), &retErr, nil)
			if ran != tt.wantRan {
				t.Fatalf("ran = %v", ran)
			}
		})
	}
}
