// Package driver implements the DRA kubelet plugin behind cmd/cu-kubelet-plugin.
//
// Two modes share one implementation:
//   - ModeCU, for cu.cu-reconciler.io: each allocated CU device becomes a CDI device whose
//     environment tells the container its CU facts (facts.go). Whole pools: the vendor device is
//     co-allocated in the same claim and prepared by the vendor's plugin; we only name it.
//   - ModeVendor, a stand-in for a vendor's own plugin (the devcluster's simulated drivers):
//     each allocated device becomes a CDI device naming it, nothing else.
//
// Prepare and Unprepare are idempotent and survive restarts: the checkpoint file (package
// checkpoint) is the single record of what is prepared, written after the CDI spec on prepare
// and after the spec's removal on unprepare, so a crash between the two writes is repaired by
// the kubelet's retry.
package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	resourceapi "k8s.io/api/resource/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"cu-reconciler.invalid/kubeletplugin/internal/cdi"
	"cu-reconciler.invalid/kubeletplugin/internal/checkpoint"
)

// Mode selects what the plugin prepares.
type Mode string

const (
	ModeCU     Mode = "cu"
	ModeVendor Mode = "vendor"
)

// SpecPrefix starts the name of every CDI spec file this plugin writes.
const SpecPrefix = "cu-reconciler-"

// Config is the plugin's configuration (flags of cmd/cu-kubelet-plugin).
type Config struct {
	DriverName string
	Mode       Mode
	NodeName   string
	CDIDir     string
	StateDir   string // holds the checkpoint
	Client     kubernetes.Interface
	// Slices, when set, serves this node's slices of our driver from an informer cache
	// (one API round trip less per prepare); a device missing from it is listed afresh.
	Slices cache.Store
}

// Driver implements kubeletplugin.DRAPlugin.
type Driver struct {
	cfg  Config
	kind string
	mu   sync.Mutex // the helper serializes calls already; this guards direct callers (tests)
}

// New checks cfg and removes CDI specs a crash left behind without a checkpoint entry.
func New(cfg Config) (*Driver, error) {
	if cfg.Mode != ModeCU && cfg.Mode != ModeVendor {
		return nil, fmt.Errorf("--mode must be %q or %q, not %q", ModeCU, ModeVendor, cfg.Mode)
	}
	for _, dir := range []string{cfg.CDIDir, cfg.StateDir} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, err
		}
	}
	d := &Driver{cfg: cfg, kind: cfg.DriverName + "/device"}
	cp, err := d.load()
	if err != nil {
		return nil, err
	}
	keep := map[string]bool{}
	for _, c := range cp.Claims {
		keep[c.SpecFile] = true
	}
	files, _ := filepath.Glob(filepath.Join(cfg.CDIDir, d.specPrefix()+"*.json"))
	for _, f := range files {
		if !keep[f] {
			_ = os.Remove(f)
		}
	}
	return d, nil
}

// CheckpointPath is where prepared claims are recorded.
func (d *Driver) CheckpointPath() string { return filepath.Join(d.cfg.StateDir, "checkpoint.json") }

func (d *Driver) specPrefix() string {
	return SpecPrefix + strings.ReplaceAll(d.cfg.DriverName, ".", "_") + "-"
}

func (d *Driver) load() (checkpoint.File, error) { return checkpoint.Load(d.CheckpointPath()) }

// PrepareResourceClaims implements kubeletplugin.DRAPlugin.
func (d *Driver) PrepareResourceClaims(ctx context.Context, claims []*resourceapi.ResourceClaim) (map[types.UID]kubeletplugin.PrepareResult, error) {
	start := time.Now() // "took" in the log: this plugin's share of a Pod's start (bench_kubelet)
	d.mu.Lock()
	defer d.mu.Unlock()
	cp, err := d.load()
	if err != nil {
		return nil, err
	}
	var lookup Lookup
	if d.cfg.Mode == ModeCU {
		if lookup, err = d.sliceLookup(ctx); err != nil {
			return nil, err
		}
	}
	out := make(map[types.UID]kubeletplugin.PrepareResult, len(claims))
	for _, claim := range claims {
		uid := string(claim.UID)
		if done, ok := cp.Claims[uid]; ok {
			out[claim.UID] = kubeletplugin.PrepareResult{Devices: toHelper(done.Devices)}
			continue
		}
		entry, spec, err := d.prepare(claim, lookup)
		if err == nil {
			err = conflict(cp, uid, entry, lookup)
		}
		if err == nil {
			err = cdi.Write(entry.SpecFile, spec)
		}
		if err == nil {
			cp.Claims[uid] = entry
			err = checkpoint.Save(d.CheckpointPath(), cp)
			if err != nil {
				delete(cp.Claims, uid)
			}
		}
		if err != nil {
			out[claim.UID] = kubeletplugin.PrepareResult{Err: err}
			continue
		}
		klog.FromContext(ctx).Info("prepared", "claim", klog.KObj(claim), "devices", len(entry.Devices), "took", time.Since(start))
		out[claim.UID] = kubeletplugin.PrepareResult{Devices: toHelper(entry.Devices)}
	}
	return out, nil
}

