/** SDK binding of the agent `tpm` KeyManager. */
import { createLogger, registerSecret, type CallContext, type HealthState, type InitContext } from '@spire-hw/sdk';
import type { GenerateKeyReq, PublicKeyMsg, SignDataReq } from '@spire-hw/sdk/keymanager';
import { buildConfig, type TpmKeyManagerConfig } from './config';
import { TpmKeyManagerCore, type CoreOverrides } from './keymanager';

export type { TpmKeyManagerConfig } from './config';

/** Until init() hands over the host's logger. */
const silent = createLogger({ sink: () => {} });

export class TpmKeyManager {
  readonly core: TpmKeyManagerCore;

  constructor(overrides: CoreOverrides = {}) {
    this.core = new TpmKeyManagerCore(silent, overrides);
  }

  init(ctx: InitContext): void {
    this.core.log = ctx.log;
  }

  /** grpc.health.v1: NOT_SERVING while the TPM is unreachable (no TPM command per check; see README). */
  health(): HealthState {
    return this.core.healthy() ? 'serving' : 'not_serving';
  }

  /** Pure: HCL text → checked configuration (errors and notes go to `status`). */
  readonly buildConfig = buildConfig;

  async applyConfig(cfg: TpmKeyManagerConfig): Promise<void> {
    // the passwords as decoded (escapes resolved) never reach a log line
    registerSecret(cfg.ownerHierarchyPassword || undefined);
    registerSecret(cfg.srkPassword || undefined);
    await this.core.apply(cfg);
  }

  deinit(): void {
    this.core.close();
  }

  async generateKey(req: GenerateKeyReq, ctx: CallContext): Promise<{ publicKey: PublicKeyMsg | undefined }> {
    return { publicKey: await this.core.generateKey(req, ctx.signal) };
  }

  async getPublicKey(req: { keyId: string }, _ctx: CallContext): Promise<{ publicKey: PublicKeyMsg | undefined }> {
    // As SPIRE's base KeyManager: an unknown key is an empty response (the host turns it into NotFound).
    return { publicKey: this.core.getPublicKey(req.keyId) };
  }

  async getPublicKeys(_req: object, _ctx: CallContext): Promise<{ publicKeys: PublicKeyMsg[] }> {
    return { publicKeys: this.core.getPublicKeys() };
  }

  async signData(req: SignDataReq, ctx: CallContext): Promise<{ signature: Buffer; keyFingerprint: string }> {
    return this.core.signData(req, ctx.signal);
  }
}
