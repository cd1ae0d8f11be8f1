// Package netcni gives pod sandboxes their network: it creates and pins
// network namespaces (NewNetNS, RemoveNetNS, CheckNetNS) and attaches them to
// the node's CNI network through libcni (Manager.Setup, Manager.Teardown),
// and it reports whether the network is ready (Manager.Status).
//
// Like the kubelet and go-cni, the network is the first config in the CNI
// config directory in lexical order (.conflist, .conf or .json); the pod's
// loopback interface is brought up directly over netlink, so no loopback
// plugin is needed. Results are kept in libcni's cache directory, which
// noded places under its state directory: they survive a restart of noded,
// give DEL its prevResult and the exact config and arguments used at ADD, and
// let Teardown work after the config file changed or was removed.
package netcni

import (
	"context"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	cnitypes "github.com/containernetworking/cni/pkg/types"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/sirupsen/logrus"
	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"go.opentelemetry.io/otel/attribute"
	"golang.org/x/sys/unix"

	"github.com/noded-dev/noded/internal/errdefs"
	"github.com/noded-dev/noded/internal/kmutex"
	"github.com/noded-dev/noded/internal/log"
	"github.com/noded-dev/noded/internal/tracing"
)

// Defaults for Options. DefaultPluginDirs are searched in order: the
// upstream location first, then Debian's containernetworking-plugins
// package. noded's configuration (internal/config) takes its default
// cni-plugin-dirs from here.
var (
	DefaultConfDir    = "/etc/cni/net.d"
	DefaultPluginDirs = []string{"/opt/cni/bin", "/usr/lib/cni"}
)

// DefaultIfName is the pod's interface name.
const DefaultIfName = "eth0"

// rollbackTimeout bounds the DEL that undoes a failed ADD.
const rollbackTimeout = time.Minute

// Options configure a Manager.
type Options struct {
	// ConfDir is the CNI config directory (DefaultConfDir when empty).
	ConfDir string
	// PluginDirs are searched in order for plugin binaries
	// (DefaultPluginDirs when empty).
	PluginDirs []string
	// CacheDir is libcni's cache of results and configs, e.g.
	// <state-dir>/cni. Empty means libcni's default, /var/lib/cni.
	CacheDir string
	// IfName is the pod interface name (DefaultIfName when empty).
	IfName string
	// Exec runs plugins; nil means pluginExec (whose kill on cancel
	// reaches a plugin's children). For tests.
	Exec invoke.Exec
	// Logger logs what happens outside a request (a config change seen by
	// Status); nil discards. Setup and Teardown log through their
	// context's logger (internal/log).
	Logger *logrus.Entry
}

// Manager attaches pods to the node's CNI network.
//
// Lock rule (as in go-cni: lock in public methods, never in private ones):
//   - mu guards conf. Only exported methods take it, and only around the
//     config scan (syncLocked); unexported methods never lock it and those
//     that need it held end in "Locked". Plugins are never run with mu held:
//     the loaded *network is immutable, so it is used after the unlock, and
//     Status never waits for a slow plugin.
//   - pods serialises the operations of one pod (by sandbox ID) while other
//     pods proceed in parallel. Exported methods take a pod's lock first,
//     before mu; the keyed mutex's own lock is a leaf lock.
type Manager struct {
	confDir    string
	pluginDirs []string
	ifName     string
	cni        *libcni.CNIConfig
	log        *logrus.Entry
	metrics    *metrics

	mu   sync.Mutex
	conf confState

	pods kmutex.KeyedMutex[string]
}

