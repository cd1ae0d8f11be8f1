package imagesvc

import (
	"regexp"
	"runtime"
	"strings"

	"go.podman.io/image/v5/docker/reference"
	"go.podman.io/image/v5/pkg/shortnames"
	"go.podman.io/image/v5/pkg/sysregistriesv2"
	"go.podman.io/image/v5/types"

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

// registries is noded's registry configuration as containers/image takes
// it: registries.conf (mirrors, insecure registries, short names; watched
// for edits) and the settings every pull shares. It turns a reference into
// the names a pull tries or a lookup matches, and builds the
// containers/image configuration of a pull. Its fields are set once; the
// watch has its own lock.
type registries struct {
	conf      string // Options.RegistriesConf
	userAgent string
	tmpDir    string // for containers/image's big temporary files
	watch     *regConfWatch
}

func newRegistries(conf, userAgent, tmpDir string) *registries {
	r := &registries{conf: conf, userAgent: userAgent, tmpDir: tmpDir, watch: newRegConfWatch(conf)}
	r.watch.check()
	return r
}

// systemContext is the containers/image configuration of one pull.
func (r *registries) systemContext(auth *types.DockerAuthConfig, bearer string) *types.SystemContext {
	mode := types.ShortNameModeDisabled // a daemon never prompts
	sys := &types.SystemContext{
		ShortNameMode:           &mode,
		DockerRegistryUserAgent: r.userAgent,
		OSChoice:                "linux",
		ArchitectureChoice:      runtime.GOARCH,
		BigFilesTemporaryDir:    r.tmpDir,
		// Non-nil: only the request's credentials, never a credentials
		// file of the host's root user.
		DockerAuthConfig:          auth,
		DockerBearerRegistryToken: bearer,
	}
	if sys.DockerAuthConfig == nil {
		sys.DockerAuthConfig = &types.DockerAuthConfig{}
	}
	if r.conf != "" {
		sys.SystemRegistriesConfPath = r.conf
		sys.SystemRegistriesConfDirPath = r.conf + ".d"
	}
	return sys
}

// pullCandidates returns the fully qualified references a pull of ref
// tries, in order. A fully qualified reference is used as is (":latest"
// added when it has neither tag nor digest). A short name goes through
// registries.conf: its alias if there is one, else every
// unqualified-search registry in order; with neither configured it is
// docker.io, as docker and containerd resolve it.
func (r *registries) pullCandidates(ref string) ([]reference.Named, error) {
	named, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	if !shortnames.IsShortName(ref) {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	sys := r.systemContext(nil, "")
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
func (r *registries) localCandidates(ref string) ([]reference.Named, error) {
	named, err := parseReference(ref)
	if err != nil {
		return nil, err
	}
	if !shortnames.IsShortName(ref) {
		return []reference.Named{reference.TagNameOnly(named)}, nil
	}
	out, err := shortnames.ResolveLocally(r.systemContext(nil, ""), ref)
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
