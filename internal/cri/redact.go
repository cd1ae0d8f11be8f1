package cri

import (
	"fmt"

	"google.golang.org/protobuf/proto"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// loggable is what the interceptor's debug lines show of a request or
// response: the message itself, except where it carries secrets or bulk
// data, which a node's log must not keep:
//   - registry credentials (PullImage's auth);
//   - container environment values (Kubernetes puts Secrets there);
//   - ExecSync's output (up to 16 MiB a stream: it was written to the log
//     whole), shown as its size.
func loggable(m any) any {
	switch m := m.(type) {
	case *runtimeapi.PullImageRequest:
		if m.GetAuth() == nil {
			return m
		}
		c := proto.Clone(m).(*runtimeapi.PullImageRequest)
		c.Auth = &runtimeapi.AuthConfig{ServerAddress: m.GetAuth().GetServerAddress(), Username: "<redacted>"}
		return c
	case *runtimeapi.CreateContainerRequest:
		if len(m.GetConfig().GetEnvs()) == 0 {
			return m
		}
		c := proto.Clone(m).(*runtimeapi.CreateContainerRequest)
		for _, kv := range c.GetConfig().GetEnvs() {
			kv.Value = []byte("<redacted>")
		}
		return c
	case *runtimeapi.ExecSyncResponse:
		return fmt.Sprintf("exit_code:%d stdout:%d bytes stderr:%d bytes", m.GetExitCode(), len(m.GetStdout()), len(m.GetStderr()))
	}
	return m
}
