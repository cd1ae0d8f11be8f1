package state

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
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
	// PauseRootfs is the shared, read-only root filesystem the pause
	// container runs on (the built-in pause image's); "": it has a
	// storage container of its own, whose ID is the sandbox's.
	PauseRootfs string `json:"pauseRootfs,omitempty"`
	// Overhead and Resources are the pod-level resources of the last
	// UpdatePodSandboxResources (the pod's overhead, and the sum of its
	// containers' resources), as given. Recorded only: the pod cgroup
	// (CgroupParent) is the kubelet's, which sets its limits itself.
	// Replaced, never changed in place.
	Overhead  *specs.LinuxResources `json:"overhead,omitempty"`
	Resources *specs.LinuxResources `json:"resources,omitempty"`
	// Released: the pod is stopped and holds nothing on the host until
	// it is removed: its monitor is gone (and with it every process and
	// cgroup of its containers), its root filesystems and /dev/shm are
	// unmounted. Only its records, files and logs are left.
	Released bool `json:"released,omitempty"`
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
	StorageID ids.ContainerID `json:"storageId,omitempty"`
	// Bundle is the OCI bundle directory (config.json).
	Bundle  string `json:"bundle"`
	LogPath string `json:"logPath,omitempty"`
	// Pid is the container's init process while it runs.
	Pid int `json:"pid,omitempty"`
	// StopSignal is the signal StopContainer sends first (0: SIGTERM);
	// from the image or the request, resolved at create.
	StopSignal int `json:"stopSignal,omitempty"`
	// User is the identity the container's process runs as, resolved at
	// create from the request and the image's /etc/passwd and /etc/group.
	User User `json:"user"`
	// TerminationMessageFile is the host side of the container's
	// termination-log mount, read when it exits.
	TerminationMessageFile string `json:"terminationMessageFile,omitempty"`
	// CgroupsPath is the container's cgroup (the spec's linux.cgroupsPath).
	CgroupsPath string `json:"cgroupsPath,omitempty"`
	// Resources are the container's cgroup limits as applied: its
	// bundle's linux.resources without the device rules, from create and
	// each UpdateContainerResources (ContainerStatus reports them). Nil in
	// records written before noded recorded them. Replaced, never changed
	// in place: copies of the record share it.
	Resources *specs.LinuxResources `json:"resources,omitempty"`
	// OOMScoreAdj is the process's oom_score_adj as created (fitted to
	// the host), reported with the resources.
	OOMScoreAdj *int `json:"oomScoreAdj,omitempty"`
	// ImageVolumes are the container's image mounts, each a read-only
	// storage container on its image (internal/sandbox/imagevolumes.go).
	ImageVolumes []ImageVolume `json:"imageVolumes,omitempty"`
}

// ImageVolume is one image mount of a container (CRI Mount.image).
type ImageVolume struct {
	// Index is the mount's position in the request's mounts.
	Index int `json:"index"`
	// ContainerPath is where the container sees it.
	ContainerPath string `json:"containerPath"`
	// ImageID is the image's ID ("sha256:<hex>", PullImageResponse.image_ref),
	// reported as the mount's ImageSpec.image_ref.
	ImageID string `json:"imageId"`
	// StorageID is the storage container that holds the mount.
	StorageID ids.ContainerID `json:"storageId"`
}

// User is a container process's numeric identity.
type User struct {
	UID            uint32   `json:"uid"`
	GID            uint32   `json:"gid"`
	AdditionalGIDs []uint32 `json:"additionalGids,omitempty"`
}

// A record file is the record's JSON with its kubelet request added as
// "config", in protojson so that the files stay readable (and the field
// names are the CRI's). The Config fields are `json:"-"`: the request goes
// only through protojson.

func (s *Sandbox) marshal() ([]byte, error) { return marshalRecord(s, orEmpty(s.Config)) }

func unmarshalSandbox(b []byte) (*Sandbox, error) {
	sb := &Sandbox{Config: &runtimeapi.PodSandboxConfig{}}
	if err := unmarshalRecord(b, sb, sb.Config); err != nil {
		return nil, err
	}
	return sb, nil
}

func (c *Container) marshal() ([]byte, error) { return marshalRecord(c, orEmpty(c.Config)) }

