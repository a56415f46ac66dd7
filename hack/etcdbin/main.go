// Command etcd is etcd's own server entry point, built from the go.etcd.io/etcd/server/v3 module.
//
// It lives in its own module (not hack/k8sbin) so etcd's dependency versions never mix with
// Kubernetes'; hack/build-k8s.sh builds it with the version pinned in hack/versions.env.
package main

import (
	"os"

	"go.etcd.io/etcd/server/v3/etcdmain"
)

func main() {
	etcdmain.Main(os.Args)
}
