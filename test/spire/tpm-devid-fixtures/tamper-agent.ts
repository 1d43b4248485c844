#!/usr/bin/env node
// Test fixture: an agent NodeAttestor "tpm_devid" that runs the real TPM flow (our agent's TPM steps from
// plugins/tpm-devid-agent/devid-tpm.ts, same configuration keys) and then tampers with one thing, chosen by the
// plugin arguments (`plugin_args = [script, "--mode", <mode>, ...]`). Used by test/spire/tpm-devid-reject.test.ts to
// show that the server rejects each attack through real SPIRE. Every TPM object is flushed on every path.
//
// Modes:
//   honest                    the normal flow (sanity check of the fixture itself)
//   swap-devid-pub            DevIDPub = the TPM key of devid_priv/pub_path (certified by the AK), DevIDCert = a
//                             certificate for a *software* key (--soft-key PEM), PoP signed by that software key:
//                             SPIRE's gap: its server's devid.go never ties DevIDPub to the certificate
//                             (residency proven for one key, possession for another)
//   unrestricted-ak           the key that certifies the DevID is an unrestricted signing key (no `restricted`)
//   wrong-nonce               the DevID key signs a different nonce (first byte flipped)
//   record --file F           honest, and the challenge response is saved to F
//   replay --file F           sends the response saved in F instead of answering the new challenge
//   other-ek --other-tpm S    EKCert/EKPub of another (genuine) TPM at socket S; the credential is then answered by
//                             this TPM (which cannot: its answer is sent anyway, or 32 random bytes if it fails)
//   oversize-ekcert           EKCert = 10,000 bytes
//   malformed-payload         payload {"DevIDCert": 5, ...}
//   malformed-response        honest payload, response {"DevID": 5, ...}
//   array-response            honest payload, response {"DevID": [1], ...} (Go's encoding/json decodes a JSON array of
//                             numbers into []byte; see the reject test)
import { createPrivateKey, randomBytes, sign as cryptoSign } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import {
  PluginError,
  Code,
  serve,
  agentNodeAttestor,
  type AgentNodeAttestor,
  type CallContext,
  type DuplexStream,
} from '@spire-hw/sdk';
import type {
  Challenge,
  PayloadOrChallengeResponse,
} from '@spire-hw/proto/spire/plugin/agent/nodeattestor/v1/nodeattestor';
import { TpmScope, type Tpm, templateBytes } from '@spire-hw/tpm2';
import {
  decodeChallengeRequest,
  encodeAttestationRequest,
  encodeChallengeResponse,
  type AttestationRequest,
} from '@spire-hw/devid';
import { buildConfig, type AgentConfig } from '../../../plugins/tpm-devid-agent/config';
import { loadDevidFiles, type DevidFiles } from '@spire-hw/devid';
import { openTransport, resolveTpmLocation, type TpmLocation } from '@spire-hw/devid';
import {
  activateCredential,
  certify,
  createEk,
  createKey,
  createSrk,
  loadKey,
  newTpm,
  probeTpm,
  readEkCertificate,
  signSha256,
} from '@spire-hw/devid';
import { describeTpmFailure } from '@spire-hw/devid';

export type TamperMode =
  | 'honest'
  | 'swap-devid-pub'
  | 'unrestricted-ak'
  | 'wrong-nonce'
  | 'record'
  | 'replay'
  | 'other-ek'
  | 'oversize-ekcert'
  | 'malformed-payload'
  | 'malformed-response'
  | 'array-response';

const MODES: readonly TamperMode[] = [
  'honest',
  'swap-devid-pub',
  'unrestricted-ak',
  'wrong-nonce',
  'record',
  'replay',
  'other-ek',
  'oversize-ekcert',
  'malformed-payload',
  'malformed-response',
  'array-response',
];

interface Options {
  mode: TamperMode;
  file?: string;
  softKey?: string;
  otherTpm?: string;
}

