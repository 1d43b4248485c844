// A `node --test` reporter that makes a shrinking test run fail. A test file that ends early with exit status 0 (a
// stray process.exit, or --test-force-exit under CPU load) reports fewer tests and no failure, so the run would stay
// green; this reporter counts the tests each file reported, the way node's `# tests` line does (every test, not
// suites), and compares them with the counts committed in test/expected-counts.json.
//
// It fails the run (exit status 1, a line on its destination naming the file and both numbers) when a file reports
// fewer tests than recorded, when a recorded file did not run, or when the total falls below the recorded total.
// More tests than recorded only prints a note. Record the counts on purpose after adding or removing tests:
// `npm run test:counts` (UPDATE_TEST_COUNTS=1; it writes the manifest only when every test passed).
// TEST_COUNTS_SUBSET=1 checks only the files that ran (a partial run such as `npm run test:unit`).
// TEST_COUNTS_FILE names another manifest (the guard's own test uses fixtures).
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { relative, sep } from 'node:path';

interface TestEvent {
  type: string;
  data?: { file?: string; details?: { type?: string } };
}

interface Manifest {
  total: number;
  files: Record<string, number>;
}

/** The manifest key of a test file: its path from the working directory, compiled `dist/x.js` named as source `x.ts`. */
function keyOf(file: string): string {
  const rel = relative(process.cwd(), file).split(sep).join('/');
  return rel.startsWith('dist/') ? rel.slice('dist/'.length).replace(/\.js$/, '.ts') : rel;
}

/** The problems of a run against the manifest; `subset` skips the checks that need every file to have run. */
function compare(
  counts: Map<string, number>,
  want: Manifest,
  subset: boolean,
): { problems: string[]; notes: string[] } {
  const problems: string[] = [];
  const notes: string[] = [];
  for (const [file, expected] of Object.entries(want.files)) {
    const got = counts.get(file);
    if (got === undefined) {
      if (!subset) problems.push(`${file}: did not run, ${expected} tests expected`);
    } else if (got < expected) problems.push(`${file}: ${got} tests reported, ${expected} expected`);
    else if (got > expected) notes.push(`${file}: ${got} tests reported, ${expected} recorded`);
  }
  for (const [file, got] of counts) if (!(file in want.files)) notes.push(`${file}: ${got} tests, not recorded`);
  const total = [...counts.values()].reduce((a, b) => a + b, 0);
  if (!subset && total < want.total) problems.push(`total: ${total} tests reported, ${want.total} expected`);
  return { problems, notes };
}

async function* testCounts(source: AsyncIterable<TestEvent>): AsyncGenerator<string> {
  const manifestPath = process.env.TEST_COUNTS_FILE ?? 'test/expected-counts.json';
  const counts = new Map<string, number>();
  let failed = false;
  for await (const ev of source) {
    if (ev.type !== 'test:pass' && ev.type !== 'test:fail') continue;
    if (ev.type === 'test:fail') failed = true;
    const file = ev.data?.file;
    if (file === undefined || ev.data?.details?.type === 'suite') continue;
    const key = keyOf(file);
    counts.set(key, (counts.get(key) ?? 0) + 1);
  }
  const hint = `(${manifestPath}; record on purpose with \`npm run test:counts\`)`;
  if (process.env.UPDATE_TEST_COUNTS === '1') {
    if (failed) {
      process.exitCode = 1;
      yield `test counts: not recorded, some tests failed\n`;
      return;
    }
    const files = Object.fromEntries([...counts].sort(([a], [b]) => (a < b ? -1 : 1)));
    const manifest: Manifest = { total: [...counts.values()].reduce((a, b) => a + b, 0), files };
    writeFileSync(manifestPath, JSON.stringify(manifest, null, 2) + '\n');
    yield `test counts: recorded ${manifest.total} tests in ${counts.size} files to ${manifestPath}\n`;
    return;
  }
  if (!existsSync(manifestPath)) {
    process.exitCode = 1;
    yield `test counts: ${manifestPath} is missing ${hint}\n`;
    return;
  }
  const want = JSON.parse(readFileSync(manifestPath, 'utf8')) as Manifest;
  const { problems, notes } = compare(counts, want, process.env.TEST_COUNTS_SUBSET === '1');
  for (const n of notes) yield `test counts: note: ${n}\n`;
  if (problems.length > 0) {
    process.exitCode = 1;
    for (const p of problems) yield `test counts: FAIL ${p} ${hint}\n`;
  }
}

export = testCounts;
