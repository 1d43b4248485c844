// A self-signed test certificate for a given public key (the key/certificate checks only read the public key).
import { generateKeyPairSync, randomBytes, type KeyObject } from 'node:crypto';
import { encodeName, issueCertificate as issue, keyObjectSigner } from '@spire-hw/x509';

const signer = generateKeyPairSync('ec', { namedCurve: 'prime256v1' }).privateKey;

export async function issueCertificate(pub: KeyObject): Promise<Buffer> {
  const now = Date.now();
  return issue(
    {
      serial: Buffer.concat([Buffer.of(0x01), randomBytes(8)]),
      issuer: encodeName('CN=idevid-test-ca'),
      subject: encodeName('CN=idevid-test'),
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 3_600_000),
      spki: pub.export({ type: 'spki', format: 'der' }),
      extensions: [],
    },
    keyObjectSigner(signer),
  );
}
