/**
 * Independent check with OpenSC pkcs11-tool (not our code): keys the plugin generated are private token objects that
 * are sensitive and never extractable, each with a public key of the same CKA_ID, and the label scheme is as documented.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { Pkcs11KeyManagerCore } from '../../../plugins/pkcs11-keymanager/keymanager';
import { buildConfig } from '../../../plugins/pkcs11-keymanager/config';
import type { SoftHsm } from '../../../simulators/softhsm2';
import { recordingLogger, softhsmForThisProcess } from './helpers';

let hsm: SoftHsm;
before(() => {
  hsm = softhsmForThisProcess({ tokens: [{ label: 'tool-check', pin: '86427531' }] });
});
after(() => hsm.cleanup());

interface ToolObject {
  kind: string;
  label?: string;
  id?: string;
  access?: string;
  usage?: string;
}

function parseListObjects(out: string): ToolObject[] {
  const objs: ToolObject[] = [];
  let cur: ToolObject | undefined;
  for (const line of out.split('\n')) {
    const head = /^(Private Key|Public Key|Data|Certificate) object/i.exec(line);
    if (head) {
      cur = { kind: head[1]! };
      objs.push(cur);
      continue;
    }
    const kv = /^\s+(label|ID|Access|Usage):\s+(.*)$/.exec(line);
    if (kv && cur) {
      const k = kv[1]!.toLowerCase() as 'label' | 'id' | 'access' | 'usage';
      cur[k] = kv[2]!.trim().replace(/^'(.*)'$/, '$1');
    }
  }
  return objs;
}

test('pkcs11-tool --list-objects sees sensitive, never-extractable private keys with matching public keys', async () => {
  const errs: string[] = [];
  const cfg = buildConfig(
    {
      trustDomain: 'example.org',
      hclText: JSON.stringify({
        module_path: hsm.modulePath,
        token_label: hsm.label,
        pin: hsm.pin,
        key_identifier_value: 'tool-srv',
      }),
      coreConfigurationPresent: true,
    },
    { errors: errs, notes: [] },
  );
  assert.deepEqual(errs, []);
  const km = new Pkcs11KeyManagerCore(recordingLogger());
  await km.apply(cfg!);
  await km.generateKey({ keyId: 'x509-CA-A', keyType: 1 });
  await km.generateKey({ keyId: 'JWT-Signer-A', keyType: 3 });
  await km.close(); // release the module before another process inspects the token

  const out = hsm.pkcs11Tool(['--token-label', hsm.label, '--login', '--pin', hsm.pin, '--list-objects']);
  const objs = parseListObjects(out);
  const privs = objs.filter((o) => o.kind.toLowerCase() === 'private key');
  assert.equal(privs.length, 2, out);
  for (const p of privs) {
    assert.match(p.label ?? '', /^spire\/example\.org\/tool-srv\/(x509-CA-A|JWT-Signer-A)$/);
    const access = (p.access ?? '').split(',').map((s) => s.trim());
    assert.ok(access.includes('sensitive'), `sensitive: ${p.access}`);
    assert.ok(access.includes('always sensitive'), `always sensitive: ${p.access}`);
    assert.ok(access.includes('never extractable'), `never extractable: ${p.access}`);
    assert.ok(!access.includes('extractable'), `not extractable: ${p.access}`);
    assert.ok(access.includes('local'), `generated on the token: ${p.access}`);
    assert.match(p.usage ?? '', /sign/);
    assert.doesNotMatch(p.usage ?? '', /decrypt|unwrap|derive/);
    assert.equal(p.id?.length, 32, '16-byte CKA_ID');
    const pub = objs.find((o) => o.kind.toLowerCase() === 'public key' && o.id === p.id);
    assert.ok(pub, `public key with ID ${p.id}`);
    assert.equal(pub.label, p.label);
  }
  // without login the private keys are invisible (CKA_PRIVATE)
  const anon = parseListObjects(hsm.pkcs11Tool(['--token-label', hsm.label, '--list-objects']));
  assert.equal(anon.filter((o) => o.kind.toLowerCase() === 'private key').length, 0);
});
