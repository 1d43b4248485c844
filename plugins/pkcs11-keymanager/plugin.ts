/** SDK binding of the PKCS#11 KeyManager (server and agent share this class). */
import { createLogger, registerSecret, type CallContext, type HealthState, type InitContext } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { readPin } from '@spire-hw/pkcs11';
import { buildConfig, type Pkcs11KeyManagerConfig } from './config';
import { Pkcs11KeyManagerCore, type GenerateKeyReq, type PublicKeyMsg, type SignDataReq } from './keymanager';

export type { Pkcs11KeyManagerConfig } from './config';

/** Until init() hands over the host's logger. */
const silent = createLogger({ sink: () => {} });

export class Pkcs11KeyManager {
  readonly core = new Pkcs11KeyManagerCore(silent);

  init(ctx: InitContext): void {
    this.core.log = ctx.log;
    this.core.metrics.sink = ctx.metrics;
  }

  /** grpc.health.v1: NOT_SERVING while the token session is lost or the user PIN is locked. */
  health(): HealthState {
    return this.core.health();
  }

  /** Pure: HCL text → checked configuration (errors and notes go to `status`). */
  readonly buildConfig = buildConfig;

  async applyConfig(cfg: Pkcs11KeyManagerConfig): Promise<void> {
    // make sure a PIN read from a file or the environment can never show up in a log line
    try {
      registerSecret(readPin(cfg.pin));
    } catch {
      /* reported by the login itself */
    }
    await this.core.apply(cfg);
  }

  async validate(cfg: Pkcs11KeyManagerConfig, status: ConfigStatus): Promise<void> {
    await this.core.validateLive(cfg, status);
  }

  async deinit(): Promise<void> {
    await this.core.close();
  }

  async generateKey(req: GenerateKeyReq, ctx: CallContext): Promise<{ publicKey: PublicKeyMsg | undefined }> {
    return { publicKey: await this.core.generateKey(req, ctx.signal) };
  }

  async getPublicKey(req: { keyId: string }, _ctx: CallContext): Promise<{ publicKey: PublicKeyMsg | undefined }> {
    // Like SPIRE's base KeyManager: an unknown key is an empty response (the host turns it into NotFound).
    return { publicKey: this.core.getPublicKey(req.keyId) };
  }

  async getPublicKeys(_req: object, _ctx: CallContext): Promise<{ publicKeys: PublicKeyMsg[] }> {
    return { publicKeys: this.core.getPublicKeys() };
  }

  async signData(req: SignDataReq, _ctx: CallContext): Promise<{ signature: Buffer; keyFingerprint: string }> {
    return this.core.signData(req);
  }
}
