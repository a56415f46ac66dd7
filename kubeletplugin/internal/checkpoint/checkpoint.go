// Package checkpoint keeps the claims a plugin has prepared, on disk.
//
// The kubelet does not cache claims for NodeUnprepareResources and may call Prepare again
// after its own restart; the plugin may restart between the two. Like upstream drivers
// (the example driver, NVIDIA's), we keep every prepared claim in one JSON file written
// atomically, so a restart of either side loses nothing and both calls stay idempotent.
package checkpoint

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sort"

	"cu-reconciler.invalid/kubeletplugin/internal/cdi"
)

// FileVersion is bumped on an incompatible change of the file layout.
const FileVersion = 1

// Device is one prepared device of a claim, as returned to the kubelet.
type Device struct {
	Requests     []string `json:"requests"`
	Driver       string   `json:"driver"`
	Pool         string   `json:"pool"`
	Device       string   `json:"device"`
	CDIDeviceIDs []string `json:"cdiDeviceIDs"`
	ShareID      string   `json:"shareID,omitempty"`
	// MilliCU is what the claim holds of the device's CU (fractional shares); 0 = the whole device.
	MilliCU int64 `json:"milliCU,omitempty"`
}

// Claim is one prepared ResourceClaim.
type Claim struct {
	Namespace string   `json:"namespace"`
	Name      string   `json:"name"`
	Devices   []Device `json:"devices"`
	SpecFile  string   `json:"specFile"`
}

// File is the checkpoint file's content.
type File struct {
	Version int              `json:"version"`
	Claims  map[string]Claim `json:"claims"`
}

// Load reads path; a missing file is an empty checkpoint.
func Load(path string) (File, error) {
	f := File{Version: FileVersion, Claims: map[string]Claim{}}
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return f, nil
	}
	if err != nil {
		return f, err
	}
	if err := json.Unmarshal(data, &f); err != nil {
		return f, fmt.Errorf("checkpoint %s is corrupt: %w", path, err)
	}
	if f.Version != FileVersion {
		return f, fmt.Errorf("checkpoint %s has version %d, this plugin reads %d", path, f.Version, FileVersion)
	}
	if f.Claims == nil {
		f.Claims = map[string]Claim{}
	}
	return f, nil
}

// Save writes f atomically.
func Save(path string, f File) error {
	f.Version = FileVersion
	data, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return err
	}
	return cdi.WriteFileAtomically(path, data)
}

// UIDs lists the prepared claim UIDs, sorted.
func (f File) UIDs() []string {
	out := make([]string, 0, len(f.Claims))
	for uid := range f.Claims {
		out = append(out, uid)
	}
	sort.Strings(out)
	return out
}
