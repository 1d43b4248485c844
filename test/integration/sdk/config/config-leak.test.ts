// Attack (issue 12, finding 3): malformed configurations with a secret under a key the plugin declares secret are
// sent to the SPAWNED plugins' Config.Validate and Config.Configure, as SPIRE sends them. Nothing the plugin returns
// (status message, Validate notes) or writes to stderr (hclog JSON) may contain the secret or any 4+ character
// substring of it; and every syntax error still names the line and the column.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync } from 'node:fs';
import { resolve } from 'node:path';
import type { ServiceError } from '@grpc/grpc-js';
import { spawnPlugin, type SpawnedPlugin } from '@spire-hw/sdk/testing';
import { agentCorpus, leakedFragments, pkcs11Corpus, type LeakCase } from '../../../fixtures/config-leak/corpus';

const PKCS11_MAIN = resolve(__dirname, '../../../../plugins/pkcs11-keymanager/main-server.js');
const AGENT_MAIN = resolve(__dirname, '../../../../plugins/tpm-devid-agent/main.js');

const started: SpawnedPlugin[] = [];
after(() => {
  for (const p of started) p.kill();
});

interface Outcome {
  readonly name: string;
  readonly leaks: string[];
  readonly where: string[];
  readonly configureError: string;
  readonly positioned: boolean;
}

/** Every string in an hclog line except the timestamp (a number in a JSON field is not text the plugin echoed). */
function logText(line: string): string {
  try {
    const o = JSON.parse(line) as Record<string, unknown>;
    const parts: string[] = [];
    const walk = (v: unknown, k?: string): void => {
      if (k === '@timestamp') return;
      if (typeof v === 'string') parts.push(v);
      else if (Array.isArray(v)) v.forEach((e) => walk(e));
      else if (typeof v === 'object' && v !== null) for (const [kk, vv] of Object.entries(v)) walk(vv, kk);
    };
    walk(o);
    return parts.join('\n');
  } catch {
    return line;
  }
}

async function waitForLine(p: SpawnedPlugin, from: number, re: RegExp, ms = 3_000): Promise<void> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (p.stderrLines.slice(from).some((l) => re.test(l))) break;
    await new Promise((r) => setTimeout(r, 10));
  }
  await new Promise((r) => setTimeout(r, 20)); // anything written right after
}

async function runCorpus(p: SpawnedPlugin, cases: readonly LeakCase[]): Promise<Outcome[]> {
  const out: Outcome[] = [];
  for (const c of cases) {
    const from = p.stderrLines.length;
    const v = await p.conn.validate(c.hcl);
    let configureError = '';
    try {
      await p.conn.configure(c.hcl);
      configureError = '(configure succeeded)';
    } catch (e) {
      configureError = (e as ServiceError).details ?? String(e);
    }
    await waitForLine(p, from, /configuration rejected|configured/);
    const texts: [string, string][] = [
      ['configure status', configureError],
      ...v.notes.map((n): [string, string] => ['validate note', n]),
      ...p.stderrLines.slice(from).map((l): [string, string] => ['stderr', logText(l)]),
    ];
    const leaks = new Set<string>();
    const where = new Set<string>();
    for (const [w, t] of texts) {
      const f = leakedFragments(c.secrets, t);
      if (f.length > 0) {
        where.add(w);
        for (const x of f) leaks.add(x);
      }
    }
    out.push({
      name: c.name,
      leaks: [...leaks],
      where: [...where],
      configureError,
      positioned: /line \d+, column \d+/.test(configureError) && v.notes.some((n) => /line \d+, column \d+/.test(n)),
    });
    assert.ok(p.alive(), `plugin still alive after ${c.name}`);
  }
  return out;
}

function report(label: string, cases: readonly LeakCase[], outcomes: readonly Outcome[]): string {
  const leaking = outcomes.filter((o) => o.leaks.length > 0);
  const lines = [`${label}: ${leaking.length} of ${outcomes.length} configurations leaked a secret`];
  for (const o of leaking) lines.push(`  - ${o.name} [${o.where.join(', ')}]: ${o.configureError.slice(0, 200)}`);
  const unpositioned = outcomes.filter((o, i) => cases[i]!.syntax && !o.positioned);
  if (unpositioned.length > 0) {
    lines.push(`  ${unpositioned.length} syntax errors do not name a line and a column:`);
    for (const o of unpositioned) lines.push(`  - ${o.name}: ${o.configureError.slice(0, 200)}`);
  }
  return lines.join('\n');
}

test('PKCS#11 KeyManager: no secret from a malformed configuration reaches SPIRE or the log', async (t) => {
  chmodSync(PKCS11_MAIN, 0o755);
  const p = await spawnPlugin({ command: PKCS11_MAIN, type: 'KeyManager', side: 'server' });
  started.push(p);
  const cases = pkcs11Corpus();
  assert.ok(cases.length >= 30);
  const outcomes = await runCorpus(p, cases);
  const text = report('pkcs11', cases, outcomes);
  t.diagnostic(text);
  await p.unload();
  assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
  assert.equal(outcomes.filter((o) => o.leaks.length > 0).length, 0, text);
  assert.equal(outcomes.filter((o, i) => cases[i]!.syntax && !o.positioned).length, 0, text);
});

test('tpm_devid agent: no password from a malformed configuration reaches SPIRE or the log', async (t) => {
  chmodSync(AGENT_MAIN, 0o755);
  const p = await spawnPlugin({ command: AGENT_MAIN, type: 'NodeAttestor', side: 'agent' });
  started.push(p);
  const cases = agentCorpus();
  const outcomes = await runCorpus(p, cases);
  const text = report('tpm_devid agent', cases, outcomes);
  t.diagnostic(text);
  await p.unload();
  assert.deepEqual(p.logProblems(), [], 'every stderr line is hclog JSON');
  assert.equal(outcomes.filter((o) => o.leaks.length > 0).length, 0, text);
  assert.equal(outcomes.filter((o, i) => cases[i]!.syntax && !o.positioned).length, 0, text);
});
