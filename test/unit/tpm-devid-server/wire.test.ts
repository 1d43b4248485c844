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
} from '@spire-hw/devid';

const B = (s: string) => Buffer.from(s, 'hex');

test('encoding: Go field names and order, padded standard base64', () => {
  assert.equal(PLUGIN_NAME, 'tpm_devid');
  const req = {
    devIdCert: [B('fbff'), B('00')],
    devIdPub: B('01'),
    ekCert: Buffer.alloc(0),
    ekPub: B('0203'),
    akPub: B('04'),
    certifiedDevId: B('ff544347'),
    certificationSignature: B('0014'),
  };
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
  assert.equal(
    encodeChallengeResponse({ devId: B('01'), credActivation: B('02') }).toString(),
    '{"DevID":"AQ==","CredActivation":"Ag=="}',
  );
});

test('decoding: case-insensitive keys, exact match wins, unknown keys ignored, null = empty, CR/LF in base64 ignored', () => {
  const r = decodeChallengeRequest(
    '{"devid":"AQ==","DEVID":"Ag==","DevID":"Aw==","x":[1,{}],"credactivation":{"CREDENTIAL":"BA\\r\\n==","secret":null}}',
  );
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
    [
      `{"CredActivation":"${Buffer.alloc(MAX_ACTIVATED_CREDENTIAL_BYTES + 1).toString('base64')}"}`,
      'size',
      'ChallengeResponse.CredActivation',
    ],
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
  const exact = decodeChallengeResponse(
    `{"CredActivation":"${Buffer.alloc(MAX_ACTIVATED_CREDENTIAL_BYTES).toString('base64')}"}`,
  );
  assert.ok(exact.ok, 'exactly at the limit is accepted');
});

// Expected messages below were produced by Go 1.26's encoding/json (Unmarshal into the tpmdevid structs).
test('decoding: a []byte may be a JSON array of integer literals 0..255 (null = 0), as in Go', () => {
  const a = decodeAttestationRequest(
    '{"DevIDCert":[[1,2],"AQI=",null,[]],"DevIDPub":[0,255,null],"EKCert":[5],"EKPub":[],"AKPub":[7],"CertifiedDevID":[255],"CertificationSignature":[0, 20]}',
  );
  assert.ok(a.ok);
  assert.deepEqual(a.value, {
    devIdCert: [B('0102'), B('0102'), Buffer.alloc(0), Buffer.alloc(0)],
    devIdPub: B('00ff00'),
    ekCert: B('05'),
    ekPub: Buffer.alloc(0),
    akPub: B('07'),
    certifiedDevId: B('ff'),
    certificationSignature: B('0014'),
  });
  const c = decodeChallengeRequest('{"DevID":[1,2],"CredActivation":{"Credential":[3],"Secret":"BA=="}}');
  assert.ok(c.ok);
  assert.deepEqual(c.value, { devId: B('0102'), credActivation: { credential: B('03'), secret: B('04') } });
  const r = decodeChallengeResponse('{"DevID":[1],"CredActivation":[2,3]}');
  assert.ok(r.ok);
  assert.deepEqual(r.value, { devId: B('01'), credActivation: B('0203') });
});

