// The SDK's metrics buffer: recorded calls reach the Metrics host service in batches with their labels, the buffer is
// bounded, a failing host service is counted and logged once and never surfaces, no Metrics means no-op.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { MetricsBuffer, createLogger, type Metrics } from '@spire-hw/sdk';

interface Call {
  method: string;
  key: string[];
  val: number;
  labels: Array<{ name: string; value: string }>;
}

function recorder(fail = false): Metrics & { calls: Call[] } {
  const calls: Call[] = [];
  const rec = (method: string) => async (r: { key: string[]; val?: number; labels?: Call['labels'] }) => {
    if (fail) throw new Error('host service down');
    calls.push({ method, key: r.key, val: r.val ?? 0, labels: r.labels ?? [] });
  };
  return {
    calls,
    setGauge: rec('SetGauge'),
    emitKey: rec('EmitKey'),
    incrCounter: rec('IncrCounter'),
    addSample: rec('AddSample'),
    measureSince: rec('MeasureSince'),
  };
}

function logs() {
  const lines: Array<Record<string, unknown>> = [];
  return { lines, log: createLogger({ level: 'trace', sink: (l) => lines.push(JSON.parse(l)) }) };
}

test('counters are summed per key and labels, gauges keep the last value, samples are sent one by one', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 60_000 });
  const m = recorder();
  b.bind(m);
  for (let i = 0; i < 5; i++) b.incrCounter(['p', 'c'], 1, [{ name: 'tier', value: 'session' }]);
  b.incrCounter(['p', 'c'], 2, [{ name: 'tier', value: 'device' }]);
  b.setGauge(['p', 'g'], 3);
  b.setGauge(['p', 'g'], 7);
  b.addSample(['p', 's'], 1.5);
  b.measureSince(['p', 's'], performance.now() - 20);
  assert.equal(m.calls.length, 0, 'nothing is sent synchronously');
  await b.flush();
  const counters = m.calls.filter((c) => c.method === 'IncrCounter');
  assert.deepEqual(counters.map((c) => [c.labels[0]!.value, c.val]).sort(), [
    ['device', 2],
    ['session', 5],
  ]);
  assert.deepEqual(
    m.calls.filter((c) => c.method === 'SetGauge').map((c) => c.val),
    [7],
  );
  const samples = m.calls.filter((c) => c.method === 'AddSample').map((c) => c.val);
  assert.equal(samples.length, 2);
  assert.equal(samples[0], 1.5);
  assert.ok(samples[1]! >= 19, `measureSince sends the elapsed ms computed locally (${samples[1]})`);
  assert.equal(b.stats().buffered, 0);
});

test('the buffer is bounded: beyond maxEntries records are dropped and counted', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 60_000, maxEntries: 3 });
  const m = recorder();
  b.bind(m);
  for (let i = 0; i < 10; i++) b.addSample(['p', 's'], i);
  for (let i = 0; i < 10; i++) b.incrCounter(['p', `c${i}`]);
  assert.equal(b.stats().buffered, 6);
  assert.equal(b.stats().dropped, 14);
  await b.flush();
  assert.equal(m.calls.length, 6);
});

test('the timer flushes without being asked', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 20 });
  const m = recorder();
  b.bind(m);
  b.incrCounter(['p', 'c']);
  const until = Date.now() + 5_000;
  while (m.calls.length === 0 && Date.now() < until) await new Promise((r) => setTimeout(r, 10));
  assert.equal(m.calls.length, 1);
});

test('a failing host service is counted and logged once; recording still returns at once', async () => {
  const { log, lines } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 60_000 });
  b.bind(recorder(true));
  for (let round = 0; round < 3; round++) {
    b.incrCounter(['p', 'c']);
    b.addSample(['p', 's'], 1);
    await b.flush();
  }
  assert.equal(b.stats().errors, 6);
  assert.equal(b.stats().sent, 0);
  assert.equal(lines.filter((l) => String(l['@message']).includes('emitting a metric')).length, 1);
});

test('a host service that never answers does not hold records forever (call deadline)', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 60_000, callTimeoutMs: 50 });
  const hang = recorder();
  hang.incrCounter = () => new Promise(() => undefined);
  b.bind(hang);
  b.incrCounter(['p', 'c']);
  const t0 = Date.now();
  await b.flush();
  assert.ok(Date.now() - t0 < 2_000);
  assert.equal(b.stats().errors, 1);
});

test('a hung host costs dropped records, not memory: at most 8 calls at a time and 64 left open in all', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log, flushIntervalMs: 60_000, callTimeoutMs: 20, maxSamples: 100 });
  const hang = recorder();
  let started = 0;
  const settle: Array<() => void> = [];
  hang.addSample = () => {
    started++;
    return new Promise<void>((r) => settle.push(r)); // never answers until the test lets it
  };
  b.bind(hang);
  for (let round = 0; round < 3; round++) {
    for (let i = 0; i < 150; i++) b.addSample(['p', 's'], i);
    const f = b.flush();
    await new Promise((r) => setImmediate(r));
    if (round === 0)
      assert.equal(started, 8, 'eight calls at once; the next waits for one to end or pass its deadline');
    await f;
  }
  assert.equal(started, 64, 'no call is started while 64 are still open');
  const st = b.stats();
  assert.equal(st.dropped, 3 * 150, 'every record was dropped and counted: queue bound, open-call bound, or deadline');
  assert.equal(st.errors, 64, 'the 64 started calls passed their deadline');
  for (const r of settle) r();
  await new Promise((r) => setImmediate(r));
  for (let i = 0; i < 5; i++) b.addSample(['p', 's'], i);
  await b.flush();
  assert.equal(started, 69, 'once the host answered, calls flow again');
});

test('without a Metrics host service every call is a no-op', async () => {
  const { log } = logs();
  const b = new MetricsBuffer({ log });
  b.bind(undefined);
  b.incrCounter(['p', 'c']);
  b.addSample(['p', 's'], 1);
  assert.deepEqual(b.stats(), { dropped: 0, sent: 0, errors: 0, buffered: 0 });
});
