/** tpm2-tools TCTI strings as TPM locations (device.ts parseTcti): the forms our transports speak, clear refusals. */
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { TpmLocationError, describeLocation, parseTcti } from '@spire-hw/devid';

function refused(tcti: string, code: TpmLocationError['code'], text: string | RegExp): void {
  assert.throws(
    () => parseTcti(tcti),
    (e: unknown) => {
      assert.ok(e instanceof TpmLocationError, `${tcti}: a TpmLocationError`);
      assert.equal(e.code, code, tcti);
      if (typeof text === 'string') assert.ok(e.message.includes(text), `${tcti}: ${e.message}`);
      else assert.match(e.message, text);
      return true;
    },
  );
}

describe('parseTcti', () => {
  test('device: a path, and bare device meaning /dev/tpmrm0', () => {
    assert.deepEqual(parseTcti('device:/dev/tpmrm0'), { kind: 'device', path: '/dev/tpmrm0' });
    assert.deepEqual(parseTcti('device:/dev/tpm0'), { kind: 'device', path: '/dev/tpm0' });
    assert.deepEqual(parseTcti('device'), { kind: 'device', path: '/dev/tpmrm0' });
    assert.deepEqual(parseTcti('device:'), { kind: 'device', path: '/dev/tpmrm0' });
  });

  test('swtpm: TCP host and port (defaults localhost:2321), or a unix socket path', () => {
    assert.deepEqual(parseTcti('swtpm:host=127.0.0.1,port=2331'), { kind: 'tcp', host: '127.0.0.1', port: 2331 });
    assert.deepEqual(parseTcti('swtpm:port=2331'), { kind: 'tcp', host: 'localhost', port: 2331 });
    assert.deepEqual(parseTcti('swtpm:host=tpm.lab'), { kind: 'tcp', host: 'tpm.lab', port: 2321 });
    assert.deepEqual(parseTcti('swtpm'), { kind: 'tcp', host: 'localhost', port: 2321 });
    assert.deepEqual(parseTcti('swtpm:host=::1,port=2321'), { kind: 'tcp', host: '::1', port: 2321 });
    assert.deepEqual(parseTcti('swtpm:host=[::1]'), { kind: 'tcp', host: '::1', port: 2321 });
    assert.deepEqual(parseTcti('swtpm:path=/run/swtpm/sock'), { kind: 'unix', path: '/run/swtpm/sock' });
    assert.equal(describeLocation(parseTcti('swtpm:host=::1,port=2321')), 'tcp://[::1]:2321');
  });

  test('malformed strings: each names what is wrong', () => {
    refused('swtpm:port=0', 'bad-tcti', 'port must be a number from 1 to 65535, got "0"');
    refused('swtpm:port=65536', 'bad-tcti', 'port must be a number from 1 to 65535');
    refused('swtpm:port=23x', 'bad-tcti', 'port must be a number');
    refused('swtpm:host=a,host=b', 'bad-tcti', 'host= given twice');
    refused('swtpm:host=', 'bad-tcti', 'host= is empty');
    refused('swtpm:localhost:2321', 'bad-tcti', '"localhost:2321" is not key=value (keys: host, port, path)');
    refused('swtpm:hostname=a', 'bad-tcti', 'unknown key "hostname"');
    refused('swtpm:path=/s,port=1', 'bad-tcti', 'path= excludes host= and port=');
    refused('device:path=/dev/tpm0', 'bad-tcti', 'the device TCTI takes a path');
    refused(':/dev/tpm0', 'bad-tcti', 'no TCTI name');
    refused('', 'bad-tcti', 'no TCTI name');
  });

  test('TCTIs our transports cannot speak are refused, mssim with the swtpm alternative', () => {
    refused(
      'mssim:host=localhost,port=2321',
      'unsupported-tcti',
      /mssim protocol .* is not supported; run swtpm .* swtpm:host=<h>,port=<p>/,
    );
    refused('mssim', 'unsupported-tcti', 'not supported');
    refused('tabrmd:bus_type=session', 'unsupported-tcti', 'the "tabrmd" TCTI is not supported');
    refused('libtpms', 'unsupported-tcti', 'the "libtpms" TCTI is not supported');
  });
});