test("decoding: bad array elements get Go's wording (number literal as written, element type uint8)", () => {
  const A = 'Go struct field AttestationRequest';
  const cases: [string, string][] = [
    ['{"DevIDPub":[256]}', `json: cannot unmarshal number 256 into ${A}.DevIDPub of type uint8`],
    ['{"DevIDPub":[-1]}', `json: cannot unmarshal number -1 into ${A}.DevIDPub of type uint8`],
    ['{"DevIDPub":[-0]}', `json: cannot unmarshal number -0 into ${A}.DevIDPub of type uint8`],
    ['{"DevIDPub":[1.0]}', `json: cannot unmarshal number 1.0 into ${A}.DevIDPub of type uint8`],
    ['{"DevIDPub":[1e0]}', `json: cannot unmarshal number 1e0 into ${A}.DevIDPub of type uint8`],
    [
      '{"DevIDPub":[99999999999999999999]}',
      `json: cannot unmarshal number 99999999999999999999 into ${A}.DevIDPub of type uint8`,
    ],
    ['{"EKPub":["a"]}', `json: cannot unmarshal string into ${A}.EKPub of type uint8`],
    ['{"EKPub":[true]}', `json: cannot unmarshal bool into ${A}.EKPub of type uint8`],
    ['{"AKPub":[[1]]}', `json: cannot unmarshal array into ${A}.AKPub of type uint8`],
    ['{"AKPub":[{}]}', `json: cannot unmarshal object into ${A}.AKPub of type uint8`],
    ['{"DevIDPub":[300,"x"]}', `json: cannot unmarshal number 300 into ${A}.DevIDPub of type uint8`],
    // DevIDCert elements: Go names the field without an index
    ['{"DevIDCert":[[1,256]]}', `json: cannot unmarshal number 256 into ${A}.DevIDCert of type uint8`],
    ['{"DevIDCert":[[[1]]]}', `json: cannot unmarshal array into ${A}.DevIDCert of type uint8`],
    ['{"DevIDCert":[5]}', `json: cannot unmarshal number into ${A}.DevIDCert of type []uint8`],
    ['{"DevIDCert":"x"}', `json: cannot unmarshal string into ${A}.DevIDCert of type [][]uint8`],
    ['{"DevIDPub":true}', `json: cannot unmarshal bool into ${A}.DevIDPub of type []uint8`],
    ['true', 'json: cannot unmarshal bool into Go value of type tpmdevid.AttestationRequest'],
    // the first error in document order, whatever the field order
    ['{"EKPub":[999],"DevIDPub":[1000]}', `json: cannot unmarshal number 999 into ${A}.EKPub of type uint8`],
    ['{"DevIDPub":5,"devidpub":"AAA="}', `json: cannot unmarshal number into ${A}.DevIDPub of type []uint8`],
  ];
  for (const [input, msg] of cases) {
    const res = decodeAttestationRequest(input);
    assert.equal(res.ok, false, input);
    if (!res.ok) {
      assert.equal(res.error.message, msg, input);
      assert.equal(res.error.kind, 'type', input);
    }
  }
  const cr = decodeChallengeRequest('{"CredActivation":{"Credential":[256]}}');
  assert.ok(!cr.ok);
  assert.equal(
    cr.error.message,
    'json: cannot unmarshal number 256 into Go struct field CredActivation.CredActivation.Credential of type uint8',
  );
  const rr = decodeChallengeResponse('{"DevID":[1.5]}');
  assert.ok(!rr.ok);
  assert.equal(
    rr.error.message,
    'json: cannot unmarshal number 1.5 into Go struct field ChallengeResponse.DevID of type uint8',
  );
});

test('decoding: repeated keys apply in document order (last wins), arrays count against the byte limits, Go max depth', () => {
  const last = decodeChallengeResponse('{"DevID":"AQ==","devid":"Ag=="}');
  assert.ok(last.ok);
  assert.deepEqual(last.value.devId, B('02'));
  const merged = decodeChallengeRequest('{"CredActivation":{"Credential":[1]},"credactivation":{"secret":[2]}}');
  assert.ok(merged.ok);
  assert.deepEqual(merged.value.credActivation, { credential: B('01'), secret: B('02') });
  const at = decodeChallengeResponse(
    `{"CredActivation":[${new Array(MAX_ACTIVATED_CREDENTIAL_BYTES).fill(1).join(',')}]}`,
  );
  assert.ok(at.ok);
  const over = decodeChallengeResponse(
    `{"CredActivation":[${new Array(MAX_ACTIVATED_CREDENTIAL_BYTES + 1).fill(1).join(',')}]}`,
  );
  assert.ok(!over.ok);
  assert.equal(over.error.kind, 'size');
  assert.equal(over.error.field, 'ChallengeResponse.CredActivation');
  // Go's scanner refuses nesting deeper than 10000 (here in an ignored key); 10000 is fine.
  const nest = (n: number) => `{"x":["]]\\"[[",${'['.repeat(n - 2)}${']'.repeat(n - 2)}]}`;
  assert.ok(decodeAttestationRequest(nest(10000)).ok);
  const deep = decodeAttestationRequest(nest(10001));
  assert.ok(!deep.ok);
  assert.equal(deep.error.message, "invalid character '[' exceeded max depth");
});
