// Package cdi writes and resolves Container Device Interface spec files.
//
// Only the subset this project needs: a spec names a kind ("vendor/class") and devices whose
// container edits carry environment variables; device annotations carry the same facts for
// tools that read specs. The format is the CDI JSON spec (github.com/cncf-tags/container-device-interface,
// SPEC.md); a real runtime (containerd, CRI-O) resolves "kind=name" ids against these files and
// injects the edits into the container. The fake runtime in cmd/cu-fake-cri resolves them the
// same way so tests see what a container would get.
package cdi

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// Version is the CDI spec version written; 0.6.0 introduced device annotations.
const Version = "0.6.0"

// Spec is one CDI spec file.
type Spec struct {
	Version string   `json:"cdiVersion"`
	Kind    string   `json:"kind"`
	Devices []Device `json:"devices"`
}

// Device is one CDI device of a spec.
type Device struct {
	Name           string            `json:"name"`
	Annotations    map[string]string `json:"annotations,omitempty"`
	ContainerEdits ContainerEdits    `json:"containerEdits"`
}

// ContainerEdits is the part of a CDI device applied to a container (env only here).
type ContainerEdits struct {
	Env []string `json:"env,omitempty"`
}

// ID is the fully qualified CDI device id a runtime receives.
func ID(kind, name string) string { return kind + "=" + name }

// EnvList renders a map as sorted KEY=value entries (deterministic files).
func EnvList(env map[string]string) []string {
	out := make([]string, 0, len(env))
	for k, v := range env {
		out = append(out, k+"="+v)
	}
	sort.Strings(out)
	return out
}

// Write stores spec atomically (temporary file, fsync, rename): a runtime never reads half a spec.
func Write(path string, spec Spec) error {
	data, err := json.MarshalIndent(spec, "", "  ")
	if err != nil {
		return err
	}
	return WriteFileAtomically(path, data)
}

// WriteFileAtomically writes data to path through a synced temporary file and a rename.
func WriteFileAtomically(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return err
	}
	defer func() { _ = os.Remove(tmp.Name()) }()
	if _, err := tmp.Write(data); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		_ = tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer func() { _ = d.Close() }()
	return d.Sync()
}

// Resolved is what a runtime injects for a set of CDI device ids.
type Resolved struct {
	Env         map[string]string `json:"env"`
	Annotations map[string]string `json:"annotations"`
}

// Resolve looks every id up in the spec files of dirs, as a CDI-enabled runtime does, and
// merges their edits. An id that no spec defines is an error (the runtime refuses the
// container), and so is a variable set to two different values by two devices.
func Resolve(dirs []string, ids []string) (Resolved, error) {
	out := Resolved{Env: map[string]string{}, Annotations: map[string]string{}}
	if len(ids) == 0 {
		return out, nil
	}
	known := map[string]Device{}
	for _, dir := range dirs {
		files, _ := filepath.Glob(filepath.Join(dir, "*.json"))
		for _, file := range files {
			data, err := os.ReadFile(file)
			if err != nil {
				continue // removed between Glob and read
			}
			var spec Spec
			if err := json.Unmarshal(data, &spec); err != nil {
				return out, fmt.Errorf("CDI spec %s: %w", file, err)
			}
			for _, d := range spec.Devices {
				known[ID(spec.Kind, d.Name)] = d
			}
		}
	}
	for _, id := range ids {
		d, ok := known[id]
		if !ok {
			return out, fmt.Errorf("unresolvable CDI device %q (no spec in %s)", id, strings.Join(dirs, ", "))
		}
		for _, kv := range d.ContainerEdits.Env {
			k, v, _ := strings.Cut(kv, "=")
			if old, dup := out.Env[k]; dup && old != v {
				return out, fmt.Errorf("CDI device %q sets %s=%q, another device set %q", id, k, v, old)
			}
			out.Env[k] = v
		}
		for k, v := range d.Annotations {
			out.Annotations[k] = v
		}
	}
	return out, nil
}
