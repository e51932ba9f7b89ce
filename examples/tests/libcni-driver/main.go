// Command libcni-driver runs one CNI operation through libcni (the Go
// reference runtime library), so that overlay's conformance tests can compare
// our plugin and our runtime side against the reference implementation.
//
// It is built by scripts/build-libcni-tools.sh against the libcni sources
// that Debian installs (golang-github-appc-cni-dev, libcni 1.1.2) in GOPATH
// mode. Usage:
//
//	libcni-driver [flags] add|check|del|gc|status|version|getcached|getcachedconfig
//
// The network list comes from -conflist FILE, or from -confdir DIR and
// -name NAME (libcni.LoadConfList, which also accepts a single .conf file).
// The result, or the requested data, is printed as JSON on stdout. On failure
// the driver prints {"error": MSG, "code": CODE} on stdout (CODE is the CNI
// error code when the failure came from a plugin's error JSON, else 0) and
// exits with status 1.
//
// libcni 1.1.2 predates spec 1.1.0, so it has no GC or STATUS; "gc" and
// "status" invoke each plugin of the list with pkg/invoke the way libcni 1.2
// does (GC: cni.dev/valid-attachments and cni.dev/attachments injected into
// every plugin's config; STATUS: every plugin in order), after injecting the
// list's name and cniVersion as libcni does for the other commands.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/containernetworking/cni/libcni"
	"github.com/containernetworking/cni/pkg/invoke"
	"github.com/containernetworking/cni/pkg/types"
)

type options struct {
	conflist    string
	confdir     string
	name        string
	path        string
	cacheDir    string
	containerID string
	netns       string
	ifname      string
	args        string
	capArgs     string
	attachments string
}

// attachment is one entry of the GC valid-attachments list.
type attachment struct {
	ContainerID string `json:"containerID"`
	IfName      string `json:"ifname"`
}

func main() {
	var o options
	flag.StringVar(&o.conflist, "conflist", "", "network configuration list file (.conflist or .conf)")
	flag.StringVar(&o.confdir, "confdir", "", "directory to load the network named by -name from")
	flag.StringVar(&o.name, "name", "", "network name to load from -confdir")
	flag.StringVar(&o.path, "path", "", "CNI_PATH: plugin directories separated by ':'")
	flag.StringVar(&o.cacheDir, "cachedir", "", "libcni cache directory")
	flag.StringVar(&o.containerID, "cid", "", "container ID")
	flag.StringVar(&o.netns, "netns", "", "network namespace path")
	flag.StringVar(&o.ifname, "ifname", "eth0", "interface name in the container")
	flag.StringVar(&o.args, "args", "", "CNI_ARGS as K=V;K2=V2")
	flag.StringVar(&o.capArgs, "capargs", "", "capability arguments as a JSON object")
	flag.StringVar(&o.attachments, "attachments", "[]", "gc: valid attachments as a JSON list of {containerID, ifname}")
	flag.Parse()
	if flag.NArg() != 1 {
		fail(fmt.Errorf("expected exactly one command (add|check|del|gc|status|version|getcached|getcachedconfig), got %q", flag.Args()))
	}
	out, err := run(context.Background(), &o, flag.Arg(0))
	if err != nil {
		fail(err)
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	code := uint(0)
	var cniErr *types.Error
	if errors.As(err, &cniErr) {
		code = cniErr.Code
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]interface{}{"error": err.Error(), "code": code})
	os.Exit(1)
}

func loadList(o *options) (*libcni.NetworkConfigList, error) {
	if o.conflist != "" {
		if strings.HasSuffix(o.conflist, ".conflist") {
			return libcni.ConfListFromFile(o.conflist)
		}
		conf, err := libcni.ConfFromFile(o.conflist)
		if err != nil {
			return nil, err
		}
		return libcni.ConfListFromConf(conf)
	}
	if o.confdir == "" || o.name == "" {
		return nil, errors.New("need -conflist, or -confdir and -name")
	}
	list, err := libcni.LoadConfList(o.confdir, o.name)
	if err != nil {
		return nil, fmt.Errorf("loading network %q from %s: %w", o.name, o.confdir, err)
	}
	return list, nil
}

