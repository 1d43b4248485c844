// grpc-js stays out of a plugin's start: loading the SDK, the generated service files and every plugin's module does
// not load @grpc/grpc-js (it cost ~50-60 ms of exec -> handshake); making a host-service client does, and works.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import * as path from 'node:path';

const dist = path.resolve(__dirname, '..', '..', '..');

/** Runs `code` in a fresh node and returns what it printed (JSON). */
function inChild(code: string): unknown {
  const r = spawnSync(process.execPath, ['-e', code], { cwd: dist, encoding: 'utf8' });
  assert.equal(r.status, 0, r.stderr);
  return JSON.parse(r.stdout) as unknown;
}

const grpcLoaded = `Object.keys(require.cache).some((f) => f.includes('${path.sep}@grpc${path.sep}grpc-js${path.sep}'))`;

test('the SDK, the generated services and every plugin module load without @grpc/grpc-js', () => {
  const mods = [
    './plugins/sdk/index.js',
    './proto/gen/goplugin/grpc_broker.js',
    './proto/gen/spire/hostservice/common/metrics/v1/metrics.js',
    './plugins/unix-workloadattestor/plugin.js',
    './plugins/tpm-devid-agent/plugin.js',
    './plugins/tpm-devid-server/plugin.js',
    './plugins/pkcs11-keymanager/plugin.js',
    './plugins/pkcs11-upstreamauthority/plugin.js',
  ];
  const out = inChild(
    `${mods.map((m) => `require(${JSON.stringify(m)});`).join('')} console.log(JSON.stringify(${grpcLoaded}))`,
  );
  assert.equal(out, false, 'grpc-js was loaded at start');
});

test('a generated client constructor loads grpc-js on first use and builds a working client', () => {
  const out = inChild(`
    const { HealthClient } = require('./proto/gen/grpc/health/v1/health.js');
    const before = ${grpcLoaded};
    const { grpcJs } = require('./plugins/sdk/grpc.js');
    const c = new HealthClient('127.0.0.1:1', grpcJs().credentials.createInsecure());
    const ok = typeof c.check === 'function' && c instanceof grpcJs().Client && typeof HealthClient.service === 'object';
    c.close();
    console.log(JSON.stringify({ before, after: ${grpcLoaded}, ok }));
  `);
  assert.deepEqual(out, { before: false, after: true, ok: true });
});
