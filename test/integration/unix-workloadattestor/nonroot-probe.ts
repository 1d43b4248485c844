// Helper run by realproc.test.ts under another uid: attests argv[2] with the real /proc and /etc and prints
// `OK <selectors,...>` or `ERR <code> <message>`. Not a test file.
import { buildConfig } from '../../../plugins/unix-workloadattestor/config';
import { PluginError } from '@spire-hw/sdk/errors';
import { createCore } from '../../../plugins/unix-workloadattestor/runtime';

async function main(): Promise<void> {
  const pid = Number(process.argv[2]);
  const discover = process.argv[3] === 'true';
  const hclText = JSON.stringify({ proc_root: '/proc', etc_root: '/etc', discover_workload_path: discover });
  const status = { errors: [] as string[], notes: [] as string[] };
  const cfg = buildConfig({ trustDomain: 'example.org', hclText, coreConfigurationPresent: true }, status);
  for (const m of status.errors) console.log(`CONFIG ${m}`);
  if (!cfg) process.exit(2);
  try {
    const sel = await createCore(cfg).attest(pid);
    console.log(`OK ${sel.join(',')}`);
  } catch (e) {
    if (e instanceof PluginError) console.log(`ERR ${e.code} ${e.message}`);
    else console.log(`THROWN ${String(e)}`);
  }
}
void main();
