#!/usr/bin/env node
/**
 * CLI for the demo and manual tests:
 *   node dist/simulators/softhsm2/cli.js init [--dir D] [--label L] [--pin P] [--so-pin S]   → prints JSON
 *   node dist/simulators/softhsm2/cli.js env  --dir D                                         → prints `export SOFTHSM2_CONF=…`
 *   node dist/simulators/softhsm2/cli.js cleanup --dir D
 * `init` prints {dir, conf, modulePath, label, pin, slotId, serial, env} on stdout; the PIN is the test PIN you chose.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createSoftHsm } from './index';

function arg(name: string, def?: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`);
  return i >= 0 ? process.argv[i + 1] : def;
}

const cmd = process.argv[2];
if (cmd === 'init') {
  const parent = arg('dir');
  if (parent) fs.mkdirSync(parent, { recursive: true });
  const hsm = createSoftHsm({
    tokens: [{ label: arg('label', 'spire')!, pin: arg('pin', '1234')!, soPin: arg('so-pin', '5678')! }],
    ...(parent ? { parentDir: parent } : {}),
  });
  const t = hsm.tokens[0]!;
  process.stdout.write(
    JSON.stringify(
      {
        dir: hsm.dir,
        conf: hsm.conf,
        modulePath: hsm.modulePath,
        label: t.label,
        pin: t.pin,
        slotId: t.slotId?.toString(),
        serial: t.serial,
        env: hsm.env,
      },
      null,
      2,
    ) + '\n',
  );
} else if (cmd === 'env') {
  const d = arg('dir');
  if (!d) throw new Error('--dir required');
  process.stdout.write(`export SOFTHSM2_CONF=${path.join(d, 'softhsm2.conf')}\n`);
} else if (cmd === 'cleanup') {
  const d = arg('dir');
  if (!d || !fs.existsSync(path.join(d, 'softhsm2.conf'))) throw new Error('--dir must be a directory made by init');
  fs.rmSync(d, { recursive: true, force: true });
} else {
  process.stderr.write(
    'usage: cli.js init [--dir PARENT] [--label L] [--pin P] [--so-pin S] | env --dir D | cleanup --dir D\n',
  );
  process.exit(2);
}
