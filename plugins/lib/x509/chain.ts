// Strict X.509 chain verifier (Node has no path builder). Go crypto/x509-like semantics, stricter where noted:
//  - every cert in `roots` is a trust anchor, even if not self-signed (as Go's CertPool); intermediates untrusted;
//  - subject/issuer matched on raw DER Name bytes (as Go), signature verified for each link;
//  - validity at `now` for every cert in the chain, anchor included (as Go);
//  - every issuer (anchor included) must have basicConstraints CA:TRUE [stricter than Go: Go accepts v1 issuers
//    without basicConstraints]; if keyUsage is present it must contain keyCertSign (as Go's CheckSignatureFrom);
//  - pathLenConstraint (number of intermediates below the issuer), as Go;
//  - MD2/MD5/SHA-1 signatures rejected (weak-signature), as Go;
//  - inner and outer signature AlgorithmIdentifiers must be identical (as Go's parser);
//  - unhandled critical extensions rejected, except a per-profile allow-list;
//  - nameConstraints: NOT implemented — any chain whose issuer carries nameConstraints is rejected
//    ('unsupported-name-constraints') instead of being accepted unchecked [deviation from Go, fail-closed];
//  - EKU is not enforced (Go with KeyUsages = Any, as SPIRE uses); no revocation checking;
//  - at most MAX_CHAIN_SIGNATURE_CHECKS (100, Go's maxChainSignatureChecks) candidate signature checks per call,
//    each (child, candidate) signature verified at most once, exact duplicate intermediates dropped, and a candidate
//    with the subject and key (and SAN) of a certificate already in the path not considered (as Go's alreadyInChain);
//  - every key is checked against key-limits.ts when its certificate is parsed, before any signature check uses it
//    ('unsupported-key') [stricter than Go: RSA modulus ≤ 8192 bits, exponent ≤ 2^32-1];
//  - 'ek' profile: the leaf must be a TCG EK certificate (see ekCertificateProblem) unless allowNonTcgEk is set.
import { createHash, KeyObject } from 'node:crypto';
import {
  CertificateParseError,
  KEY_USAGE_KEY_AGREEMENT,
  KEY_USAGE_KEY_CERT_SIGN,
  KEY_USAGE_KEY_ENCIPHERMENT,
  OID,
  ParsedCertificate,
  basicConstraints,
  extKeyUsages,
  getExtension,
  keyUsageBits,
  nameAttributes,
  parseCertificate,
  subjectAltNames,
} from './certificate';
import { children, decodeOid, expectTag, single } from './der';

export type ChainErrorReason =
  | 'malformed'
  | 'expired'
  | 'not-yet-valid'
  | 'untrusted'
  | 'bad-signature'
  | 'weak-signature'
  | 'unsupported-algorithm'
  | 'not-ca'
  | 'bad-key-usage'
  | 'path-len'
  | 'unhandled-critical-extension'
  | 'unsupported-name-constraints'
  | 'chain-too-long'
  | 'unsupported-key'
  | 'too-many-signature-checks'
  | 'not-ek-certificate';

/** Go's maxChainSignatureChecks: candidate signature checks allowed per chain verification. */
export const MAX_CHAIN_SIGNATURE_CHECKS = 100;

/**
 * Why a candidate issuer's key did not verify a certificate's signature, as Go's `CheckSignatureFrom` reports it
 * (see {@link hintErrorText}): the signature does not verify with a key of the type the signature algorithm names,
 * or the candidate's key is of another type than the one the signature algorithm names.
 */
export type ChainHintError =
  | { readonly kind: 'verification'; readonly keyType: 'rsa' | 'ecdsa' | 'ed25519' }
  | {
      readonly kind: 'key-type-mismatch';
      /** Go's PublicKeyAlgorithm name the signature algorithm specifies */
      readonly expected: 'RSA' | 'ECDSA' | 'Ed25519';
      /** Go's type of the candidate's public key, e.g. `*ecdsa.PublicKey` */
      readonly actual: string;
    };