// New returns a Manager. It does not require a network config to exist:
// until one appears Status reports the network as not ready and Setup fails
// with errdefs.ErrFailedPrecondition.
func New(opts Options) (*Manager, error) {
	if opts.ConfDir == "" {
		opts.ConfDir = DefaultConfDir
	}
	if len(opts.PluginDirs) == 0 {
		opts.PluginDirs = DefaultPluginDirs
	}
	if opts.IfName == "" {
		opts.IfName = DefaultIfName
	}
	if opts.Exec == nil {
		opts.Exec = &pluginExec{}
	}
	for _, d := range append([]string{opts.ConfDir, opts.CacheDir}, opts.PluginDirs...) {
		if d != "" && !filepath.IsAbs(d) {
			return nil, errdefs.InvalidArgument("CNI directory %q is not absolute", d)
		}
	}
	m := &Manager{
		confDir:    opts.ConfDir,
		pluginDirs: append([]string(nil), opts.PluginDirs...),
		ifName:     opts.IfName,
		cni:        libcni.NewCNIConfigWithCacheDir(opts.PluginDirs, opts.CacheDir, opts.Exec),
		log:        log.Or(opts.Logger),
		metrics:    newMetrics(),
	}
	return m, nil
}

// Status reports whether pods can be networked: nil when a usable network
// config exists and its plugins are installed, else an
// errdefs.ErrFailedPrecondition error whose text says why (for example "no
// network config found in /etc/cni/net.d"), for the CRI Status RPC's
// NetworkReady condition. A config added later is seen by the next call.
func (m *Manager) Status() error {
	m.mu.Lock()
	_, err := m.syncLocked(m.log)
	m.mu.Unlock()
	return err
}

// NetworkName returns the name and file of the network pods are attached
// to, or the Status error.
func (m *Manager) NetworkName() (name, file string, err error) {
	m.mu.Lock()
	n, err := m.syncLocked(m.log)
	m.mu.Unlock()
	if err != nil {
		return "", "", err
	}
	return n.list.Name, n.file, nil
}

// syncLocked re-scans the config directory, reloads the config when the scan
// changed, and checks that its plugins exist; l is the logger of whoever
// made the call. m.mu must be held.
func (m *Manager) syncLocked(l *logrus.Entry) (*network, error) {
	fp, files, err := scanConfDir(m.confDir)
	if err != nil {
		return nil, errdefs.FailedPrecondition("read network config directory %s: %w", m.confDir, err)
	}
	if !m.conf.scanned || fp != m.conf.fingerprint {
		n, lerr := loadFirstNetwork(l, m.confDir, files)
		old := m.conf.net
		m.conf = confState{scanned: true, fingerprint: fp, net: n, err: lerr}
		switch {
		case n != nil && (old == nil || old.file != n.file || string(old.list.Bytes) != string(n.list.Bytes)):
			l.WithFields(logrus.Fields{"network": n.list.Name, "file": n.file}).Info("CNI network config loaded")
		case n == nil && old != nil:
			l.WithError(lerr).Warn("CNI network config gone")
		}
	}
	if m.conf.net == nil {
		return nil, m.conf.err
	}
	if err := missingPlugins(m.conf.net, m.pluginDirs); err != nil {
		return nil, err
	}
	return m.conf.net, nil
}

// Setup brings up the pod's loopback interface and attaches the pod to the
// network (CNI ADD). pod.NetNSPath must be a live network namespace. When a
// plugin fails, what the earlier plugins did is undone (CNI DEL) before the
// error returns. Setup fails with errdefs.ErrFailedPrecondition while Status
// does.
func (m *Manager) Setup(ctx context.Context, pod PodNetwork) (*Result, error) {
	if err := validatePod(pod); err != nil {
		return nil, err
	}
	if err := CheckNetNS(pod.NetNSPath); err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w", pod.ID, err)
	}
	unlock, err := m.pods.Lock(ctx, pod.ID)
	if err != nil {
		return nil, err
	}
	defer unlock()

	l := log.FromContext(ctx)
	m.mu.Lock()
	n, err := m.syncLocked(l)
	m.mu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w", pod.ID, err)
	}

	if err := loopbackUp(pod.NetNSPath); err != nil {
		return nil, fmt.Errorf("set up network of pod %s: %w", pod.ID, err)
	}

	rt := m.runtimeConf(pod, pod.NetNSPath)
	res, err := m.addNetwork(ctx, n.list, rt)
	if err != nil {
		delCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), rollbackTimeout)
		if derr := m.delNetwork(delCtx, n.list, rt); derr != nil {
			l.WithField("pod", pod.ID).WithError(derr).Warn("undoing failed CNI ADD")
		}
		cancel()
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return nil, fmt.Errorf("set up network %q of pod %s: %w", n.list.Name, pod.ID, err)
	}
	out, err := convertResult(n.list.Name, res)
	if err != nil {
		return nil, fmt.Errorf("network %q of pod %s: %w", n.list.Name, pod.ID, err)
	}
	l.WithFields(logrus.Fields{"pod": pod.ID, "network": n.list.Name, "ips": out.IPs}).Debug("pod network set up")
	return out, nil
}

