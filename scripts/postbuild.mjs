// Marks every `bin` entry of package.json executable after tsc, so SPIRE can exec it as plugin_cmd.
import { readFileSync, chmodSync, existsSync } from "node:fs";
const pkg = JSON.parse(readFileSync(new URL("../package.json", import.meta.url), "utf8"));
for (const rel of Object.values(pkg.bin ?? {})) {
  const p = new URL(`../${rel}`, import.meta.url);
  if (existsSync(p)) chmodSync(p, 0o755);
}