export class ChainError extends Error {
  readonly reason: ChainErrorReason;
  /** index in the candidate chain (0 = leaf) of the certificate the error is about, when known */
  readonly depth: number | undefined;
  /**
   * 'bad-signature' only: the name Go gives the (first) rejected candidate issuer in its UnknownAuthorityError:
   * its subject CommonName, else its first Organization, else `serial:<decimal serial>`.
   */
  readonly hintCandidate: string | undefined;
  /** 'bad-signature' only: why that candidate's key did not verify the signature. */
  readonly hintError: ChainHintError | undefined;
  constructor(
    reason: ChainErrorReason,
    message: string,
    depth?: number,
    hint?: { candidate: string; error: ChainHintError },
  ) {
    super(message);
    this.name = 'ChainError';
    this.reason = reason;
    this.depth = depth;
    this.hintCandidate = hint?.candidate;
    this.hintError = hint?.error;
  }
}

/** Go's text of a {@link ChainHintError} (crypto/x509 checkSignature, crypto/rsa ErrVerification). */
export function hintErrorText(h: ChainHintError): string {
  if (h.kind === 'key-type-mismatch') {
    return `x509: signature algorithm specifies an ${h.expected} public key, but have public key of type ${h.actual}`;
  }
  switch (h.keyType) {
    case 'rsa':
      return 'crypto/rsa: verification error';
    case 'ecdsa':
      return 'x509: ECDSA verification failure';
    case 'ed25519':
      return 'x509: Ed25519 verification failure';
  }
}

/** Go's `%q` of a string (strconv.Quote): printable characters kept, the rest escaped. */
export function goQuote(s: string): string {
  let out = '"';
  for (const ch of s) {
    const cp = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (cp === 0x07) out += '\\a';
    else if (cp === 0x08) out += '\\b';
    else if (cp === 0x0c) out += '\\f';
    else if (cp === 0x0a) out += '\\n';
    else if (cp === 0x0d) out += '\\r';
    else if (cp === 0x09) out += '\\t';
    else if (cp === 0x0b) out += '\\v';
    else if (cp < 0x20 || cp === 0x7f) out += `\\x${cp.toString(16).padStart(2, '0')}`;
    else if ((cp >= 0x80 && cp < 0xa0) || cp === 0xad || (cp >= 0xd800 && cp < 0xe000)) {
      out += `\\u${cp.toString(16).padStart(4, '0')}`;
    } else out += ch;
  }
  return `${out}"`;
}

/** Go's name of a candidate authority in UnknownAuthorityError: CN, else first O, else `serial:<decimal>`. */
function goCandidateName(c: ParsedCertificate): string {
  const attrs = nameAttributes(c.rawSubject);
  const cns = attrs.filter((a) => a.oid === OID.commonName);
  const cn = cns.length > 0 ? decodeDirectoryString(cns[cns.length - 1]!.value) : '';
  if (cn.length > 0) return cn;
  const o = attrs.find((a) => a.oid === ORGANIZATION);
  if (o) return decodeDirectoryString(o.value);
  let serial = c.node.serialNumber;
  try {
    serial = BigInt(`0x${c.node.serialNumber}`).toString(10);
  } catch {
    /* keep Node's hex */
  }
  return `serial:${serial}`;
}
const ORGANIZATION = '2.5.4.10';

export type ChainProfile = 'devid' | 'ek';

export interface VerifyChainInput {
  /** DER of the leaf certificate */
  leaf: Buffer | Uint8Array;
  /** DER of untrusted intermediates (may be empty) */
  intermediates?: ReadonlyArray<Buffer | Uint8Array>;
  /** DER of trust anchors (each is an anchor, self-signed or not) */
  roots: ReadonlyArray<Buffer | Uint8Array>;
  /** verification time; default new Date() */
  now?: Date;
  profile: ChainProfile;
  /** maximum chain length including leaf and anchor; default 8 */
  maxDepth?: number;
  /**
   * 'ek' profile only: accept a leaf that is not recognisably a TCG EK certificate (no TCG EK EKU and no TCG
   * manufacturer/model/version SAN, or a key usage an EK does not have). Default false.
   */
  allowNonTcgEk?: boolean;
}

/** Every verified chain, leaf first, anchor last (DER buffers). */
export type VerifiedChains = Buffer[][];