// addNetwork and delNetwork are CNI ADD and DEL of one network, each a
// span of the request's trace.
func (m *Manager) addNetwork(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) (cnitypes.Result, error) {
	ctx, span := tracing.Start(ctx, "cni.add", attribute.String("noded.pod", rt.ContainerID), attribute.String("cni.network", list.Name))
	start := time.Now()
	res, err := m.cni.AddNetworkList(ctx, list, rt)
	m.metrics.observe("add", err, time.Since(start))
	tracing.End(span, err)
	return res, err
}

func (m *Manager) delNetwork(ctx context.Context, list *libcni.NetworkConfigList, rt *libcni.RuntimeConf) error {
	ctx, span := tracing.Start(ctx, "cni.del", attribute.String("noded.pod", rt.ContainerID), attribute.String("cni.network", list.Name))
	start := time.Now()
	err := m.cni.DelNetworkList(ctx, list, rt)
	m.metrics.observe("del", err, time.Since(start))
	tracing.End(span, err)
	return err
}

// Teardown detaches the pod from the network (CNI DEL). It uses the config
// and arguments cached at ADD when there are any (so a changed or removed
// config file does not matter), else the current config. It works when the
// namespace is already gone (the plugins then get an empty CNI_NETNS, as the
// CNI spec says, and release what they hold on the host) and it is
// idempotent: tearing down a pod that has no network is not an error.
func (m *Manager) Teardown(ctx context.Context, pod PodNetwork) error {
	if err := validatePod(pod); err != nil {
		return err
	}
	unlock, err := m.pods.Lock(ctx, pod.ID)
	if err != nil {
		return err
	}
	defer unlock()

	nsPath := usableNetNS(pod.NetNSPath)
	atts, err := m.cni.GetCachedAttachments(pod.ID)
	if err != nil {
		return fmt.Errorf("tear down network of pod %s: read CNI cache: %w", pod.ID, err)
	}

	var errs []error
	for _, a := range atts {
		list, err := confListFromBytes(a.Config)
		if err != nil {
			errs = append(errs, fmt.Errorf("cached config of network %q: %w", a.Network, err))
			continue
		}
		ns := nsPath
		if ns == "" && pod.NetNSPath == "" {
			ns = usableNetNS(a.NetNS)
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    pod.ID,
			NetNS:          ns,
			IfName:         a.IfName,
			Args:           a.CniArgs,
			CapabilityArgs: a.CapabilityArgs,
		}
		if rt.Args == nil {
			rt.Args = cniArgs(pod)
		}
		if err := m.delNetwork(ctx, list, rt); err != nil {
			errs = append(errs, fmt.Errorf("network %q: %w", list.Name, err))
		}
	}

	if len(atts) == 0 {
		// Nothing cached: the ADD failed or never ran, or the cache was
		// lost. A DEL with the current config releases whatever the
		// plugins may hold; plugins tolerate a DEL of nothing.
		l := log.FromContext(ctx)
		m.mu.Lock()
		n, err := m.syncLocked(l)
		m.mu.Unlock()
		if err != nil {
			l.WithField("pod", pod.ID).WithError(err).Debug("no cached CNI result and no usable network: nothing to tear down")
			return nil
		}
		if err := m.delNetwork(ctx, n.list, m.runtimeConf(pod, nsPath)); err != nil {
			errs = append(errs, fmt.Errorf("network %q: %w", n.list.Name, err))
		}
	}
	if len(errs) > 0 {
		err := errors.Join(errs...)
		if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
			err = fmt.Errorf("%w: %w", cerr, err)
		}
		return fmt.Errorf("tear down network of pod %s: %w", pod.ID, err)
	}
	return nil
}

