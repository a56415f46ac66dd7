// Command cu-fake-cri serves the fake CRI runtime of k8s.io/cri-client/pkg/fake so a real
// kubelet can run Pods without containers, and records every CreateContainer request (with
// its CDI devices resolved against the CDI spec directories, as containerd would) as one JSON
// line per container, so tests can check what a container was given.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"google.golang.org/grpc"
	kubeapi "k8s.io/cri-api/pkg/apis/runtime/v1"
	"k8s.io/cri-client/pkg/fake"
	"k8s.io/cri-client/pkg/util"

	"cu-reconciler.invalid/kubeletplugin/internal/cdi"
)

// Record is one line of the --record file.
type Record struct {
	Time         time.Time         `json:"time"`
	Namespace    string            `json:"namespace"`
	Pod          string            `json:"pod"`
	PodUID       string            `json:"podUID"`
	Container    string            `json:"container"`
	Image        string            `json:"image"`
	CDIDevices   []string          `json:"cdiDevices"`
	Env          map[string]string `json:"env"`
	Annotations  map[string]string `json:"annotations"`
	CDIEnv       map[string]string `json:"cdiEnv"`
	CDIAnnotated map[string]string `json:"cdiAnnotations"`
	Error        string            `json:"error,omitempty"`
}

type recorder struct {
	*fake.RemoteRuntime
	mu      sync.Mutex
	out     *os.File
	cdiDirs []string
}

func (r *recorder) CreateContainer(ctx context.Context, req *kubeapi.CreateContainerRequest) (*kubeapi.CreateContainerResponse, error) {
	cfg := req.GetConfig()
	rec := Record{Time: time.Now().UTC(), Env: map[string]string{}, Annotations: cfg.GetAnnotations()}
	if m := req.GetSandboxConfig().GetMetadata(); m != nil {
		rec.Namespace, rec.Pod, rec.PodUID = m.Namespace, m.Name, m.Uid
	}
	rec.Container = cfg.GetMetadata().GetName()
	rec.Image = cfg.GetImage().GetImage()
	for _, kv := range cfg.GetEnvs() {
		rec.Env[kv.Key] = string(kv.Value)
	}
	for _, d := range cfg.GetCDIDevices() {
		rec.CDIDevices = append(rec.CDIDevices, d.Name)
	}
	resolved, err := cdi.Resolve(r.cdiDirs, rec.CDIDevices)
	rec.CDIEnv, rec.CDIAnnotated = resolved.Env, resolved.Annotations
	if err != nil {
		rec.Error = err.Error()
	}
	r.write(rec)
	if err != nil {
		// A CDI-enabled runtime refuses a container whose devices it cannot resolve.
		return nil, fmt.Errorf("CDI: %w", err)
	}
	return r.RemoteRuntime.CreateContainer(ctx, req)
}

func (r *recorder) write(rec Record) {
	line, _ := json.Marshal(rec)
	r.mu.Lock()
	defer r.mu.Unlock()
	_, _ = r.out.Write(append(line, '\n'))
	_ = r.out.Sync()
}

func main() {
	endpoint := flag.String("endpoint", "", "unix:///path/cri.sock")
	record := flag.String("record", "", "append one JSON line per CreateContainer here")
	cdiDirs := flag.String("cdi-dirs", "/etc/cdi,/var/run/cdi", "comma-separated CDI spec directories")
	images := flag.String("images", "registry.k8s.io/pause:3.10,busybox:latest,docker.io/library/busybox:latest",
		"comma-separated image names the fake image service knows")
	flag.Parse()
	if *endpoint == "" || *record == "" {
		fmt.Fprintln(os.Stderr, "cu-fake-cri: --endpoint and --record are required")
		os.Exit(2)
	}
	out, err := os.OpenFile(*record, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cu-fake-cri:", err)
		os.Exit(1)
	}
	rt := fake.NewFakeRemoteRuntime()
	rt.ImageService.SetFakeImageSize(1 << 20)
	rt.ImageService.SetFakeImages(strings.Split(*images, ","))
	rt.RuntimeService.FakeStatus = &kubeapi.RuntimeStatus{Conditions: []*kubeapi.RuntimeCondition{
		{Type: kubeapi.RuntimeReady, Status: true},
		{Type: kubeapi.NetworkReady, Status: true},
	}}
	rec := &recorder{RemoteRuntime: rt, out: out, cdiDirs: strings.Split(*cdiDirs, ",")}
	server := grpc.NewServer()
	kubeapi.RegisterRuntimeServiceServer(server, rec)
	kubeapi.RegisterImageServiceServer(server, rt)
	l, err := util.CreateListener(*endpoint)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cu-fake-cri:", err)
		os.Exit(1)
	}
	go func() { _ = server.Serve(l) }()
	fmt.Fprintln(os.Stderr, "cu-fake-cri: serving", *endpoint)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	<-ctx.Done()
	server.Stop()
}