// Extensions whose semantics the verifier implements or (like Go) deliberately ignores when critical.
const HANDLED_ALWAYS = new Set<string>([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectKeyId,
  OID.authorityKeyId,
  OID.crlDistributionPoints,
  OID.certificatePolicies,
  OID.authorityInfoAccess,
]);

const WEAK_SIG_OIDS = new Set<string>([
  '1.2.840.113549.1.1.2', // md2WithRSA
  '1.2.840.113549.1.1.3', // md4WithRSA
  '1.2.840.113549.1.1.4', // md5WithRSA
  '1.2.840.113549.1.1.5', // sha1WithRSA
  '1.3.14.3.2.29', // sha1WithRSA (OIW)
  '1.2.840.10045.4.1', // ecdsa-with-SHA1
  '1.2.840.10040.4.3', // dsa-with-sha1
]);

const GOOD_SIG_OIDS = new Set<string>([
  '1.2.840.113549.1.1.11', // sha256WithRSA
  '1.2.840.113549.1.1.12', // sha384WithRSA
  '1.2.840.113549.1.1.13', // sha512WithRSA
  '1.2.840.10045.4.3.2', // ecdsa-with-SHA256
  '1.2.840.10045.4.3.3', // ecdsa-with-SHA384
  '1.2.840.10045.4.3.4', // ecdsa-with-SHA512
  '1.3.101.112', // Ed25519
]);
const RSA_PSS = '1.2.840.113549.1.1.10';
const GOOD_PSS_HASHES = new Set<string>(['2.16.840.1.101.3.4.2.1', '2.16.840.1.101.3.4.2.2', '2.16.840.1.101.3.4.2.3']);

function checkSigAlg(c: ParsedCertificate, depth: number): void {
  if (!c.sigAlgRaw.equals(c.tbsSigAlgRaw)) {
    throw new ChainError('malformed', 'inner and outer signature algorithm identifiers differ', depth);
  }
  const oid = c.sigAlgOid;
  if (WEAK_SIG_OIDS.has(oid)) throw new ChainError('weak-signature', `insecure signature algorithm ${oid}`, depth);
  if (GOOD_SIG_OIDS.has(oid)) return;
  if (oid === RSA_PSS) {
    // RSASSA-PSS-params ::= SEQUENCE { hashAlgorithm [0] DEFAULT sha1, ... }
    let hash = '1.3.14.3.2.26';
    try {
      const alg = children(expectTag(single(c.sigAlgRaw), 0x30, 'AlgorithmIdentifier').value);
      const params = alg[1] && alg[1].tag === 0x30 ? children(alg[1].value) : [];
      const h = params.find((p) => p.tag === 0xa0);
      if (h)
        hash = decodeOid(
          expectTag(children(expectTag(children(h.value)[0], 0x30, 'hash AlgId').value)[0], 0x06, 'hash OID').value,
        );
    } catch {
      throw new ChainError('malformed', 'bad RSASSA-PSS parameters', depth);
    }
    if (GOOD_PSS_HASHES.has(hash)) return;
    throw new ChainError('weak-signature', `RSASSA-PSS with hash ${hash}`, depth);
  }
  throw new ChainError('unsupported-algorithm', `unsupported signature algorithm ${oid}`, depth);
}

/** EK profile: critical SAN must contain only directoryName(s) whose attributes are all TCG 2.23.133.2.x. */
function isTcgDirectoryNameSan(c: ParsedCertificate): boolean {
  try {
    const names = subjectAltNames(c);
    if (!names || names.length === 0) return false;
    for (const n of names) {
      if (n.type !== 4) return false;
      const attrs = nameAttributes(single(n.value).raw);
      if (attrs.length === 0 || !attrs.every((a) => a.oid.startsWith(OID.tcgAttributePrefix))) return false;
    }
    return true;
  } catch {
    return false;
  }
}

/** Go marks a critical SAN as handled when it holds at least one DNS/email/IP/URI name. */
function sanHandledGoStyle(c: ParsedCertificate): boolean {
  try {
    return (subjectAltNames(c) ?? []).some((n) => n.type === 1 || n.type === 2 || n.type === 6 || n.type === 7);
  } catch {
    return false;
  }
}

