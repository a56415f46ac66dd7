package driver

import (
	"testing"

	resourceapi "k8s.io/api/resource/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

const ours = "cu.cu-reconciler.io"

func claimWith(results ...resourceapi.DeviceRequestAllocationResult) *resourceapi.ResourceClaim {
	return &resourceapi.ResourceClaim{
		ObjectMeta: metav1.ObjectMeta{Namespace: "team-a", Name: "train", UID: "u1"},
		Status: resourceapi.ResourceClaimStatus{Allocation: &resourceapi.AllocationResult{
			Devices: resourceapi.DeviceAllocationResult{Results: results},
		}},
	}
}

func lookupOf(devs ...SliceDevice) Lookup {
	return func(pool, device string) (SliceDevice, bool) {
		for _, d := range devs {
			if d.Pool == pool && d.Name == device {
				return d, true
			}
		}
		return SliceDevice{}, false
	}
}

func TestWholePoolPairsTheVendorDevice(t *testing.T) {
	claim := claimWith(
		resourceapi.DeviceRequestAllocationResult{Request: "cu-0", Driver: ours, Pool: "n1", Device: "nvidia-gpu-3"},
		resourceapi.DeviceRequestAllocationResult{Request: "gpu-0/nvidia", Driver: "gpu.nvidia.com", Pool: "n1", Device: "gpu-3"},
	)
	dev := SliceDevice{Pool: "n1", Name: "nvidia-gpu-3", Capacity: resource.MustParse("1000"),
		Attributes: map[string]string{"pool": "train-h100", "vendor": "nvidia", "memoryMiB": "81920", "uuid": "abc"}}
	facts, err := Gather(claim, ours, lookupOf(dev))
	if err != nil {
		t.Fatal(err)
	}
	env := Env(claim, facts, facts[0])
	want := map[string]string{
		"CU_POOL": "train-h100", "CU_MODE": "whole", "CU_0_AMOUNT": "1k", "CU_TOTAL": "1k",
		"CU_0_VENDOR_DEVICE": "gpu.nvidia.com/n1/gpu-3", "CU_0_UUID": "abc", "CU_CLAIM": "team-a/train",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
	if _, ok := env[EnvMPSThreads]; ok {
		t.Errorf("whole device must not get MPS limits")
	}
}

func TestFractionalShareGetsMPSKnobs(t *testing.T) {
	share := types.UID("s1")
	claim := claimWith(resourceapi.DeviceRequestAllocationResult{
		Request: "cu-0", Driver: ours, Pool: "n1", Device: "nvidia-gpu-0", ShareID: &share,
		ConsumedCapacity: map[resourceapi.QualifiedName]resource.Quantity{"cu": resource.MustParse("250")},
	})
	dev := SliceDevice{Pool: "n1", Name: "nvidia-gpu-0", Capacity: resource.MustParse("1000"), Shared: true,
		Attributes: map[string]string{"pool": "inference", "vendor": "nvidia", "memoryMiB": "81920"}}
	facts, err := Gather(claim, ours, lookupOf(dev))
	if err != nil {
		t.Fatal(err)
	}
	env := Env(claim, facts, facts[0])
	want := map[string]string{
		"CU_MODE": "fractional", "CU_0_AMOUNT": "250", "CU_0_SHARE_PERCENT": "25", "CU_0_SHARE_ID": "s1",
		"CU_0_MEMORY_MIB": "20480", EnvMPSThreads: "25", EnvMPSMemLimit: "0=20480M",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

func TestUnknownDeviceIsAnError(t *testing.T) {
	claim := claimWith(resourceapi.DeviceRequestAllocationResult{Request: "cu-0", Driver: ours, Pool: "n1", Device: "x"})
	if _, err := Gather(claim, ours, lookupOf()); err == nil {
		t.Fatal("want an error for a device in no slice")
	}
}
