// SPIRE's built-in `disk` UpstreamAuthority (its own code, github.com/spiffe/spire v1.15.3), served as an EXTERNAL
// plugin with spire-plugin-sdk. Not a product: bench/pkcs11/upstream-mint.ts drives it next to our `pkcs11`
// UpstreamAuthority through the same spawn harness, so both sides pay the same plugin boundary (process hop, gRPC
// stream per MintX509CAAndSubscribe) and the comparison is the minting work alone.
// Built by bench/build-go-external.sh into $HOME/.cache/spire-hw/bench-pkcs11-go-disk-ua.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire/pkg/server/plugin/upstreamauthority/disk"
)

func main() {
	b := disk.BuiltIn()
	pluginmain.Serve(b.Plugin, b.Services...)
}
