// plugins/tpm-devid-common: Go encoding/json compatibility of the three tpm_devid messages.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import {
  PLUGIN_NAME,
  MAX_ACTIVATED_CREDENTIAL_BYTES,
  decodeAttestationRequest,
  decodeChallengeRequest,
  decodeChallengeResponse,
  encodeAttestationRequest,
  encodeChallengeRequest,
  encodeChallengeResponse,
  WireError,
} from '../../../plugins/tpm-devid-common';

const B = (s: string) => Buffer.from(s, 'hex');

test('encoding: Go field names and order, padded standard base64', () => {
  assert.equal(PLUGIN_NAME, 'tpm_devid');
  const req = { devIdCert: [B('fbff'), B('00')], devIdPub: B('01'), ekCert: Buffer.alloc(0), ekPub: B('0203'), akPub: B('04'), certifiedDevId: B('ff544347'), certificationSignature: B('0014') };
  assert.equal(
    encodeAttestationRequest(req).toString(),
    '{"DevIDCert":["+/8=","AA=="],"DevIDPub":"AQ==","EKCert":"","EKPub":"AgM=","AKPub":"BA==","CertifiedDevID":"/1RDRw==","CertificationSignature":"ABQ="}',
  );
  const back = decodeAttestationRequest(encodeAttestationRequest(req));
  assert.ok(back.ok);
  assert.deepEqual(back.value, req);
  assert.equal(
    encodeChallengeRequest({ devId: B('01'), credActivation: { credential: B('02'), secret: B('03') } }).toString(),
    '{"DevID":"AQ==","CredActivation":{"Credential":"Ag==","Secret":"Aw=="}}',
  );
  assert.equal(encodeChallengeResponse({ devId: B('01'), credActivation: B('02') }).toString(), '{"DevID":"AQ==","CredActivation":"Ag=="}');
});

test('decoding: case-insensitive keys, exact match wins, unknown keys ignored, null = empty, CR/LF in base64 ignored', () => {
  const r = decodeChallengeRequest('{"devid":"AQ==","DEVID":"Ag==","DevID":"Aw==","x":[1,{}],"credactivation":{"CREDENTIAL":"BA\\r\\n==","secret":null}}');
  assert.ok(r.ok);
  assert.deepEqual(r.value.devId, B('03'));
  assert.deepEqual(r.value.credActivation.credential, B('04'));
  assert.equal(r.value.credActivation.secret.length, 0);
  const n = decodeChallengeRequest('{"DevID":"AQ==","CredActivation":null}');
  assert.ok(n.ok);
  assert.equal(n.value.credActivation.credential.length, 0);
  const nl = decodeAttestationRequest('null');
  assert.ok(nl.ok);
  assert.deepEqual(nl.value.devIdCert, []);
  const nulls = decodeAttestationRequest('{"DevIDCert":[null,"AA=="]}');
  assert.ok(nulls.ok);
  assert.deepEqual(nulls.value.devIdCert, [Buffer.alloc(0), B('00')]);
});

test('decoding errors are typed values, never exceptions', () => {
  const cases: [string | Buffer, WireError['kind'], string][] = [
    ['', 'syntax', 'ChallengeResponse'],
    ['{"DevID":', 'syntax', 'ChallengeResponse'],
    ['{"DevID":1}', 'type', 'ChallengeResponse.DevID'],
    ['{"DevID":"AQ="}', 'base64', 'ChallengeResponse.DevID'],
    ['{"DevID":"AQ"}', 'base64', 'ChallengeResponse.DevID'],
    ['{"DevID":"A-_="}', 'base64', 'ChallengeResponse.DevID'],
    [`{"CredActivation":"${Buffer.alloc(MAX_ACTIVATED_CREDENTIAL_BYTES + 1).toString('base64')}"}`, 'size', 'ChallengeResponse.CredActivation'],
    [Buffer.from([0xc3, 0x28]), 'syntax', 'ChallengeResponse'],
  ];
  for (const [input, kind, field] of cases) {
    const r = decodeChallengeResponse(input);
    assert.equal(r.ok, false, String(input));
    if (!r.ok) {
      assert.ok(r.error instanceof WireError);
      assert.equal(r.error.kind, kind, `${String(input)}: ${r.error.message}`);
      assert.equal(r.error.field, field);
    }
  }
  assert.equal((decodeChallengeResponse('') as { error: WireError }).error.message, 'unexpected end of JSON input');
  const exact = decodeChallengeResponse(`{"CredActivation":"${Buffer.alloc(MAX_ACTIVATED_CREDENTIAL_BYTES).toString('base64')}"}`);
  assert.ok(exact.ok, 'exactly at the limit is accepted');
});