// Check asks the plugins whether the pod's network is still as set up
// (CNI CHECK), with the config and result cached at ADD. It returns an
// errdefs.ErrNotFound error when the pod has no cached attachment. Networks
// whose config version predates CHECK (0.4.0) or that disable it pass.
func (m *Manager) Check(ctx context.Context, pod PodNetwork) error {
	if err := validatePod(pod); err != nil {
		return err
	}
	if err := CheckNetNS(pod.NetNSPath); err != nil {
		return fmt.Errorf("check network of pod %s: %w", pod.ID, err)
	}
	unlock, err := m.pods.Lock(ctx, pod.ID)
	if err != nil {
		return err
	}
	defer unlock()

	atts, err := m.cni.GetCachedAttachments(pod.ID)
	if err != nil {
		return fmt.Errorf("check network of pod %s: read CNI cache: %w", pod.ID, err)
	}
	if len(atts) == 0 {
		return errdefs.NotFound("pod %s has no network attachment", pod.ID)
	}
	for _, a := range atts {
		list, err := confListFromBytes(a.Config)
		if err != nil {
			return fmt.Errorf("check network of pod %s: cached config of network %q: %w", pod.ID, a.Network, err)
		}
		rt := &libcni.RuntimeConf{
			ContainerID:    pod.ID,
			NetNS:          pod.NetNSPath,
			IfName:         a.IfName,
			Args:           a.CniArgs,
			CapabilityArgs: a.CapabilityArgs,
		}
		if err := m.cni.CheckNetworkList(ctx, list, rt); err != nil && !errors.Is(err, libcni.ErrorCheckNotSupp) {
			return fmt.Errorf("check network %q of pod %s: %w", list.Name, pod.ID, err)
		}
	}
	return nil
}

// CachedResult returns the result of the pod's last successful Setup from
// the CNI cache, e.g. to report the pod's IPs after noded restarted. It
// returns an errdefs.ErrNotFound error when nothing is cached.
func (m *Manager) CachedResult(id string) (*Result, error) {
	if id == "" {
		return nil, errdefs.InvalidArgument("empty pod sandbox ID")
	}
	// A cache read does not wait on a caller: nothing here blocks for long.
	unlock, _ := m.pods.Lock(context.Background(), id)
	defer unlock()

	atts, err := m.cni.GetCachedAttachments(id)
	if err != nil {
		return nil, fmt.Errorf("read CNI cache of pod %s: %w", id, err)
	}
	for _, a := range atts {
		if a.IfName != m.ifName && len(atts) > 1 {
			continue
		}
		list, err := confListFromBytes(a.Config)
		if err != nil {
			return nil, fmt.Errorf("cached config of network %q of pod %s: %w", a.Network, id, err)
		}
		res, err := m.cni.GetNetworkListCachedResult(list, &libcni.RuntimeConf{ContainerID: id, IfName: a.IfName})
		if err != nil {
			return nil, fmt.Errorf("cached result of network %q of pod %s: %w", list.Name, id, err)
		}
		if res == nil {
			break
		}
		return convertResult(list.Name, res)
	}
	return nil, errdefs.NotFound("no cached network result for pod %s", id)
}

func validatePod(pod PodNetwork) error {
	if pod.ID == "" {
		return errdefs.InvalidArgument("empty pod sandbox ID")
	}
	for k, v := range map[string]string{"pod name": pod.Name, "pod namespace": pod.Namespace, "pod UID": pod.UID, "sandbox ID": pod.ID} {
		if strings.ContainsAny(v, ";=") {
			return errdefs.InvalidArgument("%s %q cannot be passed in CNI_ARGS", k, v)
		}
	}
	return nil
}