function checkCriticalExtensions(c: ParsedCertificate, depth: number, profile: ChainProfile): void {
  for (const e of c.extensions) {
    if (!e.critical || HANDLED_ALWAYS.has(e.oid)) continue;
    if (e.oid === OID.nameConstraints) continue; // handled (rejected) where it matters: on issuers
    if (e.oid === OID.subjectAltName) {
      if (sanHandledGoStyle(c)) continue;
      if (profile === 'ek' && depth === 0 && isTcgDirectoryNameSan(c)) continue;
    }
    if (e.oid === OID.subjectDirectoryAttributes && profile === 'ek' && depth === 0) continue;
    throw new ChainError('unhandled-critical-extension', `unhandled critical extension ${e.oid}`, depth);
  }
}

function checkValidity(c: ParsedCertificate, now: Date, depth: number): void {
  if (now.getTime() < c.notBefore.getTime()) {
    throw new ChainError('not-yet-valid', `certificate not valid before ${c.notBefore.toISOString()}`, depth);
  }
  if (now.getTime() > c.notAfter.getTime()) {
    throw new ChainError('expired', `certificate expired at ${c.notAfter.toISOString()}`, depth);
  }
}

function checkIntrinsic(c: ParsedCertificate, now: Date, depth: number, profile: ChainProfile): void {
  checkValidity(c, now, depth);
  checkCriticalExtensions(c, depth, profile);
}

/** Issuer-side checks for `issuer` certifying the chain so far (`below` = number of certs below it, leaf included). */
function checkIssuer(issuer: ParsedCertificate, below: number, depth: number): void {
  let bc;
  try {
    bc = basicConstraints(issuer);
  } catch {
    throw new ChainError('malformed', 'bad basicConstraints', depth);
  }
  if (!bc || !bc.ca) throw new ChainError('not-ca', 'issuer is not a CA (basicConstraints CA:TRUE required)', depth);
  let ku;
  try {
    ku = keyUsageBits(issuer);
  } catch {
    throw new ChainError('malformed', 'bad keyUsage', depth);
  }
  if (ku !== undefined && (ku & KEY_USAGE_KEY_CERT_SIGN) === 0) {
    throw new ChainError('bad-key-usage', 'issuer keyUsage lacks keyCertSign', depth);
  }
  if (bc.pathLen !== undefined && below - 1 > bc.pathLen) {
    throw new ChainError('path-len', `pathLenConstraint ${bc.pathLen} exceeded (${below - 1} intermediates)`, depth);
  }
  if (issuer.extensions.some((e) => e.oid === OID.nameConstraints)) {
    throw new ChainError('unsupported-name-constraints', 'nameConstraints are not supported (chain rejected)', depth);
  }
}

/** Go's PublicKeyAlgorithm named by a signature algorithm OID. */
function sigKeyAlgorithm(oid: string): 'RSA' | 'ECDSA' | 'Ed25519' | undefined {
  if (oid.startsWith('1.2.840.113549.1.1.')) return 'RSA';
  if (oid.startsWith('1.2.840.10045.4.')) return 'ECDSA';
  if (oid === '1.3.101.112') return 'Ed25519';
  return undefined;
}

/** Go's type of a parsed public key, by Node key type; undefined for keys Go's x509 would not parse. */
const GO_KEY_TYPE: Record<
  string,
  { alg: 'RSA' | 'ECDSA' | 'Ed25519'; goType: string; keyType: 'rsa' | 'ecdsa' | 'ed25519' }
> = {
  rsa: { alg: 'RSA', goType: '*rsa.PublicKey', keyType: 'rsa' },
  ec: { alg: 'ECDSA', goType: '*ecdsa.PublicKey', keyType: 'ecdsa' },
  ed25519: { alg: 'Ed25519', goType: 'ed25519.PublicKey', keyType: 'ed25519' },
};

/** What Go's CheckSignatureFrom would say about `issuer`'s key not verifying `child`, when we can tell. */
function signatureHint(child: ParsedCertificate, issuer: ParsedCertificate): ChainHintError | undefined {
  const expected = sigKeyAlgorithm(child.sigAlgOid);
  const key = GO_KEY_TYPE[issuer.node.publicKey.asymmetricKeyType ?? ''];
  if (!expected || !key) return undefined;
  if (key.alg !== expected) return { kind: 'key-type-mismatch', expected, actual: key.goType };
  return { kind: 'verification', keyType: key.keyType };
}

