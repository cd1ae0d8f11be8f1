package cri

import (
	"context"
	"errors"
	"testing"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

type fakeNetwork struct{ err error }

func (f fakeNetwork) Status() error { return f.err }

func TestStatusConditions(t *testing.T) {
	tests := []struct {
		desc       string
		network    error
		wantReady  bool
		wantReason string
	}{
		{desc: "network ready", network: nil, wantReady: true},
		{desc: "no CNI config", network: errors.New("no network config found in /etc/cni/net.d"), wantReady: false, wantReason: reasonNetworkNotReady},
	}
	for _, tt := range tests {
		t.Run(tt.desc, func(t *testing.T) {
			s := NewServer(Options{Version: "test", Network: fakeNetwork{tt.network}})
			resp, err := s.Status(context.Background(), &runtimeapi.StatusRequest{Verbose: true})
			if err != nil {
				t.Fatal(err)
			}
			conds := map[string]*runtimeapi.RuntimeCondition{}
			for _, c := range resp.GetStatus().GetConditions() {
				conds[c.GetType()] = c
			}
			if !conds[runtimeapi.RuntimeReady].GetStatus() {
				t.Error("RuntimeReady is false")
			}
			net := conds[runtimeapi.NetworkReady]
			if net.GetStatus() != tt.wantReady || net.GetReason() != tt.wantReason {
				t.Errorf("NetworkReady = %v reason %q", net.GetStatus(), net.GetReason())
			}
			if !tt.wantReady && net.GetMessage() == "" {
				t.Error("NetworkReady=false without a message")
			}
			if resp.GetInfo()["config"] == "" {
				t.Error("verbose status has no info")
			}
		})
	}
}

func TestVersion(t *testing.T) {
	resp, err := NewServer(Options{Version: "1.2.3"}).Version(context.Background(), &runtimeapi.VersionRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.GetRuntimeName() != "noded" || resp.GetRuntimeVersion() != "1.2.3" || resp.GetRuntimeApiVersion() != "v1" {
		t.Fatalf("got %+v", resp)
	}
}
