package state

import (
	"encoding/json"

	"google.golang.org/protobuf/encoding/protojson"
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"

	"github.com/noded-dev/noded/internal/ids"
)

// Sandbox is noded's record of a pod sandbox. Everything needed to stop
// and remove the pod after a restart of noded is in here.
type Sandbox struct {
	ID    ids.SandboxID `json:"id"`
	Name  string        `json:"name"` // reserved CRI name
	State SandboxState  `json:"state"`
	// CreatedAt is nanoseconds since the epoch.
	CreatedAt int64 `json:"createdAt"`
	// Config is the kubelet's request, kept for status and for containers
	// that inherit from it.
	Config *runtimeapi.PodSandboxConfig `json:"-"`
	// RuntimeHandler is the RuntimeClass handler ("" is the default).
	RuntimeHandler string `json:"runtimeHandler,omitempty"`
	// NetNSPath is the pinned network namespace ("" with host network).
	NetNSPath string `json:"netnsPath,omitempty"`
	// IPs are the pod's addresses, primary first.
	IPs []string `json:"ips,omitempty"`
	// NetworkReady is false once the CNI teardown succeeded.
	NetworkReady bool `json:"networkReady"`
	// PausePID is the pause process, whose namespaces containers join.
	PausePID int `json:"pausePid,omitempty"`
	// CgroupParent is the pod cgroup (cgroupfs path or systemd slice).
	CgroupParent string `json:"cgroupParent,omitempty"`
	// Dir holds the pod's files (hosts, resolv.conf, hostname, shm).
	Dir string `json:"dir"`
	// Extra is free-form, per-subsystem detail shown in verbose status.
	Extra map[string]string `json:"extra,omitempty"`
}

// Container is noded's record of a container.
type Container struct {
	ID        ids.ContainerID `json:"id"`
	SandboxID ids.SandboxID   `json:"sandboxId"`
	Name      string          `json:"name"` // reserved CRI name
	State     ContainerState  `json:"state"`
	CreatedAt int64           `json:"createdAt"`
	StartedAt int64           `json:"startedAt,omitempty"`
	// FinishedAt, ExitCode, Reason and Message are set once Exited.
	FinishedAt int64  `json:"finishedAt,omitempty"`
	ExitCode   int32  `json:"exitCode"`
	Reason     string `json:"reason,omitempty"`
	Message    string `json:"message,omitempty"`
	// Config is the kubelet's request.
	Config *runtimeapi.ContainerConfig `json:"-"`
	// ImageRef is the image as requested; ImageID is the resolved ID.
	ImageRef string `json:"imageRef"`
	ImageID  string `json:"imageId"`
	// StorageID is the containers/storage container holding the rootfs.
	StorageID string `json:"storageId,omitempty"`
	// Bundle is the OCI bundle directory (config.json).
	Bundle  string `json:"bundle"`
	LogPath string `json:"logPath,omitempty"`
	// Pid is the container's init process while it runs.
	Pid int `json:"pid,omitempty"`
	// Extra is free-form detail shown in verbose status.
	Extra map[string]string `json:"extra,omitempty"`
}

type sandboxFile struct {
	Sandbox
	ConfigJSON json.RawMessage `json:"config"` // protojson: files stay readable
}

type containerFile struct {
	Container
	ConfigJSON json.RawMessage `json:"config"`
}

func (s *Sandbox) marshal() ([]byte, error) {
	cfg, err := protojson.Marshal(orEmpty(s.Config))
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(sandboxFile{Sandbox: *s, ConfigJSON: cfg}, "", "  ")
}

func unmarshalSandbox(b []byte) (*Sandbox, error) {
	var f sandboxFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	f.Config = &runtimeapi.PodSandboxConfig{}
	if len(f.ConfigJSON) > 0 {
		if err := protojson.Unmarshal(f.ConfigJSON, f.Config); err != nil {
			return nil, err
		}
	}
	return &f.Sandbox, nil
}

func (c *Container) marshal() ([]byte, error) {
	var cfg []byte
	var err error
	if c.Config != nil {
		cfg, err = protojson.Marshal(c.Config)
	} else {
		cfg, err = protojson.Marshal(&runtimeapi.ContainerConfig{})
	}
	if err != nil {
		return nil, err
	}
	return json.MarshalIndent(containerFile{Container: *c, ConfigJSON: cfg}, "", "  ")
}

func unmarshalContainer(b []byte) (*Container, error) {
	var f containerFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, err
	}
	f.Config = &runtimeapi.ContainerConfig{}
	if len(f.ConfigJSON) > 0 {
		if err := protojson.Unmarshal(f.ConfigJSON, f.Config); err != nil {
			return nil, err
		}
	}
	return &f.Container, nil
}

func orEmpty(c *runtimeapi.PodSandboxConfig) *runtimeapi.PodSandboxConfig {
	if c == nil {
		return &runtimeapi.PodSandboxConfig{}
	}
	return c
}
