// Issue 12, finding 1: a DevID "chain" whose intermediates all share one Name and one key made the path search try
// every ordering of them (13,699 signature checks for 7 intermediates; 152 s of CPU with a ~3070-bit RSA exponent).
// Now: at most 100 signature checks per verification (Go's maxChainSignatureChecks), (child, candidate) results
// memoised, duplicate intermediates dropped, a certificate already in the path (same subject and key) not reused,
// and keys outside the limits refused before any signature is checked with them.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { ChainError, verifyChain } from '@spire-hw/x509';
import { countSignatureChecks, craftCert, craftKey, loopChain, type CraftKey } from './crafted';

const MAX_SIGNATURE_CHECKS = 100;

function attack(key: CraftKey, n: number, root: Buffer) {
  const c = loopChain(key, n);
  return countSignatureChecks(() =>
    verifyChain({ leaf: c.leaf, intermediates: c.intermediates, roots: [root], profile: 'devid' }),
  );
}

test('EC P-256 loop chains (1..7 intermediates): bounded signature checks and CPU, rejected as untrusted', (t) => {
  const rootKey = craftKey('ec256');
  const root = craftCert({ subject: 'devid-root', issuer: 'devid-root', signer: rootKey, ca: true });
  const key = craftKey('ec256');
  for (let n = 1; n <= 7; n++) {
    const r = attack(key, n, root);
    t.diagnostic(`EC n=${n}: ${r.checks} signature checks, ${r.cpuMs.toFixed(0)} ms CPU`);
    assert.ok(r.error instanceof ChainError, String(r.error));
    assert.ok(r.checks <= MAX_SIGNATURE_CHECKS, `n=${n}: ${r.checks} signature checks`);
    assert.ok(r.cpuMs < 2000, `n=${n}: ${r.cpuMs} ms CPU`);
  }
});

test('RSA-3072 with a ~3070-bit public exponent: refused before any signature check', (t) => {
  const rootKey = craftKey('ec256');
  const root = craftCert({ subject: 'devid-root', issuer: 'devid-root', signer: rootKey, ca: true });
  const key = craftKey('rsa-bige');
  const n = Number(process.env.CHAIN_DOS_RSA_N ?? 7);
  const r = attack(key, n, root);
  t.diagnostic(`RSA-bige n=${n}: ${r.checks} signature checks, ${r.cpuMs.toFixed(0)} ms CPU`);
  assert.ok(r.error instanceof ChainError, String(r.error));
  assert.equal(r.error.reason, 'unsupported-key');
  assert.equal(r.checks, 0);
  assert.ok(r.cpuMs < 2000, `${r.cpuMs} ms CPU`);
});
