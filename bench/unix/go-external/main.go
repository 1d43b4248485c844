// SPIRE's built-in `unix` WorkloadAttestor (its own code, github.com/spiffe/spire v1.15.3), served as an EXTERNAL
// plugin with spire-plugin-sdk. Not a product: bench/unix/spire.ts (BENCH_GO_EXTERNAL=1) uses it to measure what any
// external plugin costs compared with a built-in, so our TypeScript plugin can be compared with that floor.
// Built by bench/build-go-external.sh into $HOME/.cache/spire-hw/bench-unix-go-external.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	workloadattestorv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/plugin/agent/workloadattestor/v1"
	configv1 "github.com/spiffe/spire-plugin-sdk/proto/spire/service/common/config/v1"
	"github.com/spiffe/spire/pkg/agent/plugin/workloadattestor/unix"
)

func main() {
	p := unix.New()
	pluginmain.Serve(workloadattestorv1.WorkloadAttestorPluginServer(p), configv1.ConfigServiceServer(p))
}