function verifyLink(child: ParsedCertificate, issuer: ParsedCertificate, depth: number): void {
  checkSigAlg(child, depth);
  let ok = false;
  try {
    ok = child.node.verify(issuer.node.publicKey);
  } catch {
    ok = false;
  }
  if (!ok) {
    const hint = signatureHint(child, issuer);
    throw new ChainError(
      'bad-signature',
      'certificate signature does not verify with the issuer key',
      depth,
      hint ? { candidate: goCandidateName(issuer), error: hint } : undefined,
    );
  }
}

/** keyIdentifier of the SubjectKeyIdentifier / AuthorityKeyIdentifier extension; empty when absent or malformed. */
function keyId(c: ParsedCertificate, which: 'subject' | 'authority'): Buffer {
  const e = getExtension(c, which === 'subject' ? OID.subjectKeyId : OID.authorityKeyId);
  if (!e) return Buffer.alloc(0);
  try {
    if (which === 'subject') return Buffer.from(expectTag(single(e.value), 0x04, 'SubjectKeyIdentifier').value);
    const kid = children(expectTag(single(e.value), 0x30, 'AuthorityKeyIdentifier').value).find((t) => t.tag === 0x80);
    return kid ? Buffer.from(kid.value) : Buffer.alloc(0);
  } catch {
    return Buffer.alloc(0);
  }
}

/**
 * Go's CertPool.findPotentialParents order: candidates whose SubjectKeyId equals the child's AuthorityKeyId first,
 * then those where only one side has a key id, then the mismatches (stable within each group).
 */
function kidRank(child: ParsedCertificate, cand: ParsedCertificate): number {
  const akid = keyId(child, 'authority');
  const skid = keyId(cand, 'subject');
  if (skid.equals(akid)) return 0;
  if ((skid.length === 0) !== (akid.length === 0)) return 1;
  return 2;
}

function parseOrThrow(der: Buffer | Uint8Array, what: string): ParsedCertificate {
  try {
    return parseCertificate(der);
  } catch (e) {
    if (e instanceof CertificateParseError)
      throw new ChainError(e.reason === 'unsupported-key' ? 'unsupported-key' : 'malformed', `${what}: ${e.message}`);
    throw new ChainError('malformed', `${what}: ${(e as Error).message}`);
  }
}

const REASON_RANK: Record<ChainErrorReason, number> = {
  untrusted: 0,
  'chain-too-long': 1,
  'too-many-signature-checks': 1,
  malformed: 2,
  'unsupported-key': 2,
  'not-ek-certificate': 3,
  'unhandled-critical-extension': 3,
  'unsupported-name-constraints': 3,
  'not-yet-valid': 4,
  expired: 4,
  'not-ca': 5,
  'bad-key-usage': 5,
  'path-len': 5,
  'unsupported-algorithm': 6,
  'weak-signature': 6,
  'bad-signature': 6,
};

/**
 * Builds and verifies every chain leaf → … → anchor. Returns all verified chains (DER, leaf first).
 * Throws ChainError; when several candidate paths fail, the error of the path that got furthest is reported
 * ('untrusted' when no issuer candidate exists at all).
 */