func unmarshalContainer(b []byte) (*Container, error) {
	c := &Container{Config: &runtimeapi.ContainerConfig{}}
	if err := unmarshalRecord(b, c, c.Config); err != nil {
		return nil, err
	}
	if err := migrateContainerExtra(b, c); err != nil {
		return nil, err
	}
	return c, nil
}

// marshalRecord writes rec's JSON object with cfg appended as "config".
func marshalRecord(rec any, cfg proto.Message) ([]byte, error) {
	obj, err := json.Marshal(rec)
	if err != nil {
		return nil, err
	}
	cfgJSON, err := protojson.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	if len(obj) < 2 || obj[0] != '{' || obj[len(obj)-1] != '}' {
		return nil, fmt.Errorf("record is not a JSON object: %.40s", obj)
	}
	var raw bytes.Buffer
	raw.Write(obj[:len(obj)-1])
	if len(obj) > 2 {
		raw.WriteByte(',')
	}
	raw.WriteString(`"config":`)
	raw.Write(cfgJSON)
	raw.WriteByte('}')
	// Indent also normalises protojson's deliberately unstable spacing.
	var out bytes.Buffer
	if err := json.Indent(&out, raw.Bytes(), "", "  "); err != nil {
		return nil, err
	}
	return out.Bytes(), nil
}

// unmarshalRecord reads a record file into rec and its "config" into cfg;
// a file without a config leaves cfg empty.
func unmarshalRecord(b []byte, rec any, cfg proto.Message) error {
	if err := json.Unmarshal(b, rec); err != nil {
		return err
	}
	var f struct {
		Config json.RawMessage `json:"config"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if len(f.Config) == 0 {
		return nil
	}
	return protojson.Unmarshal(f.Config, cfg)
}

// orEmpty returns c, or an empty message of its type for a nil pointer
// (whose protojson form would be the same "{}", but a typed nil cannot be
// marshalled).
func orEmpty[T any, M interface {
	*T
	proto.Message
}](c M) M {
	if c == nil {
		return M(new(T))
	}
	return c
}

// Keys of the "extra" map in which noded up to issue #8 kept a container's
// stop signal, user, termination message file and cgroup; records written
// then are still read (migrateContainerExtra).
const (
	legacyStopSignal  = "stopSignal"             // decimal signal number
	legacyUser        = "user"                   // "uid:gid:g1,g2"
	legacyTermination = "terminationMessageFile" // host path
	legacyCgroupsPath = "cgroupsPath"            // linux.cgroupsPath
)

// migrateContainerExtra fills the fields that replaced the legacy "extra"
// map from it, each only when the record does not already have it. A value
// that does not parse leaves its field empty rather than failing the
// record, as the code that read the map ignored such values too; the
// record is written in the new form by its next update.
func migrateContainerExtra(b []byte, c *Container) error {
	var f struct {
		Extra map[string]string `json:"extra"`
	}
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	if len(f.Extra) == 0 {
		return nil
	}
	if c.StopSignal == 0 {
		if n, err := strconv.Atoi(f.Extra[legacyStopSignal]); err == nil && n > 0 {
			c.StopSignal = n
		}
	}
	if c.User.UID == 0 && c.User.GID == 0 && len(c.User.AdditionalGIDs) == 0 {
		if u, ok := parseLegacyUser(f.Extra[legacyUser]); ok {
			c.User = u
		}
	}
	if c.TerminationMessageFile == "" {
		c.TerminationMessageFile = f.Extra[legacyTermination]
	}
	if c.CgroupsPath == "" {
		c.CgroupsPath = f.Extra[legacyCgroupsPath]
	}
	return nil
}

// parseLegacyUser parses "uid:gid:g1,g2" (the group list may be empty).
func parseLegacyUser(s string) (User, bool) {
	parts := strings.SplitN(s, ":", 3)
	if len(parts) != 3 {
		return User{}, false
	}
	uid, err := strconv.ParseUint(parts[0], 10, 32)
	if err != nil {
		return User{}, false
	}
	gid, err := strconv.ParseUint(parts[1], 10, 32)
	if err != nil {
		return User{}, false
	}
	u := User{UID: uint32(uid), GID: uint32(gid)}
	if parts[2] == "" {
		return u, true
	}
	for _, g := range strings.Split(parts[2], ",") {
		n, err := strconv.ParseUint(g, 10, 32)
		if err != nil {
			return User{}, false
		}
		u.AdditionalGIDs = append(u.AdditionalGIDs, uint32(n))
	}
	return u, true
}