// cniArgs are the CNI_ARGS the kubelet's CNI code passes.
func cniArgs(pod PodNetwork) [][2]string {
	args := [][2]string{
		{"IgnoreUnknown", "1"},
		{"K8S_POD_NAMESPACE", pod.Namespace},
		{"K8S_POD_NAME", pod.Name},
		{"K8S_POD_INFRA_CONTAINER_ID", pod.ID},
	}
	if pod.UID != "" {
		args = append(args, [2]string{"K8S_POD_UID", pod.UID})
	}
	return args
}

// runtimeConf builds the libcni runtime config: CNI_ARGS and the capability
// arguments (portMappings, bandwidth, dns); libcni passes each capability
// only to plugins that declare it.
func (m *Manager) runtimeConf(pod PodNetwork, nsPath string) *libcni.RuntimeConf {
	caps := map[string]interface{}{}
	var ports []portMappingEntry
	for _, p := range pod.PortMappings {
		if p.HostPort <= 0 {
			continue
		}
		proto := strings.ToLower(p.Protocol)
		if proto == "" {
			proto = "tcp"
		}
		ports = append(ports, portMappingEntry{
			HostPort:      p.HostPort,
			ContainerPort: p.ContainerPort,
			Protocol:      proto,
			HostIP:        p.HostIP,
		})
	}
	if len(ports) > 0 {
		caps["portMappings"] = ports
	}
	if b := pod.Bandwidth; b != nil {
		caps["bandwidth"] = bandwidthEntry{
			IngressRate: b.IngressRate, IngressBurst: b.IngressBurst,
			EgressRate: b.EgressRate, EgressBurst: b.EgressBurst,
		}
	}
	if d := pod.DNS; d != nil {
		caps["dns"] = dnsEntry{Servers: d.Servers, Searches: d.Searches, Options: d.Options}
	}
	return &libcni.RuntimeConf{
		ContainerID:    pod.ID,
		NetNS:          nsPath,
		IfName:         m.ifName,
		Args:           cniArgs(pod),
		CapabilityArgs: caps,
	}
}

// usableNetNS returns path when it is a live network namespace, else "".
func usableNetNS(path string) string {
	if path == "" || CheckNetNS(path) != nil {
		return ""
	}
	return path
}

// loopbackUp sets lo up inside the namespace at nsPath over a netlink socket
// opened in that namespace.
func loopbackUp(nsPath string) error {
	ns, err := netns.GetFromPath(nsPath)
	if err != nil {
		return fmt.Errorf("open network namespace %s: %w", nsPath, err)
	}
	defer ns.Close()
	h, err := netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
	if err != nil {
		return fmt.Errorf("netlink in %s: %w", nsPath, err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("find lo in %s: %w", nsPath, err)
	}
	if err := h.LinkSetUp(lo); err != nil {
		return fmt.Errorf("set lo up in %s: %w", nsPath, err)
	}
	return nil
}

// convertResult turns a plugin result into a Result. Pod IPs are those on
// interfaces inside the sandbox, or not tied to an interface at all.
func convertResult(netName string, res cnitypes.Result) (*Result, error) {
	out := &Result{Network: netName}
	if res == nil {
		out.Raw = &types100.Result{}
		return out, nil
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return nil, fmt.Errorf("convert CNI result: %w", err)
	}
	out.Raw = r
	for _, iface := range r.Interfaces {
		if iface == nil {
			out.Interfaces = append(out.Interfaces, Interface{})
			continue
		}
		out.Interfaces = append(out.Interfaces, Interface{Name: iface.Name, MAC: iface.Mac, Sandbox: iface.Sandbox})
	}
	for _, ipc := range r.IPs {
		if ipc == nil {
			continue
		}
		inSandbox := true
		if ipc.Interface != nil {
			i := *ipc.Interface
			if i >= 0 && i < len(out.Interfaces) {
				out.Interfaces[i].Addrs = append(out.Interfaces[i].Addrs, ipc.Address)
				inSandbox = out.Interfaces[i].Sandbox != ""
			}
		}
		if inSandbox && ipc.Address.IP != nil {
			ip := ipc.Address.IP
			if v4 := ip.To4(); v4 != nil {
				ip = v4
			}
			out.IPs = append(out.IPs, append(net.IP(nil), ip...))
		}
	}
	return out, nil
}
