// Command argocd runs the four Argo CD components the project's tests need (application
// controller, repo-server, config-management-plugin server, ApplicationSet controller) from one
// binary, chosen by the name it is called by (argv[0]), so one build serves four symlinks. The API
// server, UI and Dex are left out: tests drive Applications through the Kubernetes API.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	appcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-application-controller/commands"
	appsetcontroller "github.com/argoproj/argo-cd/v3/cmd/argocd-applicationset-controller/commands"
	cmpserver "github.com/argoproj/argo-cd/v3/cmd/argocd-cmp-server/commands"
	reposerver "github.com/argoproj/argo-cd/v3/cmd/argocd-repo-server/commands"
)

func main() {
	var cmd *cobra.Command
	switch name := filepath.Base(os.Args[0]); name {
	case "argocd-application-controller":
		cmd = appcontroller.NewCommand()
	case "argocd-repo-server":
		cmd = reposerver.NewCommand()
	case "argocd-cmp-server":
		cmd = cmpserver.NewCommand()
	case "argocd-applicationset-controller":
		cmd = appsetcontroller.NewCommand()
	default:
		fmt.Fprintf(os.Stderr, "argocd: called as %q; link this binary as argocd-application-controller, "+
			"argocd-repo-server or argocd-cmp-server\n", name)
		os.Exit(2)
	}
	if err := cmd.Execute(); err != nil {
		os.Exit(1)
	}
}