func runtimeConf(o *options) (*libcni.RuntimeConf, error) {
	rt := &libcni.RuntimeConf{
		ContainerID: o.containerID,
		NetNS:       o.netns,
		IfName:      o.ifname,
	}
	if o.args != "" {
		for _, kv := range strings.Split(o.args, ";") {
			parts := strings.SplitN(kv, "=", 2)
			if len(parts) != 2 {
				return nil, fmt.Errorf("-args: %q is not K=V", kv)
			}
			rt.Args = append(rt.Args, [2]string{parts[0], parts[1]})
		}
	}
	if o.capArgs != "" {
		if err := json.Unmarshal([]byte(o.capArgs), &rt.CapabilityArgs); err != nil {
			return nil, fmt.Errorf("-capargs: %w", err)
		}
	}
	return rt, nil
}

func run(ctx context.Context, o *options, command string) (interface{}, error) {
	list, err := loadList(o)
	if err != nil {
		return nil, err
	}
	rt, err := runtimeConf(o)
	if err != nil {
		return nil, err
	}
	paths := filepath.SplitList(o.path)
	cni := libcni.NewCNIConfigWithCacheDir(paths, o.cacheDir, nil)
	switch command {
	case "add":
		return cni.AddNetworkList(ctx, list, rt)
	case "check":
		return map[string]string{}, cni.CheckNetworkList(ctx, list, rt)
	case "del":
		return map[string]string{}, cni.DelNetworkList(ctx, list, rt)
	case "getcached":
		res, err := cni.GetNetworkListCachedResult(list, rt)
		if err != nil {
			return nil, err
		}
		if res == nil {
			return nil, fmt.Errorf("no cached result for %s-%s-%s", list.Name, rt.ContainerID, rt.IfName)
		}
		return res, nil
	case "getcachedconfig":
		conf, cachedRt, err := cni.GetNetworkListCachedConfig(list, rt)
		if err != nil {
			return nil, err
		}
		if conf == nil {
			return nil, fmt.Errorf("no cached config for %s-%s-%s", list.Name, rt.ContainerID, rt.IfName)
		}
		return map[string]interface{}{"config": json.RawMessage(conf), "runtimeConf": cachedRt}, nil
	case "version":
		versions := map[string]interface{}{}
		for _, p := range list.Plugins {
			info, err := cni.GetVersionInfo(ctx, p.Network.Type)
			if err != nil {
				return nil, fmt.Errorf("VERSION of %s: %w", p.Network.Type, err)
			}
			versions[p.Network.Type] = info.SupportedVersions()
		}
		return versions, nil
	case "gc":
		var valid []attachment
		if err := json.Unmarshal([]byte(o.attachments), &valid); err != nil {
			return nil, fmt.Errorf("-attachments: %w", err)
		}
		inject := map[string]interface{}{
			"cni.dev/valid-attachments": valid,
			"cni.dev/attachments":       valid,
		}
		return map[string]string{}, eachPlugin(ctx, cni, list, "GC", inject)
	case "status":
		return map[string]string{}, eachPlugin(ctx, cni, list, "STATUS", nil)
	default:
		return nil, fmt.Errorf("unknown command %q", command)
	}
}

// eachPlugin runs a result-less command on every plugin of the list in order,
// with the list's name and cniVersion (and `inject`) injected into its config.
func eachPlugin(ctx context.Context, cni *libcni.CNIConfig, list *libcni.NetworkConfigList, command string, inject map[string]interface{}) error {
	for _, p := range list.Plugins {
		values := map[string]interface{}{"name": list.Name, "cniVersion": list.CNIVersion}
		for k, v := range inject {
			values[k] = v
		}
		conf, err := libcni.InjectConf(p, values)
		if err != nil {
			return err
		}
		pluginPath, err := invoke.FindInPath(p.Network.Type, cni.Path)
		if err != nil {
			return err
		}
		args := &invoke.Args{Command: command, Path: strings.Join(cni.Path, string(os.PathListSeparator))}
		if err := invoke.ExecPluginWithoutResult(ctx, pluginPath, conf.Bytes, args, nil); err != nil {
			return fmt.Errorf("%s of plugin %s: %w", command, p.Network.Type, err)
		}
	}
	return nil
}
