// The guard of scripts/test-counts.ts against fixture test files: a file that exits early with status 0 passes
// `node --test` (no failure is reported) but fails the guard, which names the file and both numbers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';

const REPORTER = resolve(__dirname, '../../scripts/test-counts.js');

const FULL = `const { test, describe } = require("node:test");
describe("suite", () => { test("a", () => {}); test("b", () => {}); });
test("c", async (t) => { await t.test("c1", () => {}); });
`;
// What --test-force-exit did under load: the process ends between tests, status 0, nothing reported as failed.
const TRUNCATED = `const { test } = require("node:test");
test("a", () => {});
test("b", () => { process.exit(0); });
test("c", () => {});
`;
const MANIFEST = { total: 7, files: { 'full.test.js': 4, 'truncated.test.js': 3 } };

function fixtureDir(): string {
  const dir = mkdtempSync(join(tmpdir(), 'test-counts-'));
  writeFileSync(join(dir, 'full.test.js'), FULL);
  writeFileSync(join(dir, 'truncated.test.js'), TRUNCATED);
  writeFileSync(join(dir, 'counts.json'), JSON.stringify(MANIFEST));
  return dir;
}

function run(dir: string, files: string[], env: Record<string, string> = {}, guard = true) {
  const reporters = guard
    ? [
        '--test-reporter=tap',
        '--test-reporter-destination=stdout',
        `--test-reporter=${REPORTER}`,
        '--test-reporter-destination=stderr',
      ]
    : ['--test-reporter=tap'];
  // Run as a top-level `node --test`, not as a child of the runner that runs this file.
  // Nor with the guard settings of the run that runs this file (`npm run test:counts` sets UPDATE_TEST_COUNTS).
  const { NODE_TEST_CONTEXT: _child, UPDATE_TEST_COUNTS: _update, TEST_COUNTS_SUBSET: _subset, ...outer } = process.env;
  const r = spawnSync(process.execPath, ['--test', '--test-concurrency=1', ...reporters, ...files], {
    cwd: dir,
    encoding: 'utf8',
    env: { ...outer, TEST_COUNTS_FILE: 'counts.json', ...env },
  });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('a file that exits early with status 0 passes node --test alone but fails the guard, which names it', (t) => {
  const dir = fixtureDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const bare = run(dir, ['full.test.js', 'truncated.test.js'], {}, false);
  assert.equal(bare.status, 0, bare.stdout);
  assert.match(bare.stdout, /^# fail 0$/m);
  const r = run(dir, ['full.test.js', 'truncated.test.js']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /FAIL truncated\.test\.js: 1 tests reported, 3 expected/);
  assert.match(r.stderr, /FAIL total: 5 tests reported, 7 expected/);
  assert.doesNotMatch(r.stderr, /full\.test\.js/);
  assert.match(r.stdout, /^# tests 5$/m, "node's own summary is still printed");
});

test('a run with every recorded test passes the guard', (t) => {
  const dir = fixtureDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'counts.json'), JSON.stringify({ total: 4, files: { 'full.test.js': 4 } }));
  const r = run(dir, ['full.test.js']);
  assert.equal(r.status, 0, r.stderr);
  assert.doesNotMatch(r.stderr, /FAIL/);
  assert.match(r.stdout, /^# tests 4$/m);
});

test('a recorded file that did not run fails the guard, unless the run is a declared subset', (t) => {
  const dir = fixtureDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const r = run(dir, ['full.test.js']);
  assert.equal(r.status, 1, r.stderr);
  assert.match(r.stderr, /FAIL truncated\.test\.js: did not run, 3 tests expected/);
  assert.match(r.stderr, /FAIL total: 4 tests reported, 7 expected/);
  const subset = run(dir, ['full.test.js'], { TEST_COUNTS_SUBSET: '1' });
  assert.equal(subset.status, 0, subset.stderr);
});

test('UPDATE_TEST_COUNTS=1 records the counts of a green run, and refuses a run with a failure', (t) => {
  const dir = fixtureDir();
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, 'extra.test.js'), `require("node:test").test("x", () => {});\n`);
  const r = run(dir, ['full.test.js', 'extra.test.js'], { UPDATE_TEST_COUNTS: '1' });
  assert.equal(r.status, 0, r.stderr);
  assert.deepEqual(JSON.parse(readFileSync(join(dir, 'counts.json'), 'utf8')), {
    total: 5,
    files: { 'extra.test.js': 1, 'full.test.js': 4 },
  });
  assert.equal(run(dir, ['full.test.js', 'extra.test.js']).status, 0);
  writeFileSync(join(dir, 'extra.test.js'), `require("node:test").test("x", () => { throw new Error("no"); });\n`);
  const failing = run(dir, ['full.test.js', 'extra.test.js'], { UPDATE_TEST_COUNTS: '1' });
  assert.equal(failing.status, 1);
  assert.match(failing.stderr, /not recorded, some tests failed/);
  assert.equal(JSON.parse(readFileSync(join(dir, 'counts.json'), 'utf8')).total, 5);
});
