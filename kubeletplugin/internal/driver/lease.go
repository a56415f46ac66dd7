package driver

import (
	"context"
	"time"

	coordinationv1 "k8s.io/api/coordination/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/klog/v2"
	"k8s.io/utils/ptr"
)

// Presence labels: reconciler/observe/plugins.py lists Leases by PresenceLabel and reads the
// node from NodeLabel (the name is derived and may be hashed; the label is the contract).
const (
	PresenceLabel = "cu-reconciler.io/kubelet-plugin"
	NodeLabel     = "cu-reconciler.io/node"
	LeasePrefix   = "cu-kubelet-plugin-"
)

// Presence renews a per-node Lease while the kubelet has accepted the plugin's registration,
// so the reconciler can tell a node whose CU cannot be prepared (no live Lease) from one that
// can. The plugin owns only this Lease.
type Presence struct {
	Client     kubernetes.Interface
	Namespace  string
	Node       string
	Driver     string
	Duration   time.Duration
	Registered func() bool
}

// LeaseName is the Lease of node (a DNS subdomain; node names are at most 253 characters).
func LeaseName(node string) string {
	name := LeasePrefix + node
	if len(name) > 253 {
		name = name[:253]
	}
	return name
}

// Run renews the Lease every Duration/4 until ctx ends; until the first renewal (the kubelet
// has not accepted the registration yet) it checks every half second, so a new node is sold
// as soon as it can prepare.
func (p Presence) Run(ctx context.Context) {
	logger := klog.FromContext(ctx)
	renewed := false
	for {
		if p.Registered == nil || p.Registered() {
			if err := p.renew(ctx); err != nil && ctx.Err() == nil {
				logger.Error(err, "renewing presence Lease", "namespace", p.Namespace, "name", LeaseName(p.Node))
			} else if err == nil {
				renewed = true
			}
		}
		wait := p.Duration / 4
		if !renewed {
			wait = 500 * time.Millisecond
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

func (p Presence) renew(ctx context.Context) error {
	leases := p.Client.CoordinationV1().Leases(p.Namespace)
	now := metav1.NewMicroTime(time.Now())
	spec := coordinationv1.LeaseSpec{
		HolderIdentity:       ptr.To(p.Driver + "@" + p.Node),
		LeaseDurationSeconds: ptr.To(int32(p.Duration / time.Second)),
		RenewTime:            &now,
	}
	cur, err := leases.Get(ctx, LeaseName(p.Node), metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		spec.AcquireTime = &now
		_, err = leases.Create(ctx, &coordinationv1.Lease{
			ObjectMeta: metav1.ObjectMeta{
				Name:      LeaseName(p.Node),
				Namespace: p.Namespace,
				Labels:    map[string]string{PresenceLabel: "true", NodeLabel: labelValue(p.Node)},
			},
			Spec: spec,
		}, metav1.CreateOptions{})
		return err
	}
	if err != nil {
		return err
	}
	spec.AcquireTime = cur.Spec.AcquireTime
	cur.Spec = spec
	_, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
	return err
}

func labelValue(s string) string {
	if len(s) > 63 {
		s = s[:63]
	}
	return s
}
