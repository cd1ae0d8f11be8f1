package specgen

import (
	"maps"
	"strconv"

	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// Annotation keys containerd's CRI plugin puts on specs. noded sets the
// same so OCI hooks and runtimes written for containerd (Kata, NRI
// plugins, monitoring) find what they expect.
const (
	AnnotationContainerType    = "io.kubernetes.cri.container-type"
	AnnotationSandboxID        = "io.kubernetes.cri.sandbox-id"
	AnnotationSandboxName      = "io.kubernetes.cri.sandbox-name"
	AnnotationSandboxNamespace = "io.kubernetes.cri.sandbox-namespace"
	AnnotationSandboxUID       = "io.kubernetes.cri.sandbox-uid"
	AnnotationSandboxLogDir    = "io.kubernetes.cri.sandbox-log-directory"
	AnnotationSandboxImageName = "io.kubernetes.cri.podsandbox.image-name"
	AnnotationContainerName    = "io.kubernetes.cri.container-name"
	AnnotationImageName        = "io.kubernetes.cri.image-name"
	AnnotationSandboxCPUPeriod = "io.kubernetes.cri.sandbox-cpu-period"
	AnnotationSandboxCPUQuota  = "io.kubernetes.cri.sandbox-cpu-quota"
	AnnotationSandboxCPUShares = "io.kubernetes.cri.sandbox-cpu-shares"
	AnnotationSandboxMemory    = "io.kubernetes.cri.sandbox-memory"

	ContainerTypeSandbox   = "sandbox"
	ContainerTypeContainer = "container"
)

// podAnnotations are the keys both kinds of spec carry.
func podAnnotations(out map[string]string, sandboxID string, pod *runtimeapi.PodSandboxConfig) {
	out[AnnotationSandboxID] = sandboxID
	out[AnnotationSandboxName] = pod.GetMetadata().GetName()
	out[AnnotationSandboxNamespace] = pod.GetMetadata().GetNamespace()
	out[AnnotationSandboxUID] = pod.GetMetadata().GetUid()
}

// containerAnnotations copies the request's annotations (as CRI-O does)
// and adds containerd's, which win over a request trying to set them.
func containerAnnotations(in *Container) map[string]string {
	out := maps.Clone(in.Config.GetAnnotations())
	if out == nil {
		out = map[string]string{}
	}
	podAnnotations(out, in.SandboxID, in.Sandbox)
	out[AnnotationContainerType] = ContainerTypeContainer
	out[AnnotationContainerName] = in.Config.GetMetadata().GetName()
	out[AnnotationImageName] = in.ImageName
	return out
}

// sandboxAnnotations are the pod's annotations plus containerd's, with the
// pod's initial resources when the kubelet sent them.
func sandboxAnnotations(in *Sandbox) map[string]string {
	out := maps.Clone(in.Config.GetAnnotations())
	if out == nil {
		out = map[string]string{}
	}
	podAnnotations(out, in.ID, in.Config)
	out[AnnotationContainerType] = ContainerTypeSandbox
	out[AnnotationSandboxLogDir] = in.Config.GetLogDirectory()
	out[AnnotationSandboxImageName] = in.ImageName
	if r := in.Config.GetLinux().GetResources(); r != nil {
		out[AnnotationSandboxCPUPeriod] = strconv.FormatInt(r.GetCpuPeriod(), 10)
		out[AnnotationSandboxCPUQuota] = strconv.FormatInt(r.GetCpuQuota(), 10)
		out[AnnotationSandboxCPUShares] = strconv.FormatInt(r.GetCpuShares(), 10)
		out[AnnotationSandboxMemory] = strconv.FormatInt(r.GetMemoryLimitInBytes(), 10)
	}
	return out
}