function parseArgs(argv: string[]): Options {
  const get = (name: string): string | undefined => {
    const i = argv.indexOf(name);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const mode = get('--mode') ?? 'honest';
  if (!(MODES as readonly string[]).includes(mode)) throw new Error(`unknown --mode ${mode}`);
  const o: Options = { mode: mode as TamperMode };
  const file = get('--file');
  const softKey = get('--soft-key');
  const otherTpm = get('--other-tpm');
  if (file) o.file = file;
  if (softKey) o.softKey = softKey;
  if (otherTpm) o.otherTpm = otherTpm;
  return o;
}

interface Live {
  cfg: AgentConfig;
  location: TpmLocation;
  files: DevidFiles;
}

const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');

/** EK public area and certificate of another TPM (read once, then that TPM is released). */
async function readOtherEk(socket: string, cfg: AgentConfig): Promise<{ ekPub: Buffer; ekCert: Buffer }> {
  const tpm = newTpm(await openTransport(await resolveTpmLocation(socket)));
  const scope = new TpmScope(tpm);
  try {
    const info = await probeTpm(tpm);
    const ek = await createEk(scope, utf8(cfg.endorsementHierarchyPassword));
    const ekCert = await readEkCertificate(tpm, info.nvBufferMax, utf8(cfg.ownerHierarchyPassword));
    return { ekPub: ek.pub, ekCert };
  } finally {
    await scope.close().catch(() => undefined);
    await tpm.close().catch(() => undefined);
  }
}

class TamperAgent implements AgentNodeAttestor<AgentConfig> {
  private live: Live | undefined;

  constructor(private readonly opts: Options) {}

  readonly buildConfig = buildConfig;

  async applyConfig(cfg: AgentConfig): Promise<void> {
    const location = await resolveTpmLocation(cfg.tpmDevicePath);
    const files = await loadDevidFiles({ cert: cfg.devidCertPath, priv: cfg.devidPrivPath, pub: cfg.devidPubPath });
    this.live = { cfg, location, files };
  }

  async aidAttestation(stream: DuplexStream<Challenge, PayloadOrChallengeResponse>, ctx: CallContext): Promise<void> {
    const live = this.live;
    if (!live) throw new PluginError(Code.FAILED_PRECONDITION, 'not configured');
    const { mode } = this.opts;
    const log = ctx.log;
    log.info('tamper agent attesting', { mode });
    const other = mode === 'other-ek' ? await readOtherEk(this.opts.otherTpm ?? '', live.cfg) : undefined;
    const tpm: Tpm = newTpm(await openTransport(live.location));
    const scope = new TpmScope(tpm);
    const owner = utf8(live.cfg.ownerHierarchyPassword);
    const endorsement = utf8(live.cfg.endorsementHierarchyPassword);
    try {
      const info = await probeTpm(tpm);
      const keyType = live.files.pub.keyType;
      let srk = await createSrk(scope, keyType, owner);
      const devid = await loadKey(
        scope,
        srk,
        live.files.priv.bytes,
        live.files.pub.bytes,
        utf8(live.cfg.devidPassword),
      );
      if (keyType !== 'rsa') {
        await scope.release(srk.handle);
        srk = await createSrk(scope, 'rsa', owner);
      }
      // The AK: go-tpm-tools' restricted RSASSA template, or (unrestricted-ak) the same key without `restricted`.
      const akTemplate = templateBytes(mode === 'unrestricted-ak' ? 'devid-rsa' : 'ak-rsa');
      const akAuth = randomBytes(32);
      const akBlob = await createKey(scope, srk, akTemplate, akAuth);
      const ak = await loadKey(scope, srk, akBlob.priv, akBlob.pub, akAuth);
      await scope.release(srk.handle);
      const ek = await createEk(scope, endorsement);
      const ekCert = await readEkCertificate(tpm, info.nvBufferMax, owner);
      const cert = await certify(tpm, devid, ak);

      const req: AttestationRequest = {
        devIdCert: live.files.certs,
        devIdPub: live.files.pub.bytes,
        ekCert: other ? other.ekCert : ekCert,
        ekPub: other ? other.ekPub : ek.pub,
        akPub: akBlob.pub,
        certifiedDevId: cert.attest,
        certificationSignature: cert.signature,
      };
      let payload: Buffer;
      if (mode === 'oversize-ekcert') {
        payload = encodeAttestationRequest({ ...req, ekCert: randomBytes(10_000) });
      } else if (mode === 'malformed-payload') {
        const json = JSON.parse(encodeAttestationRequest(req).toString('utf8')) as Record<string, unknown>;
        json['DevIDCert'] = 5;
        payload = Buffer.from(JSON.stringify(json));
      } else {
        payload = encodeAttestationRequest(req);
      }
      await stream.send({ data: { $case: 'payload', payload } });
      const msg = await stream.recv();
      if (!msg) {
        log.info('tamper agent: stream ended without a challenge', { mode });
        return;
      }
      const decoded = decodeChallengeRequest(msg.challenge);
      if (!decoded.ok) throw new PluginError(Code.INTERNAL, `bad challenge: ${decoded.error.message}`);
      const ch = decoded.value;

      let response: Buffer;
      if (mode === 'replay') {
        response = readFileSync(this.opts.file ?? '');
        log.info('tamper agent: replaying a recorded challenge response', { bytes: response.length });
      } else if (mode === 'malformed-response') {
        response = Buffer.from('{"DevID":5,"CredActivation":"AAAA"}');
      } else if (mode === 'array-response') {
        response = Buffer.from('{"DevID":[1],"CredActivation":"AAAA"}');
      } else {
        let popSig: Buffer;
        if (mode === 'swap-devid-pub') {
          // Possession is proven with the software key the certificate names; residency was proven for the TPM key.
          const soft = createPrivateKey(readFileSync(this.opts.softKey ?? ''));
          popSig = cryptoSign('sha256', ch.devId, soft);
        } else {
          const nonce = Buffer.from(ch.devId);
          if (mode === 'wrong-nonce') nonce[0] = nonce[0]! ^ 0xff;
          popSig = (await signSha256(tpm, devid, nonce)).signature;
        }
        let cred: Buffer;
        try {
          cred = await activateCredential(
            scope,
            ak,
            ek,
            endorsement,
            ch.credActivation.credential,
            ch.credActivation.secret,
          );
        } catch (e) {
          if (mode !== 'other-ek') throw e;
          log.info("tamper agent: this TPM cannot activate the other TPM's credential; sending a guess", {
            error: describeTpmFailure(e),
          });
          cred = randomBytes(32);
        }
        response = encodeChallengeResponse({ devId: popSig, credActivation: cred });
      }
      if (mode === 'record') writeFileSync(this.opts.file ?? '', response);
      await stream.send({ data: { $case: 'challengeResponse', challengeResponse: response } });
      log.info('tamper agent: response sent', { mode });
    } catch (e) {
      if (e instanceof PluginError) throw e;
      throw new PluginError(Code.INTERNAL, `tamper agent (${mode}): ${describeTpmFailure(e)}`);
    } finally {
      await scope.close().catch(() => undefined);
      await tpm.close().catch(() => undefined);
    }
  }
}

serve(agentNodeAttestor(new TamperAgent(parseArgs(process.argv.slice(2)))));
