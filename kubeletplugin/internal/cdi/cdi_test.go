package cdi

import (
	"path/filepath"
	"testing"
)

func TestResolveMergesAndRefusesUnknownAndConflicts(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Version: Version, Kind: "cu.example/device", Devices: []Device{
		{Name: "a", ContainerEdits: ContainerEdits{Env: []string{"X=1", "SHARED=s"}}},
		{Name: "b", ContainerEdits: ContainerEdits{Env: []string{"Y=2", "SHARED=s"}}},
		{Name: "c", ContainerEdits: ContainerEdits{Env: []string{"SHARED=other"}}},
	}}
	if err := Write(filepath.Join(dir, "s.json"), spec); err != nil {
		t.Fatal(err)
	}
	got, err := Resolve([]string{dir}, []string{"cu.example/device=a", "cu.example/device=b"})
	if err != nil || got.Env["X"] != "1" || got.Env["Y"] != "2" || got.Env["SHARED"] != "s" {
		t.Fatalf("resolve: %v %v", got, err)
	}
	if _, err := Resolve([]string{dir}, []string{"cu.example/device=zzz"}); err == nil {
		t.Fatal("unknown device must not resolve")
	}
	if _, err := Resolve([]string{dir}, []string{"cu.example/device=a", "cu.example/device=c"}); err == nil {
		t.Fatal("conflicting values must not resolve")
	}
}
