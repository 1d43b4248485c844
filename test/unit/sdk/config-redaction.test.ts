// Issue 12, finding 3, in the SDK's Config plumbing: before buildConfig runs, values under secret keys are
// registered with the redactor (whether or not the text parses), and Configure's status, Validate's notes and every
// status a handler returns are redacted like log lines, so that even a plugin that copies the raw text into a
// message does not send the secret to SPIRE.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import type { ServiceError } from '@grpc/grpc-js';
import { startInProcess, unary } from '@spire-hw/sdk/testing';
import { workloadAttestor, type ConfigInput } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { WorkloadAttestorClient } from '@spire-hw/proto/spire/plugin/agent/workloadattestor/v1/workloadattestor';

/** A careless plugin: it quotes the raw configuration in its errors, notes and handler failures. */
class Careless {
  readonly secretConfigKeys = ['hsm_code'];
  lastText = '';
  buildConfig(input: ConfigInput, status: ConfigStatus): object | undefined {
    this.lastText = input.hclText;
    if (input.hclText.includes('ok = true')) {
      status.notes.push(`accepted ${input.hclText}`);
      return {};
    }
    status.errors.push(`cannot use ${JSON.stringify(input.hclText)}`);
    return undefined;
  }
  async attest(): Promise<{ selectorValues: string[] }> {
    throw new Error(`attest failed with config ${this.lastText}`);
  }
}

test('Configure status, Validate notes, logs and handler statuses never carry a value under a secret key', async () => {
  const impl = new Careless();
  const p = await startInProcess(workloadAttestor(impl));
  after(() => p.close());
  const cases: [string, string][] = [
    ['pin = Qx7Wv2Kz9J', 'Qx7Wv2Kz9J'], // unquoted: does not parse
    ['devid_password "Jz4Kq8Vw2X"', 'Jz4Kq8Vw2X'], // missing '='
    ['{"owner_hierarchy_password": Wk2Jx9Qv7Z}', 'Wk2Jx9Qv7Z'], // JSON, unquoted
    ['hsm_code = "Vq9Zk3Wx6J', 'Vq9Zk3Wx6J'], // a key only the plugin knows is secret, unterminated
    ['join_token = <<EOT\nXk5Qz8Jw3V\n', 'Xk5Qz8Jw3V'], // unterminated heredoc
  ];
  for (const [hcl, secret] of cases) {
    const v = await p.conn.validate(hcl);
    assert.equal(v.valid, false);
    assert.ok(v.notes.length > 0);
    let details = '';
    await assert.rejects(p.configure(hcl), (e) => {
      details = (e as ServiceError).details;
      return true;
    });
    assert.match(details, /\[REDACTED\]/, hcl);
    const all = [details, ...v.notes, JSON.stringify(p.logs)].join('\n');
    assert.ok(!all.includes(secret), `${hcl}: ${all}`);
  }

  // accepted configuration: notes are logged (redacted) and a handler error quoting the config is redacted
  await p.configure('ok = true\npin = "Kw8Zq2Xv5J"\n');
  assert.ok(p.logs.some((l) => typeof l['@message'] === 'string' && (l['@message'] as string).startsWith('accepted')));
  let attestErr = '';
  await assert.rejects(unary(p.client(WorkloadAttestorClient), 'attest', { pid: 1 }), (e) => {
    attestErr = (e as ServiceError).details;
    return true;
  });
  assert.match(attestErr, /attest failed with config/);
  assert.ok(!attestErr.includes('Kw8Zq2Xv5J'), attestErr);
  assert.ok(!JSON.stringify(p.logs).includes('Kw8Zq2Xv5J'));
});
