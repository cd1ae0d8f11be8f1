package state

import (
	"fmt"

	"github.com/noded-dev/noded/internal/errdefs"
)

// SandboxState is the lifecycle of a pod sandbox:
//
//	Ready ──stop──▶ NotReady ──remove──▶ (gone)
//	  └─────────────remove (stops first)────▶
//
// A sandbox is recorded only once it is Ready (a failed RunPodSandbox rolls
// back and leaves no record); Unknown is what a record found on disk with
// inconsistent resources is reported as until it is stopped.
type SandboxState string

// Sandbox states.
const (
	SandboxReady    SandboxState = "ready"
	SandboxNotReady SandboxState = "notready"
	SandboxUnknown  SandboxState = "unknown"
)

var sandboxTransitions = map[SandboxState][]SandboxState{
	SandboxReady:    {SandboxNotReady, SandboxUnknown},
	SandboxUnknown:  {SandboxNotReady},
	SandboxNotReady: {},
}

// ContainerState is the lifecycle of a container:
//
//	Created ──start──▶ Running ──exit/stop──▶ Exited ──remove──▶ (gone)
//	   └──────────stop (never started)──────────▶
//
// Unknown is used when the monitor and its state file are both gone.
type ContainerState string

// Container states.
const (
	ContainerCreated ContainerState = "created"
	ContainerRunning ContainerState = "running"
	ContainerExited  ContainerState = "exited"
	ContainerUnknown ContainerState = "unknown"
)

var containerTransitions = map[ContainerState][]ContainerState{
	ContainerCreated: {ContainerRunning, ContainerExited, ContainerUnknown},
	ContainerRunning: {ContainerExited, ContainerUnknown},
	ContainerUnknown: {ContainerExited, ContainerRunning},
	ContainerExited:  {},
}

// checkTransition allows staying in a state (idempotent updates) and the
// listed transitions; anything else is FailedPrecondition.
func checkTransition[S ~string](from, to S, allowed map[S][]S) error {
	if from == to {
		return nil
	}
	for _, s := range allowed[from] {
		if s == to {
			return nil
		}
	}
	return errdefs.FailedPrecondition("cannot go from %s to %s", from, to)
}

// checkSandboxUpdate is the update path's check of a sandbox record: the
// ID is fixed and the state moves only along sandboxTransitions.
func checkSandboxUpdate(cur, next *Sandbox) error {
	if next.ID != cur.ID {
		return errdefs.InvalidArgument("sandbox ID cannot change")
	}
	if err := checkTransition(cur.State, next.State, sandboxTransitions); err != nil {
		return fmt.Errorf("sandbox %s: %w", cur.ID, err)
	}
	return nil
}

// checkContainerUpdate is checkSandboxUpdate for containers, which also
// never move to another sandbox.
func checkContainerUpdate(cur, next *Container) error {
	if next.ID != cur.ID || next.SandboxID != cur.SandboxID {
		return errdefs.InvalidArgument("container and sandbox IDs cannot change")
	}
	if err := checkTransition(cur.State, next.State, containerTransitions); err != nil {
		return fmt.Errorf("container %s: %w", cur.ID, err)
	}
	return nil
}

func (s SandboxState) String() string   { return string(s) }
func (s ContainerState) String() string { return string(s) }

func validSandboxState(s SandboxState) error {
	if _, ok := sandboxTransitions[s]; !ok {
		return fmt.Errorf("unknown sandbox state %q", s)
	}
	return nil
}

func validContainerState(s ContainerState) error {
	if _, ok := containerTransitions[s]; !ok {
		return fmt.Errorf("unknown container state %q", s)
	}
	return nil
}
