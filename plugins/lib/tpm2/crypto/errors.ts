// Typed errors for the TPM software-side crypto. Match on `code`, never on message text.

export type TpmCryptoErrorCode =
  | 'unsupported-hash'
  | 'unsupported-curve'
  | 'unsupported-symmetric'
  | 'bad-public-key'
  | 'bad-object-name'
  | 'bad-credential'
  | 'bad-seed'
  | 'bad-signature-encoding'
  | 'key-type-mismatch';

export class TpmCryptoError extends Error {
  readonly code: TpmCryptoErrorCode;
  constructor(code: TpmCryptoErrorCode, message: string) {
    super(message);
    this.name = 'TpmCryptoError';
    this.code = code;
  }
}