export function verifyChain(input: VerifyChainInput): VerifiedChains {
  const now = input.now ?? new Date();
  const maxDepth = input.maxDepth ?? 8;
  const leaf = parseOrThrow(input.leaf, 'leaf');
  const anchors = input.roots.map((r, i) => parseOrThrow(r, `root ${i}`));
  const parsedInters = (input.intermediates ?? []).map((r, i) => parseOrThrow(r, `intermediate ${i}`));
  // Exact duplicates (of each other, of an anchor, of the leaf) add nothing but paths to try: dropped.
  const inters: ParsedCertificate[] = [];
  for (const c of parsedInters) {
    if (c.der.equals(leaf.der) || anchors.some((a) => a.der.equals(c.der)) || inters.some((x) => x.der.equals(c.der)))
      continue;
    inters.push(c);
  }

  checkIntrinsic(leaf, now, 0, input.profile);

  const chains: ParsedCertificate[][] = [];
  let best: ChainError | undefined;
  const record = (e: ChainError, depth: number) => {
    const score = depth * 100 + REASON_RANK[e.reason];
    const bestScore = best ? (best.depth ?? 0) * 100 + REASON_RANK[best.reason] : -1;
    if (score > bestScore) best = e.depth === undefined ? new ChainError(e.reason, e.message, depth) : e;
  };

  // The leaf itself is an anchor (Go: a certificate present in the root pool verifies as a 1-element chain).
  if (anchors.some((a) => a.der.equals(leaf.der))) chains.push([leaf]);

  // Memoised per (child, candidate): the signature check, and each candidate's own (path-independent) checks.
  const linkMemo = new Map<ParsedCertificate, Map<ParsedCertificate, ChainError | null>>();
  const intrinsicMemo = new Map<ParsedCertificate, ChainError | null>();
  // A memoised error is thrown again with the depth of this occurrence (a certificate can sit at several depths).
  const memoised = (
    memo: Map<ParsedCertificate, ChainError | null>,
    key: ParsedCertificate,
    depth: number,
    f: () => void,
  ): void => {
    let r = memo.get(key);
    if (r === undefined) {
      r = null;
      try {
        f();
      } catch (e) {
        if (!(e instanceof ChainError)) throw e;
        r = e;
      }
      memo.set(key, r);
    }
    if (r) throw r.depth === depth ? r : new ChainError(r.reason, r.message, depth, hintOf(r));
  };
  let signatureChecks = 0;
  let budgetExceeded = false;

  const walk = (chain: ParsedCertificate[]): void => {
    const child = chain[chain.length - 1]!;
    const depth = chain.length; // index the issuer would take
    const candidates: { cert: ParsedCertificate; anchor: boolean }[] = [
      ...anchors.map((c) => ({ cert: c, anchor: true })),
      ...inters.map((c) => ({ cert: c, anchor: false })),
    ]
      .filter((x) => x.cert.rawSubject.equals(child.rawIssuer) && !alreadyInChain(x.cert, chain))
      // anchors before intermediates, each in Go's key-id order (which decides the candidate Go's hint names)
      .map((x, i) => ({ x, key: (x.anchor ? 0 : 3) + kidRank(child, x.cert), i }))
      .sort((a, b) => a.key - b.key || a.i - b.i)
      .map((y) => y.x);
    for (const cand of candidates) {
      if (budgetExceeded) return;
      try {
        if (depth + 1 > maxDepth) throw new ChainError('chain-too-long', `chain longer than ${maxDepth}`, depth);
        // Go counts every candidate whose signature it checks, found or not, against one budget per verification.
        if (++signatureChecks > MAX_CHAIN_SIGNATURE_CHECKS) {
          budgetExceeded = true;
          return;
        }
        let links = linkMemo.get(child);
        if (!links) linkMemo.set(child, (links = new Map()));
        memoised(links, cand.cert, depth - 1, () => verifyLink(child, cand.cert, depth - 1));
        checkIssuer(cand.cert, chain.length, depth);
        memoised(intrinsicMemo, cand.cert, depth, () => checkIntrinsic(cand.cert, now, depth, input.profile));
      } catch (e) {
        if (e instanceof ChainError) {
          record(e, depth);
          continue;
        }
        throw e;
      }
      const next = [...chain, cand.cert];
      if (cand.anchor) chains.push(next);
      else walk(next);
    }
  };
  walk([leaf]);

  if (chains.length > 0) {
    // Checked once the chain is known to verify, so that anything Go rejects is rejected with Go's reason.
    if (input.profile === 'ek' && !input.allowNonTcgEk) {
      const p = ekCertificateProblem(leaf);
      if (p) throw new ChainError('not-ek-certificate', ekProblemText(p), 0);
    }
    return chains.map((c) => c.map((x) => Buffer.from(x.der)));
  }
  if (budgetExceeded) {
    throw new ChainError(
      'too-many-signature-checks',
      'signature check attempts limit reached while verifying certificate chain',
      0,
    );
  }
  if (best) throw best;
  throw new ChainError('untrusted', 'certificate signed by unknown authority', 0);
}

