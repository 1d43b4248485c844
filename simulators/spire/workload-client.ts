// A minimal in-process SPIFFE Workload API client (grpc-js, hand-rolled protobuf for the few messages needed).
// Used when the *calling process* must be the workload (e.g. a WorkloadAttestor fixture that keys on our PID);
// the CLI path (`spire-agent api fetch`) makes the short-lived CLI process the workload instead.
// Messages: go-spiffe v2 proto/spiffe/workload/workload.proto (service `SpiffeWorkloadAPI`, no package).
import * as grpc from '@grpc/grpc-js';

export interface WorkloadX509Svid {
  spiffeId: string;
  /** DER certificates, leaf first. */
  certChainDer: Buffer[];
  keyPkcs8Der: Buffer;
  /** DER CA certificates of the SVID's trust domain bundle. */
  bundleDer: Buffer[];
  hint: string;
}

export interface WorkloadJwtSvid {
  spiffeId: string;
  token: string;
  hint: string;
}

// ---- protobuf wire helpers (varint / length-delimited only; that is all these messages use) ----

function readVarint(buf: Buffer, pos: number): [number, number] {
  let result = 0;
  let shift = 0;
  for (;;) {
    if (pos >= buf.length) throw new Error('truncated varint');
    const b = buf[pos++]!;
    result += (b & 0x7f) * 2 ** shift;
    if ((b & 0x80) === 0) return [result, pos];
    shift += 7;
    if (shift > 63) throw new Error('varint too long');
  }
}

interface Field {
  no: number;
  wire: number;
  bytes?: Buffer;
  varint?: number;
}

function decodeFields(buf: Buffer): Field[] {
  const out: Field[] = [];
  let pos = 0;
  while (pos < buf.length) {
    const [tag, p1] = readVarint(buf, pos);
    pos = p1;
    const no = Math.floor(tag / 8);
    const wire = tag & 7;
    switch (wire) {
      case 0: {
        const [v, p2] = readVarint(buf, pos);
        pos = p2;
        out.push({ no, wire, varint: v });
        break;
      }
      case 1:
        pos += 8;
        break;
      case 2: {
        const [len, p2] = readVarint(buf, pos);
        const end = p2 + len;
        if (end > buf.length) throw new Error('truncated length-delimited field');
        out.push({ no, wire, bytes: buf.subarray(p2, end) });
        pos = end;
        break;
      }
      case 5:
        pos += 4;
        break;
      default:
        throw new Error(`unsupported wire type ${wire}`);
    }
  }
  return out;
}

