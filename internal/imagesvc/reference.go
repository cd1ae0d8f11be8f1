package imagesvc

import (
	"regexp"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/pkg/sysregistriesv2"

	"github.com/noded-dev/noded/internal/errdefs"
)

// parseReference checks that ref is an image reference (name, optional
// tag, optional digest) and returns it normalized docker-style
// ("busybox" → "docker.io/library/busybox").
func parseReference(ref string) (reference.Named, error) {
	if strings.TrimSpace(ref) == "" {
		return nil, errdefs.InvalidArgument("no image reference given")
	}
	if strings.Contains(ref, "://") {
		return nil, errdefs.InvalidArgument("invalid image reference %q: transports are not supported, give a registry reference", ref)
	}
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return nil, errdefs.InvalidArgument("invalid image reference %q: %v", ref, err)
	}
	return named, nil
}

// pullCandidates returns the fully qualified references a pull of ref
// tries, in order. A fully qualified reference is used as is (":latest"
// added when it has neither tag nor digest). A short name goes through
// registries.conf: its alias if there is one, else every
// unqualified-search registry in order; with neither configured it is
// docker.io, as docker and containerd resolve it.
func (s *Service) pullCandidates(ref string) ([]reference.Named, error) {
	named, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	if !shortnames.IsShortName(ref) {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	sys := s.systemContext(nil, "")
	resolved, err := shortnames.Resolve(sys, ref)
	if err != nil {
		regs, regErr := sysregistriesv2.UnqualifiedSearchRegistries(sys)
		if regErr == nil && len(regs) == 0 {
			return []reference.Named{reference.TagNameOnly(named)}, nil
		}
		return nil, errdefs.InvalidArgument("resolving short name %q through registries.conf: %v", ref, err)
	}
	out := make([]reference.Named, 0, len(resolved.PullCandidates))
	for _, c := range resolved.PullCandidates {
		out = append(out, c.Value)
	}
	return out, nil
}

// localCandidates returns the names under which ref may be in storage:
// for a short name its alias, "localhost/<name>", every
// unqualified-search registry and docker.io.
func (s *Service) localCandidates(ref string) ([]reference.Named, error) {
	named, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	if !shortnames.IsShortName(ref) {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	out, err := shortnames.ResolveLocally(s.systemContext(nil, ""), ref)
	if err != nil {
		out = nil
	}
	docker := reference.TagNameOnly(named)
	for _, c := range out {
		if c.String() == docker.String() {
			return out, nil
		}
	}
	return append(out, docker), nil
}

// idPrefix matches what may be a (possibly shortened) image ID.
var idPrefix = regexp.MustCompile(`^(sha256:)?[a-f0-9]{3,64}$`)

// fullID matches a complete image ID, with or without its algorithm.
var fullID = regexp.MustCompile(`^(sha256:)?[a-f0-9]{64}$`)

// isTagged reports whether named carries a tag and no digest.
func isTagged(named reference.Named) bool {
	_, tagged := named.(reference.NamedTagged)
	_, digested := named.(reference.Canonical)
	return tagged && !digested
}