func (d *Driver) prepare(claim *resourceapi.ResourceClaim, lookup Lookup) (checkpoint.Claim, cdi.Spec, error) {
	entry := checkpoint.Claim{
		Namespace: claim.Namespace,
		Name:      claim.Name,
		SpecFile:  filepath.Join(d.cfg.CDIDir, d.specPrefix()+string(claim.UID)+".json"),
	}
	spec := cdi.Spec{Version: cdi.Version, Kind: d.kind}
	if claim.Status.Allocation == nil {
		return entry, spec, fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)
	}
	if d.cfg.Mode == ModeVendor {
		for _, r := range claim.Status.Allocation.Devices.Results {
			if r.Driver != d.cfg.DriverName {
				continue
			}
			name := cdiName(string(claim.UID), r.Request)
			ref := r.Driver + "/" + r.Pool + "/" + r.Device
			spec.Devices = append(spec.Devices, cdi.Device{
				Name:           name,
				Annotations:    map[string]string{d.cfg.DriverName + "/device": ref},
				ContainerEdits: cdi.ContainerEdits{Env: []string{"DRA_DEVICE_" + envKey(r.Request) + "=" + ref}},
			})
			entry.Devices = append(entry.Devices, checkpoint.Device{
				Requests: []string{r.Request}, Driver: r.Driver, Pool: r.Pool, Device: r.Device,
				CDIDeviceIDs: []string{cdi.ID(d.kind, name)}, ShareID: shareID(r.ShareID),
			})
		}
		return entry, spec, nil
	}
	facts, err := Gather(claim, d.cfg.DriverName, lookup)
	if err != nil {
		return entry, spec, err
	}
	for _, f := range facts {
		name := cdiName(string(claim.UID), f.Request)
		spec.Devices = append(spec.Devices, cdi.Device{
			Name:           name,
			Annotations:    Annotations(f),
			ContainerEdits: cdi.ContainerEdits{Env: cdi.EnvList(Env(claim, facts, f))},
		})
		dev := checkpoint.Device{
			Requests: []string{f.Request}, Driver: d.cfg.DriverName, Pool: f.Pool, Device: f.Device,
			CDIDeviceIDs: []string{cdi.ID(d.kind, name)}, ShareID: f.ShareID,
		}
		if f.Fractional {
			dev.MilliCU = f.Granted.MilliValue()
		}
		entry.Devices = append(entry.Devices, dev)
	}
	return entry, spec, nil
}

// conflict is the last line of defence the helper's docs ask for: a whole device prepared
// for another claim, or shares of one device beyond its CU, mean an allocation went wrong.
func conflict(cp checkpoint.File, uid string, entry checkpoint.Claim, lookup Lookup) error {
	held := map[string]int64{} // pool/device -> milli CU held; -1 = whole
	for other, c := range cp.Claims {
		if other == uid {
			continue
		}
		for _, dev := range c.Devices {
			key := dev.Pool + "/" + dev.Device
			if dev.MilliCU == 0 || held[key] < 0 {
				held[key] = -1
			} else {
				held[key] += dev.MilliCU
			}
		}
	}
	for _, dev := range entry.Devices {
		key := dev.Pool + "/" + dev.Device
		used, ok := held[key]
		if !ok {
			continue
		}
		if used < 0 || dev.MilliCU == 0 {
			return fmt.Errorf("device %s is already prepared for another claim", key)
		}
		if lookup != nil {
			if sd, found := lookup(dev.Pool, dev.Device); found && used+dev.MilliCU > sd.Capacity.MilliValue() {
				return fmt.Errorf("device %s: prepared shares would exceed its %s CU", key, sd.Capacity.String())
			}
		}
	}
	return nil
}

