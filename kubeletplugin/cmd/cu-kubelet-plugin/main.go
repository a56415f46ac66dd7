// Command cu-kubelet-plugin is the DRA kubelet plugin of cu-reconciler's CU driver (and, with
// --mode=vendor, a no-op stand-in for a vendor's plugin on test nodes). See docs/kubelet-plugin.md.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/dynamic-resource-allocation/kubeletplugin"
	"k8s.io/klog/v2"

	"cu-reconciler.invalid/kubeletplugin/internal/driver"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "cu-kubelet-plugin:", err)
		os.Exit(1)
	}
}

func env(name, fallback string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return fallback
}

func run() error {
	klog.InitFlags(nil)
	driverName := flag.String("driver-name", "cu.cu-reconciler.io", "DRA driver name")
	mode := flag.String("mode", "cu", "cu: hand containers their CU facts; vendor: no-op stand-in for a vendor plugin")
	node := flag.String("node-name", env("NODE_NAME", ""), "this node (env NODE_NAME)")
	kubeconfig := flag.String("kubeconfig", env("KUBECONFIG", ""), "kubeconfig; empty = in-cluster")
	registry := flag.String("kubelet-registry-dir", kubeletplugin.KubeletRegistryDir, "kubelet plugin registration directory")
	pluginDir := flag.String("plugin-dir", "", "socket and checkpoint directory (default <kubelet plugins dir>/<driver>)")
	cdiDir := flag.String("cdi-dir", "/var/run/cdi", "where CDI spec files are written")
	leaseNS := flag.String("lease-namespace", env("POD_NAMESPACE", "cu-system"), "namespace of the presence Lease")
	leaseDuration := flag.Duration("lease-duration", 40*time.Second, "presence Lease duration (renewed every quarter)")
	flag.Parse()
	if *node == "" {
		return fmt.Errorf("--node-name (or NODE_NAME) is required")
	}
	if *pluginDir == "" {
		*pluginDir = filepath.Join(kubeletplugin.KubeletPluginsDir, *driverName)
	}
	cfg, err := clientcmd.BuildConfigFromFlags("", *kubeconfig)
	if err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	client, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return err
	}
	for _, dir := range []string{*registry, *pluginDir} {
		if err := os.MkdirAll(dir, 0o750); err != nil {
			return err
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	dcfg := driver.Config{
		DriverName: *driverName, Mode: driver.Mode(*mode), NodeName: *node,
		CDIDir: *cdiDir, StateDir: *pluginDir, Client: client,
	}
	if dcfg.Mode == driver.ModeCU {
		// This node's slices of our driver, kept in memory (field selectors on driver and node).
		factory := informers.NewSharedInformerFactoryWithOptions(client, 10*time.Minute,
			informers.WithTweakListOptions(func(o *metav1.ListOptions) {
				o.FieldSelector = "spec.driver=" + *driverName + ",spec.nodeName=" + *node
			}))
		inf := factory.Resource().V1().ResourceSlices().Informer()
		factory.Start(ctx.Done())
		dcfg.Slices = inf.GetStore()
	}
	d, err := driver.New(dcfg)
	if err != nil {
		return err
	}
	ctx = klog.NewContext(ctx, klog.Background().WithValues("driver", *driverName, "node", *node))
	helper, err := kubeletplugin.Start(ctx, d,
		kubeletplugin.DriverName(*driverName),
		kubeletplugin.NodeName(*node),
		kubeletplugin.KubeClient(client),
		kubeletplugin.RegistrarDirectoryPath(*registry),
		kubeletplugin.PluginDataDirectoryPath(*pluginDir),
		kubeletplugin.HealthService(false),
		kubeletplugin.GRPCVerbosity(5),
	)
	if err != nil {
		return fmt.Errorf("start: %w", err)
	}
	defer helper.Stop()
	klog.FromContext(ctx).Info("serving", "mode", *mode, "registry", *registry, "pluginDir", *pluginDir, "cdiDir", *cdiDir)
	if driver.Mode(*mode) == driver.ModeCU {
		go driver.Presence{
			Client: client, Namespace: *leaseNS, Node: *node, Driver: *driverName, Duration: *leaseDuration,
			Registered: func() bool {
				s := helper.RegistrationStatus()
				return s != nil && s.PluginRegistered
			},
		}.Run(ctx)
	}
	<-ctx.Done()
	return nil
}
