package netcni

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"syscall"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/sirupsen/logrus"

	"github.com/noded-dev/noded/internal/errdefs"
)

// Network config loading and readiness.
//
// Reload strategy: every Status, Setup and Teardown re-scans the config
// directory cheaply and re-parses only when the scan changed. The scan is a
// ReadDir plus a stat of each candidate file; its fingerprint holds each
// name's inode, size, mtime and ctime (so an atomic rename-into-place, an
// in-place rewrite and a removal all show), and the mtime of each
// subdirectory (CNI 1.1+ per-network plugin directories). We chose this over
// an fsnotify watch because:
//   - the kubelet polls Status every few seconds anyway, so a change is seen
//     as soon as anyone can act on it, with no background goroutine to start,
//     stop or leak and no inotify watch limit to exhaust;
//   - it works when the directory does not exist yet (fsnotify cannot watch a
//     missing directory; CRI-O creates it for that reason) and when configs
//     are symlinks whose targets change (stat follows them);
//   - plugin binaries installed after the config are seen too: the binaries
//     are looked up on every call (a few stats), not only on reload.

// confExtensions are the config file name extensions, as the kubelet and
// go-cni read them.
var confExtensions = []string{".conflist", ".conf", ".json"}

// network is one loaded network config. It is immutable once loaded, so a
// pointer to it can be used after the lock is released.
type network struct {
	file string
	list *libcni.NetworkConfigList
}

// confState is the result of the last scan and load.
type confState struct {
	scanned     bool
	fingerprint string
	net         *network
	err         error // why there is no net; nil when net != nil
}

// scanConfDir returns the fingerprint of dir and its candidate config files
// in lexical order. A missing directory is not an error: it has the empty
// fingerprint and no files.
func scanConfDir(dir string) (string, []string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return "", nil, nil
		}
		return "", nil, err
	}
	var fp strings.Builder
	var files []string
	for _, e := range entries { // ReadDir sorts by name
		name := e.Name()
		path := filepath.Join(dir, name)
		fi, err := os.Stat(path) // follow symlinks
		if err != nil {
			continue // dangling symlink or removed meanwhile
		}
		if fi.IsDir() {
			fmt.Fprintf(&fp, "%s/\x00%d\x00", name, fi.ModTime().UnixNano())
			continue
		}
		if !fi.Mode().IsRegular() || !hasConfExt(name) {
			continue
		}
		var ino uint64
		var ctime int64
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			ino = st.Ino
			ctime = st.Ctim.Nano()
		}
		fmt.Fprintf(&fp, "%s\x00%d\x00%d\x00%d\x00%d\x00", name, ino, fi.Size(), fi.ModTime().UnixNano(), ctime)
		files = append(files, path)
	}
	sort.Strings(files)
	return fp.String(), files, nil
}

func hasConfExt(name string) bool {
	ext := filepath.Ext(name)
	for _, e := range confExtensions {
		if ext == e {
			return true
		}
	}
	return false
}

// loadFirstNetwork parses the files in order and returns the first usable
// network config. Files that do not parse are skipped, as the kubelet does;
// when none is usable the error names the directory and, if any, why each
// file was skipped.
func loadFirstNetwork(l *logrus.Entry, dir string, files []string) (*network, error) {
	var skipped []string
	for _, file := range files {
		list, err := loadConfFile(file)
		if err != nil {
			l.WithField("file", file).WithError(err).Warn("skipping invalid CNI network config")
			skipped = append(skipped, fmt.Sprintf("%s: %v", filepath.Base(file), err))
			continue
		}
		return &network{file: file, list: list}, nil
	}
	if len(skipped) == 0 {
		return nil, errdefs.FailedPrecondition("no network config found in %s", dir)
	}
	return nil, errdefs.FailedPrecondition("no valid network config found in %s (%s)", dir, strings.Join(skipped, "; "))
}

// loadConfFile parses a .conflist, or a single-plugin .conf/.json upgraded to
// a list.
func loadConfFile(file string) (*libcni.NetworkConfigList, error) {
	var list *libcni.NetworkConfigList
	if strings.HasSuffix(file, ".conflist") {
		l, err := libcni.NetworkConfFromFile(file)
		if err != nil {
			return nil, err
		}
		list = l
	} else {
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("error reading %s: %w", file, err)
		}
		conf, err := libcni.NetworkPluginConfFromBytes(b)
		if err != nil {
			return nil, err
		}
		if conf.Network.Type == "" {
			return nil, fmt.Errorf("no plugin 'type' (a network list needs the .conflist extension)")
		}
		if list, err = confListFromPlugin(conf); err != nil {
			return nil, err
		}
	}
	if list.Name == "" {
		return nil, fmt.Errorf("network has no name")
	}
	if len(list.Plugins) == 0 {
		return nil, fmt.Errorf("network %q has no plugins", list.Name)
	}
	return list, nil
}

// confListFromBytes parses a config as cached by libcni: a list, or a single
// plugin config from an older cache.
func confListFromBytes(b []byte) (*libcni.NetworkConfigList, error) {
	list, err := libcni.NetworkConfFromBytes(b)
	if err == nil && len(list.Plugins) > 0 {
		return list, nil
	}
	conf, cerr := libcni.NetworkPluginConfFromBytes(b)
	if cerr != nil {
		if err == nil {
			err = cerr
		}
		return nil, err
	}
	return confListFromPlugin(conf)
}

// confListFromPlugin upgrades a single-plugin config (a .conf file, which the
// kubelet and containerd still accept) to a list holding just that plugin.
// It does what the deprecated libcni.ConfListFromConf does, with the
// supported API: the list's name and cniVersion are the plugin's, and the
// plugin keeps its original JSON rather than one littered with Go zero
// values.
func confListFromPlugin(conf *libcni.PluginConfig) (*libcni.NetworkConfigList, error) {
	raw := make(map[string]any)
	if err := json.Unmarshal(conf.Bytes, &raw); err != nil {
		return nil, err
	}
	b, err := json.Marshal(map[string]any{
		"name":       conf.Network.Name,
		"cniVersion": conf.Network.CNIVersion,
		"plugins":    []any{raw},
	})
	if err != nil {
		return nil, err
	}
	return libcni.NetworkConfFromBytes(b)
}

// missingPlugins returns an error naming the plugin binaries (main and IPAM)
// of list that are not found in dirs.
func missingPlugins(n *network, dirs []string) error {
	seen := map[string]bool{}
	var missing []string
	for _, p := range n.list.Plugins {
		for _, typ := range []string{p.Network.Type, p.Network.IPAM.Type} {
			if typ == "" || seen[typ] {
				continue
			}
			seen[typ] = true
			if _, err := invoke.FindInPath(typ, dirs); err != nil {
				missing = append(missing, typ)
			}
		}
	}
	if len(missing) == 0 {
		return nil
	}
	return errdefs.FailedPrecondition("network %q (%s): CNI plugin(s) %s not found in %s",
		n.list.Name, n.file, strings.Join(quoteAll(missing), ", "), strings.Join(dirs, ":"))
}

func quoteAll(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}