// UnprepareResourceClaims implements kubeletplugin.DRAPlugin; unknown claims are a success.
func (d *Driver) UnprepareResourceClaims(ctx context.Context, claims []kubeletplugin.NamespacedObject) (map[types.UID]error, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	cp, err := d.load()
	if err != nil {
		return nil, err
	}
	out := make(map[types.UID]error, len(claims))
	changed := false
	for _, claim := range claims {
		uid := string(claim.UID)
		entry, ok := cp.Claims[uid]
		if !ok {
			out[claim.UID] = nil
			continue
		}
		if err := os.Remove(entry.SpecFile); err != nil && !errors.Is(err, os.ErrNotExist) {
			out[claim.UID] = err
			continue
		}
		delete(cp.Claims, uid)
		changed = true
		out[claim.UID] = nil
		klog.FromContext(ctx).Info("unprepared", "claim", claim.String())
	}
	if changed {
		if err := checkpoint.Save(d.CheckpointPath(), cp); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// HandleError implements kubeletplugin.DRAPlugin: we publish no slices, so errors are logged.
func (d *Driver) HandleError(ctx context.Context, err error, msg string) {
	runtime.HandleErrorWithContext(ctx, err, msg)
}

// WatchHealthStatus implements kubeletplugin.DRAPlugin: device health is the vendor driver's.
func (d *Driver) WatchHealthStatus(context.Context, chan<- kubeletplugin.DeviceHealthReport) error {
	return kubeletplugin.ErrHealthNotSupported
}

// sliceLookup indexes this node's slices of our driver (newest pool generation): capacity
// and the CU pool are not in the allocation result. With an informer cache it lists from
// memory, and lists from the API only when a wanted device is not cached yet.
func (d *Driver) sliceLookup(ctx context.Context) (Lookup, error) {
	var items []resourceapi.ResourceSlice
	if d.cfg.Slices != nil {
		for _, obj := range d.cfg.Slices.List() {
			if s, ok := obj.(*resourceapi.ResourceSlice); ok {
				items = append(items, *s)
			}
		}
	}
	cached := index(items, d.cfg.DriverName)
	fresh := Lookup(nil)
	return func(pool, device string) (SliceDevice, bool) {
		if sd, ok := cached[pool+"/"+device]; ok {
			return sd, true
		}
		if fresh == nil {
			list, err := d.cfg.Client.ResourceV1().ResourceSlices().List(ctx, metav1.ListOptions{
				FieldSelector: "spec.driver=" + d.cfg.DriverName + ",spec.nodeName=" + d.cfg.NodeName,
			})
			if err != nil {
				klog.FromContext(ctx).Error(err, "listing ResourceSlices", "driver", d.cfg.DriverName)
				return SliceDevice{}, false
			}
			listed := index(list.Items, d.cfg.DriverName)
			fresh = func(pool, device string) (SliceDevice, bool) {
				sd, ok := listed[pool+"/"+device]
				return sd, ok
			}
		}
		return fresh(pool, device)
	}, nil
}

func index(slices []resourceapi.ResourceSlice, driver string) map[string]SliceDevice {
	devices := map[string]SliceDevice{}
	newest := map[string]int64{}
	for _, s := range slices {
		if g := s.Spec.Pool.Generation; g > newest[s.Spec.Pool.Name] {
			newest[s.Spec.Pool.Name] = g
		}
	}
	for _, s := range slices {
		if s.Spec.Driver != driver || s.Spec.Pool.Generation != newest[s.Spec.Pool.Name] {
			continue
		}
		for _, dev := range s.Spec.Devices {
			sd := SliceDevice{Pool: s.Spec.Pool.Name, Name: dev.Name, Attributes: map[string]string{}}
			for k, v := range dev.Attributes {
				sd.Attributes[strings.TrimPrefix(string(k), driver+"/")] = AttributeString(v)
			}
			if c, ok := dev.Capacity[CUCapacity]; ok {
				sd.Capacity = c.Value
			}
			sd.Shared = dev.AllowMultipleAllocations != nil && *dev.AllowMultipleAllocations
			devices[sd.Pool+"/"+sd.Name] = sd
		}
	}
	return devices
}

func toHelper(devs []checkpoint.Device) []kubeletplugin.Device {
	out := make([]kubeletplugin.Device, 0, len(devs))
	for _, d := range devs {
		dev := kubeletplugin.Device{Requests: d.Requests, PoolName: d.Pool, DeviceName: d.Device, CDIDeviceIDs: d.CDIDeviceIDs}
		if d.ShareID != "" {
			id := types.UID(d.ShareID)
			dev.ShareID = &id
		}
		out = append(out, dev)
	}
	return out
}

func shareID(id *types.UID) string {
	if id == nil {
		return ""
	}
	return string(*id)
}

// cdiName is a CDI device name unique per claim and request (never reused: the claim UID).
func cdiName(uid, request string) string {
	return uid + "-" + strings.NewReplacer("/", "_").Replace(request)
}

func envKey(request string) string {
	return strings.ToUpper(strings.NewReplacer("/", "_", "-", "_", ".", "_").Replace(request))
}
