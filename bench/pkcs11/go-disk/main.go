// SPIRE's built-in `disk` KeyManager (its own code, github.com/spiffe/spire v1.15.3), served as an EXTERNAL plugin with
// spire-plugin-sdk. Not a product: bench/pkcs11/spire-mint.ts (BENCH_GO_EXTERNAL=1) runs it next to the built-in
// `disk` and our `pkcs11` KeyManager, to measure what the plugin boundary alone (process hop, gRPC, one SignData per
// mint) costs in minting rate: the floor for any external KeyManager, ours included.
// Built by bench/build-go-external.sh into $HOME/.cache/spire-hw/bench-pkcs11-go-disk.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire/pkg/server/plugin/keymanager/disk"
)

func main() {
	b := disk.BuiltIn()
	pluginmain.Serve(b.Plugin, b.Services...)
}
