package driver

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
)

// CUCapacity is the capacity name of a CU device (reconciler/plan/slices.py CU_CAPACITY).
const CUCapacity = "cu"

// Env variable names handed to containers. The contract is documented in docs/kubelet-plugin.md.
const (
	EnvPool        = "CU_POOL"
	EnvMode        = "CU_MODE"
	EnvClaim       = "CU_CLAIM"
	EnvCount       = "CU_DEVICE_COUNT"
	EnvTotal       = "CU_TOTAL"
	EnvMPSThreads  = "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"
	EnvMPSMemLimit = "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"
	AnnotationBase = "cu.cu-reconciler.io/"
)

// SliceDevice is what the plugin reads about one CU device from the ResourceSlices.
type SliceDevice struct {
	Pool       string // the DRA pool (one per node)
	Name       string
	Attributes map[string]string // unqualified name -> string form of the value
	Capacity   resource.Quantity
	Shared     bool // allowMultipleAllocations: a fractional pool's device
}

// DeviceFacts are the facts of one allocated CU device (request cu-<i>).
type DeviceFacts struct {
	Index        int
	Request      string
	Pool         string // DRA pool of the CU device
	Device       string
	CUPool       string // the CU pool (attribute "pool")
	Vendor       string
	Model        string
	UUID         string
	MemoryMiB    int64
	Capacity     resource.Quantity
	Granted      resource.Quantity
	Fractional   bool
	ShareID      string
	VendorDevice string // driver/pool/device of the paired vendor device (whole pools)
}

// SharePercent is the granted share of the device's CU, rounded up, at least 1.
func (f DeviceFacts) SharePercent() int64 {
	capMilli := f.Capacity.MilliValue()
	if !f.Fractional || capMilli <= 0 {
		return 100
	}
	p := (f.Granted.MilliValue()*100 + capMilli - 1) / capMilli
	return max(1, min(100, p))
}

// ShareMemoryMiB is the device memory that corresponds to the share (rounded down).
func (f DeviceFacts) ShareMemoryMiB() int64 {
	capMilli := f.Capacity.MilliValue()
	if !f.Fractional || capMilli <= 0 {
		return f.MemoryMiB
	}
	return f.MemoryMiB * f.Granted.MilliValue() / capMilli
}

// Lookup finds a CU device of the node's slices.
type Lookup func(pool, device string) (SliceDevice, bool)

// Gather turns a claim's allocation into the facts of each CU device of driver, pairing each
// cu-<i> with the vendor device allocated for gpu-<i> (reconciler/plan/claims.py request names).
func Gather(claim *resourceapi.ResourceClaim, driver string, lookup Lookup) ([]DeviceFacts, error) {
	if claim.Status.Allocation == nil {
		return nil, fmt.Errorf("claim %s/%s is not allocated", claim.Namespace, claim.Name)
	}
	results := claim.Status.Allocation.Devices.Results
	vendorFor := map[string]string{}
	for _, r := range results {
		if r.Driver == driver {
			continue
		}
		parent, _, _ := strings.Cut(r.Request, "/")
		if i, ok := requestIndex(parent, "gpu-"); ok {
			vendorFor[strconv.Itoa(i)] = r.Driver + "/" + r.Pool + "/" + r.Device
		}
	}
	var out []DeviceFacts
	for _, r := range results {
		if r.Driver != driver {
			continue
		}
		d, ok := lookup(r.Pool, r.Device)
		if !ok {
			return nil, fmt.Errorf("device %s/%s of claim %s/%s is not in any ResourceSlice of driver %s on this node",
				r.Pool, r.Device, claim.Namespace, claim.Name, driver)
		}
		i, ok := requestIndex(r.Request, "cu-")
		if !ok {
			i = len(out)
		}
		f := DeviceFacts{
			Index:    i,
			Request:  r.Request,
			Pool:     r.Pool,
			Device:   r.Device,
			CUPool:   d.Attributes["pool"],
			Vendor:   d.Attributes["vendor"],
			Model:    d.Attributes["model"],
			UUID:     d.Attributes["uuid"],
			Capacity: d.Capacity,
			Granted:  d.Capacity,
		}
		f.MemoryMiB, _ = strconv.ParseInt(d.Attributes["memoryMiB"], 10, 64)
		if q, ok := r.ConsumedCapacity[CUCapacity]; ok && d.Shared {
			f.Fractional = true
			f.Granted = q
		} else if d.Shared {
			f.Fractional = true
		}
		if r.ShareID != nil {
			f.ShareID = string(*r.ShareID)
		}
		f.VendorDevice = vendorFor[strconv.Itoa(i)]
		out = append(out, f)
	}
	sort.Slice(out, func(a, b int) bool { return out[a].Index < out[b].Index })
	return out, nil
}

