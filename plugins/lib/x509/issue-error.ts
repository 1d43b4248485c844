// The one error the certificate, CSR and Name builders throw (issue.ts, name.ts, csr.ts's createCsr).

/**
 * 'unsupported-key': a key (the issuer's, the subject's, or a signer's) outside the key limits or of a kind we cannot
 * sign with; 'invalid-template': a template, extension or request that would not make a conforming certificate or
 * CSR; 'invalid-name': a DN string or raw Name we cannot encode or read; 'signer-failed': the signer threw, returned
 * something that is not a signature of its algorithm, or (createCsr) a signature the request's key does not verify.
 */
export type X509IssueErrorReason = 'unsupported-key' | 'invalid-template' | 'invalid-name' | 'signer-failed';

export class X509IssueError extends Error {
  readonly reason: X509IssueErrorReason;
  constructor(message: string, reason: X509IssueErrorReason, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'X509IssueError';
    this.reason = reason;
  }
}
