// Package cri is noded's CRI v1 gRPC front end. It is deliberately thin: one
// file per RPC, each handler validating its request and calling a domain
// package (imagesvc, sandbox, netcni). Domain errors are errdefs classes
// and become gRPC status codes in one place, the interceptor in
// interceptor.go; handlers never build status errors themselves.
//
// RPCs that are not implemented yet fall through to the embedded
// Unimplemented servers and answer codes.Unimplemented, never a fake success.
package cri

import (
	runtimeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
)

// RuntimeName is reported by Version.
const RuntimeName = "noded"

// RuntimeAPIVersion is the CRI API version noded serves.
const RuntimeAPIVersion = "v1"

// networkStatus reports whether pod networking is usable; a non-nil error
// is shown to the kubelet as NetworkReady=false with the error as message.
type networkStatus interface {
	Status() error
}

// Options are the dependencies of a Server, wired explicitly by cmd/noded.
type Options struct {
	// Version is noded's own version, reported as RuntimeVersion.
	Version string
	// Network reports CNI readiness.
	Network networkStatus
	// Images serves the ImageService RPCs; nil leaves them Unimplemented.
	Images imageService
	// Pods, Containers, Exec and Stats serve the RuntimeService RPCs of
	// their concern, IDs resolves the IDs in their requests; a nil one
	// leaves its RPCs Unimplemented.
	Pods       podService
	Containers containerService
	Exec       execService
	Stats      statsService
	IDs        resolver
	// PodStats serves PodSandboxStats and ListPodSandboxStats; nil
	// leaves them Unimplemented.
	PodStats podStatsService
	// Metrics serves ListMetricDescriptors and ListPodSandboxMetrics;
	// nil leaves them Unimplemented.
	Metrics metricsService
	// Streams serves Exec, Attach and PortForward; nil leaves them
	// Unimplemented.
	Streams streamService
	// Events serves GetContainerEvents; nil leaves it Unimplemented.
	Events eventService
	// Checkpoints serves CheckpointContainer; nil leaves it
	// Unimplemented.
	Checkpoints checkpointService
	// PodCheckpoints serves CheckpointPod, PodRestores RestorePod; nil
	// leaves them Unimplemented.
	PodCheckpoints podCheckpointer
	PodRestores    podRestorer
	// CgroupDriver is "cgroupfs" or "systemd", reported by RuntimeConfig.
	CgroupDriver string
	// Handlers are the RuntimeClass handlers served ("" is the default).
	Handlers []string
	// RecursiveReadOnlyMounts says the kernel can make bind mounts
	// read-only recursively (mount_setattr, Linux 5.12).
	RecursiveReadOnlyMounts bool
}

// Server serves both CRI services: its RuntimeServer implements
// runtimeapi.RuntimeServiceServer, its ImageServer
// runtimeapi.ImageServiceServer (the two share no method name, so Server
// implements both too).
type Server struct {
	*RuntimeServer
	*ImageServer
}

// RuntimeServer serves the RuntimeService RPCs.
type RuntimeServer struct {
	runtimeapi.UnimplementedRuntimeServiceServer
	opts Options
}

// ImageServer serves the ImageService RPCs.
type ImageServer struct {
	runtimeapi.UnimplementedImageServiceServer
	opts Options
}

// NewServer returns a Server using the given dependencies.
func NewServer(opts Options) *Server {
	return &Server{RuntimeServer: &RuntimeServer{opts: opts}, ImageServer: &ImageServer{opts: opts}}
}
