package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
)

// streamService hands out the URLs of interactive sessions
// (internal/streaming.Server): it checks the container or pod first, so
// that a request for a stopped one fails here, then serves the session
// when the client connects.
type streamService interface {
	Exec(id ids.ContainerID, req *runtimeapi.ExecRequest) (*runtimeapi.ExecResponse, error)
	Attach(id ids.ContainerID, req *runtimeapi.AttachRequest) (*runtimeapi.AttachResponse, error)
	PortForward(id ids.SandboxID, req *runtimeapi.PortForwardRequest) (*runtimeapi.PortForwardResponse, error)
}