func requestIndex(request, prefix string) (int, bool) {
	rest, ok := strings.CutPrefix(request, prefix)
	if !ok {
		return 0, false
	}
	i, err := strconv.Atoi(rest)
	return i, err == nil && i >= 0
}

// Env is what the container of one CU device learns. Claim-wide variables are identical in
// every device of the claim (a runtime rejects one variable with two values); per-device ones
// carry the request index.
func Env(claim *resourceapi.ResourceClaim, all []DeviceFacts, f DeviceFacts) map[string]string {
	total := resource.Quantity{}
	for _, d := range all {
		total.Add(d.Granted)
	}
	mode := "whole"
	if f.Fractional {
		mode = "fractional"
	}
	p := fmt.Sprintf("CU_%d_", f.Index)
	env := map[string]string{
		EnvPool:             f.CUPool,
		EnvMode:             mode,
		EnvClaim:            claim.Namespace + "/" + claim.Name,
		EnvCount:            strconv.Itoa(len(all)),
		EnvTotal:            total.String(),
		p + "DEVICE":        f.Pool + "/" + f.Device,
		p + "AMOUNT":        f.Granted.String(),
		p + "CAPACITY":      f.Capacity.String(),
		p + "VENDOR":        f.Vendor,
		p + "MODEL":         f.Model,
		p + "UUID":          f.UUID,
		p + "MEMORY_MIB":    strconv.FormatInt(f.ShareMemoryMiB(), 10),
		p + "SHARE_PERCENT": strconv.FormatInt(f.SharePercent(), 10),
	}
	if f.VendorDevice != "" {
		env[p+"VENDOR_DEVICE"] = f.VendorDevice
	}
	if f.ShareID != "" {
		env[p+"SHARE_ID"] = f.ShareID
	}
	if f.Fractional {
		for k, v := range vendorKnobs(all) {
			env[k] = v
		}
	}
	return env
}

// vendorKnobs are the vendor's own sharing settings for a fractional claim, where one exists.
// NVIDIA MPS: CUDA_MPS_ACTIVE_THREAD_PERCENTAGE caps the SMs a client may use (one value per
// process, so the smallest share wins) and CUDA_MPS_PINNED_DEVICE_MEM_LIMIT caps device memory
// per device ordinal ("0=4096M,1=4096M"); both are honoured only when the node runs an MPS
// control daemon for the device (docs/kubelet-plugin.md).
func vendorKnobs(all []DeviceFacts) map[string]string {
	var nvidia []DeviceFacts
	for _, d := range all {
		if d.Fractional && d.Vendor == "nvidia" {
			nvidia = append(nvidia, d)
		}
	}
	if len(nvidia) == 0 || len(nvidia) != len(all) {
		return nil
	}
	pct := int64(100)
	limits := make([]string, 0, len(nvidia))
	for ordinal, d := range nvidia {
		pct = min(pct, d.SharePercent())
		limits = append(limits, fmt.Sprintf("%d=%dM", ordinal, d.ShareMemoryMiB()))
	}
	return map[string]string{
		EnvMPSThreads:  strconv.FormatInt(pct, 10),
		EnvMPSMemLimit: strings.Join(limits, ","),
	}
}

// Annotations are the same facts for tools that read CDI specs.
func Annotations(f DeviceFacts) map[string]string {
	a := map[string]string{
		AnnotationBase + "pool":   f.CUPool,
		AnnotationBase + "device": f.Pool + "/" + f.Device,
		AnnotationBase + "amount": f.Granted.String(),
	}
	if f.VendorDevice != "" {
		a[AnnotationBase+"vendor-device"] = f.VendorDevice
	}
	return a
}

// AttributeString renders a DeviceAttribute for the facts map.
func AttributeString(a resourceapi.DeviceAttribute) string {
	switch {
	case a.StringValue != nil:
		return *a.StringValue
	case a.IntValue != nil:
		return strconv.FormatInt(*a.IntValue, 10)
	case a.BoolValue != nil:
		return strconv.FormatBool(*a.BoolValue)
	case a.VersionValue != nil:
		return *a.VersionValue
	}
	return ""
}