function encodeVarint(n: number): Buffer {
  const bytes: number[] = [];
  while (n > 0x7f) {
    bytes.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  bytes.push(n);
  return Buffer.from(bytes);
}

function encodeString(no: number, s: string): Buffer {
  const b = Buffer.from(s, 'utf8');
  return Buffer.concat([encodeVarint(no * 8 + 2), encodeVarint(b.length), b]);
}

/** Splits a concatenation of DER structures (as in the Workload API's `x509_svid` / `bundle` fields). */
export function splitDer(buf: Buffer): Buffer[] {
  const out: Buffer[] = [];
  let pos = 0;
  while (pos < buf.length) {
    if (buf[pos] !== 0x30) throw new Error(`expected DER SEQUENCE at offset ${pos}`);
    let len = buf[pos + 1]!;
    let hdr = 2;
    if (len & 0x80) {
      const n = len & 0x7f;
      len = 0;
      for (let i = 0; i < n; i++) len = len * 256 + buf[pos + 2 + i]!;
      hdr = 2 + n;
    }
    out.push(buf.subarray(pos, pos + hdr + len));
    pos += hdr + len;
  }
  return out;
}

function decodeX509SvidResponse(buf: Buffer): WorkloadX509Svid[] {
  const svids: WorkloadX509Svid[] = [];
  for (const f of decodeFields(buf)) {
    if (f.no !== 1 || !f.bytes) continue;
    const s: WorkloadX509Svid = {
      spiffeId: '',
      certChainDer: [],
      keyPkcs8Der: Buffer.alloc(0),
      bundleDer: [],
      hint: '',
    };
    for (const g of decodeFields(f.bytes)) {
      if (!g.bytes) continue;
      if (g.no === 1) s.spiffeId = g.bytes.toString('utf8');
      else if (g.no === 2) s.certChainDer = splitDer(g.bytes);
      else if (g.no === 3) s.keyPkcs8Der = Buffer.from(g.bytes);
      else if (g.no === 4) s.bundleDer = splitDer(g.bytes);
      else if (g.no === 5) s.hint = g.bytes.toString('utf8');
    }
    svids.push(s);
  }
  return svids;
}

function decodeJwtSvidResponse(buf: Buffer): WorkloadJwtSvid[] {
  const svids: WorkloadJwtSvid[] = [];
  for (const f of decodeFields(buf)) {
    if (f.no !== 1 || !f.bytes) continue;
    const s: WorkloadJwtSvid = { spiffeId: '', token: '', hint: '' };
    for (const g of decodeFields(f.bytes)) {
      if (!g.bytes) continue;
      if (g.no === 1) s.spiffeId = g.bytes.toString('utf8');
      else if (g.no === 2) s.token = g.bytes.toString('utf8');
      else if (g.no === 3) s.hint = g.bytes.toString('utf8');
    }
    svids.push(s);
  }
  return svids;
}

function metadata(): grpc.Metadata {
  const md = new grpc.Metadata();
  md.set('workload.spiffe.io', 'true');
  return md;
}

/** A gRPC client for the Workload API at `socketPath` (one channel for any number of calls; close() it when done). */
export function workloadApiClient(socketPath: string): grpc.Client {
  return new grpc.Client(`unix:${socketPath}`, grpc.credentials.createInsecure());
}

/**
 * Opens one FetchX509SVID stream on `client` (the calling process is the workload: each stream is one attestation of
 * it) and resolves with its first X509SVIDResponse, passed through `deserialize`; the stream is then cancelled. Rejects
 * on a stream error or when the stream ends without a response.
 */
export function firstX509SvidResponse<T>(
  client: grpc.Client,
  deserialize: (b: Buffer) => T,
  timeoutMs: number,
): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    let done = false;
    const call = client.makeServerStreamRequest<Buffer, T>(
      '/SpiffeWorkloadAPI/FetchX509SVID',
      (b: Buffer) => b,
      deserialize,
      Buffer.alloc(0),
      metadata(),
      { deadline: Date.now() + timeoutMs },
    );
    call.on('data', (response: T) => {
      if (done) return;
      done = true;
      resolve(response);
      call.cancel();
    });
    call.on('error', (e: Error) => {
      if (!done) {
        done = true;
        reject(e);
      }
    });
    call.on('end', () => {
      if (!done) {
        done = true;
        reject(new Error('Workload API stream ended without a response'));
      }
    });
  });
}

/** One X509SVIDResponse from the Workload API over `socketPath` (the calling Node process is the workload). */
export function fetchX509SvidInProcess(socketPath: string, timeoutMs = 10_000): Promise<WorkloadX509Svid[]> {
  const client = workloadApiClient(socketPath);
  return firstX509SvidResponse(client, decodeX509SvidResponse, timeoutMs).finally(() => client.close());
}

/** FetchJWTSVID over `socketPath` (the calling Node process is the workload). */
export function fetchJwtSvidInProcess(
  socketPath: string,
  audience: string[],
  spiffeId = '',
  timeoutMs = 10_000,
): Promise<WorkloadJwtSvid[]> {
  const client = workloadApiClient(socketPath);
  const req = Buffer.concat([
    ...audience.map((a) => encodeString(1, a)),
    ...(spiffeId ? [encodeString(2, spiffeId)] : []),
  ]);
  return new Promise<WorkloadJwtSvid[]>((resolve, reject) => {
    client.makeUnaryRequest<Buffer, WorkloadJwtSvid[]>(
      '/SpiffeWorkloadAPI/FetchJWTSVID',
      (b: Buffer) => b,
      (b: Buffer) => decodeJwtSvidResponse(b),
      req,
      metadata(),
      { deadline: Date.now() + timeoutMs },
      (err, value) => {
        if (err) reject(err);
        else resolve(value ?? []);
      },
    );
  }).finally(() => client.close());
}
