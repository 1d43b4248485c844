// SPIRE's built-in agent `disk` KeyManager (its own code, github.com/spiffe/spire v1.15.3), served as an EXTERNAL
// plugin with spire-plugin-sdk. Not a product: bench/tpm-keymanager/sign.ts runs it next to our `tpm` KeyManager.
// Built by bench/build-go-external.sh into $HOME/.cache/spire-hw/bench-tpm-keymanager-go-disk.
package main

import (
	"github.com/spiffe/spire-plugin-sdk/pluginmain"
	"github.com/spiffe/spire/pkg/agent/plugin/keymanager/disk"
)

func main() {
	b := disk.BuiltIn()
	pluginmain.Serve(b.Plugin, b.Services...)
}