function hintOf(e: ChainError): { candidate: string; error: ChainHintError } | undefined {
  return e.hintCandidate !== undefined && e.hintError !== undefined
    ? { candidate: e.hintCandidate, error: e.hintError }
    : undefined;
}

/**
 * Go's alreadyInChain: `cand` denotes a certificate already in the path when one there has the same subject and the
 * same public key, and either neither has a SAN or both have the same SAN. Reusing it could only make a loop.
 */
function alreadyInChain(cand: ParsedCertificate, chain: readonly ParsedCertificate[]): boolean {
  const candSan = getExtension(cand, OID.subjectAltName);
  for (const c of chain) {
    if (!c.rawSubject.equals(cand.rawSubject) || !c.rawSpki.equals(cand.rawSpki)) continue;
    const san = getExtension(c, OID.subjectAltName);
    if (!candSan && !san) return true;
    if (candSan && san && candSan.value.equals(san.value)) return true;
  }
  return false;
}

/** Why a certificate is not recognisably a TCG EK certificate (TCG EK Credential Profile for TPM 2.0). */
export type EkCertificateProblem =
  | { readonly kind: 'no-tcg-identity' }
  | { readonly kind: 'key-usage-missing' }
  | { readonly kind: 'key-usage'; readonly required: 'keyEncipherment' | 'keyAgreement' }
  | { readonly kind: 'malformed-extension' };

const TCG_SAN_ATTRIBUTES = ['2.23.133.2.1', '2.23.133.2.2', '2.23.133.2.3'] as const;

/**
 * An EK certificate carries the TCG EK EKU (2.23.133.8.1) or the TCG TPM manufacturer, model and version
 * (2.23.133.2.1/.2/.3) in a directoryName SAN, and a keyUsage with keyEncipherment (RSA EK) or keyAgreement (ECC EK):
 * a TPM's EK decrypts (MakeCredential), it is not a signing key. Undefined when the certificate qualifies.
 */
export function ekCertificateProblem(c: ParsedCertificate): EkCertificateProblem | undefined {
  let ekus: string[] | undefined;
  let ku: number | undefined;
  try {
    ekus = extKeyUsages(c);
    ku = keyUsageBits(c);
  } catch {
    return { kind: 'malformed-extension' };
  }
  const hasEku = (ekus ?? []).includes(OID.tcgEkCertificateEku);
  let hasSan = false;
  try {
    for (const n of subjectAltNames(c) ?? []) {
      if (n.type !== 4) continue;
      const oids = new Set(nameAttributes(single(n.value).raw).map((a) => a.oid));
      if (TCG_SAN_ATTRIBUTES.every((o) => oids.has(o))) hasSan = true;
    }
  } catch {
    hasSan = false;
  }
  if (!hasEku && !hasSan) return { kind: 'no-tcg-identity' };
  if (ku === undefined) return { kind: 'key-usage-missing' };
  const required = c.node.publicKey.asymmetricKeyType === 'rsa' ? 'keyEncipherment' : 'keyAgreement';
  if ((ku & (required === 'keyEncipherment' ? KEY_USAGE_KEY_ENCIPHERMENT : KEY_USAGE_KEY_AGREEMENT)) === 0)
    return { kind: 'key-usage', required };
  return undefined;
}

export function ekProblemText(p: EkCertificateProblem): string {
  switch (p.kind) {
    case 'no-tcg-identity':
      return 'not a TCG EK certificate: it has neither the TCG EK extended key usage (2.23.133.8.1) nor the TPM manufacturer, model and version (2.23.133.2.1-3) in its subject alternative name';
    case 'key-usage-missing':
      return 'not a TCG EK certificate: it has no key usage extension';
    case 'key-usage':
      return `not a TCG EK certificate: its key usage lacks ${p.required}`;
    case 'malformed-extension':
      return 'not a TCG EK certificate: malformed key usage or extended key usage extension';
  }
}

// ---- helpers ----

/** Lowercase hex SHA-1 of DER (SPIRE's tpm_devid agent-ID fingerprint and ca:fingerprint selectors). */
export function sha1Hex(der: Buffer | Uint8Array): string {
  return createHash('sha1').update(der).digest('hex');
}

/**
 * DER of every `CERTIFICATE` PEM block in `text`, in order; other block types are skipped (as SPIRE's bundle
 * loading). Malformed base64 inside a CERTIFICATE block is an error (ChainError 'malformed').
 */
export function parsePemCertificates(text: string): Buffer[] {
  const out: Buffer[] = [];
  const re = /-----BEGIN ([A-Z0-9 ]+)-----\r?\n([\s\S]*?)-----END \1-----/g;
  let m: RegExpExecArray | null;
  while ((m = re.exec(text))) {
    if (m[1] !== 'CERTIFICATE') continue;
    const lines = m[2]!.split(/\r?\n/).filter((l) => l.length > 0 && !l.includes(':'));
    const b64 = lines.join('').trim();
    if (!/^[A-Za-z0-9+/]*={0,2}$/.test(b64) || b64.length % 4 !== 0)
      throw new ChainError('malformed', 'bad base64 in PEM CERTIFICATE block');
    out.push(Buffer.from(b64, 'base64'));
  }
  return out;
}

function decodeDirectoryString(t: { tag: number; value: Buffer }): string {
  switch (t.tag) {
    case 0x0c: // UTF8String
    case 0x13: // PrintableString
    case 0x16: // IA5String
    case 0x14: // TeletexString (treated as latin1)
      return t.tag === 0x14 ? t.value.toString('latin1') : t.value.toString('utf8');
    case 0x1e: {
      // BMPString
      const b = Buffer.from(t.value);
      b.swap16();
      return b.toString('utf16le');
    }
    default:
      return t.value.toString('latin1');
  }
}

/** First CommonName of the subject (or of the issuer with which='issuer'); '' when absent (Go's Subject.CommonName). */
export function commonName(der: Buffer | Uint8Array, which: 'subject' | 'issuer' = 'subject'): string {
  const c = parseOrThrow(der, 'certificate');
  const attrs = nameAttributes(which === 'subject' ? c.rawSubject : c.rawIssuer).filter(
    (a) => a.oid === OID.commonName,
  );
  // Go's pkix.Name.FillFromRDNSequence keeps the LAST CN seen.
  const last = attrs[attrs.length - 1];
  return last ? decodeDirectoryString(last.value) : '';
}

/** SPKI DER of a key or certificate. */
function spkiDer(x: KeyObject | Buffer | Uint8Array): Buffer {
  if (x instanceof KeyObject) return x.export({ type: 'spki', format: 'der' });
  return parseOrThrow(x, 'certificate').node.publicKey.export({ type: 'spki', format: 'der' });
}

/**
 * True when both denote the same public key. Each side is a Node public KeyObject or a DER certificate.
 * Comparison is on re-exported SPKI DER (normalizes e.g. RSA exponent encoding / EC point form).
 */
export function spkiEqual(a: KeyObject | Buffer | Uint8Array, b: KeyObject | Buffer | Uint8Array): boolean {
  return spkiDer(a).equals(spkiDer(b));
}

/** The public key of a DER certificate. */
export function certificatePublicKey(der: Buffer | Uint8Array): KeyObject {
  return parseOrThrow(der, 'certificate').node.publicKey;
}

/** TCG TPM attributes from an EK certificate's directoryName SAN (2.23.133.2.1/2/3), if present. */
export function ekTpmInfo(der: Buffer | Uint8Array): { manufacturer?: string; model?: string; version?: string } {
  const c = parseOrThrow(der, 'certificate');
  const out: { manufacturer?: string; model?: string; version?: string } = {};
  let names;
  try {
    names = subjectAltNames(c) ?? [];
  } catch {
    return out;
  }
  for (const n of names) {
    if (n.type !== 4) continue;
    try {
      for (const a of nameAttributes(single(n.value).raw)) {
        const v = decodeDirectoryString(a.value);
        if (a.oid === '2.23.133.2.1') out.manufacturer = v;
        else if (a.oid === '2.23.133.2.2') out.model = v;
        else if (a.oid === '2.23.133.2.3') out.version = v;
      }
    } catch {
      /* ignore malformed directoryName */
    }
  }
  return out;
}
