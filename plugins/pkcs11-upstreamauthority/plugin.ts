/**
 * SDK binding of the PKCS#11 UpstreamAuthority. PublishJWTKeyAndSubscribe is not implemented (answered
 * Unimplemented, as SPIRE's `disk`): a local HSM root has no upstream JWT authority to publish to, so SPIRE keeps its
 * JWT keys in the local bundle. SubscribeToLocalBundle is implemented: it streams the upstream roots and pushes every
 * change of the bundle or certificate, also after a restart in which SPIRE loads its CA from the journal and opens
 * no mint stream.
 */
import { createLogger, registerSecret, type CallContext, type InitContext, type ResponseStream } from '@spire-hw/sdk';
import type { ConfigStatus } from '@spire-hw/sdk/config';
import { unimplemented } from '@spire-hw/sdk/errors';
import { readPin } from '@spire-hw/pkcs11';
import type {
  MintX509CARequest,
  MintX509CAResponse,
  SubscribeToLocalBundleResponse,
} from '@spire-hw/proto/spire/plugin/server/upstreamauthority/v1/upstreamauthority';
import { buildConfig, type UpstreamAuthorityConfig } from './config';
import { UpstreamAuthorityCore } from './authority';

/** Until init() hands over the host's logger. */
const silent = createLogger({ sink: () => {} });

export class Pkcs11UpstreamAuthority {
  readonly core = new UpstreamAuthorityCore(silent);

  init(ctx: InitContext): void {
    this.core.log = ctx.log;
  }

  readonly buildConfig = buildConfig;

  async applyConfig(cfg: UpstreamAuthorityConfig): Promise<void> {
    try {
      registerSecret(readPin(cfg.token.pin));
    } catch {
      /* reported by the login itself */
    }
    await this.core.apply(cfg);
  }

  async validate(cfg: UpstreamAuthorityConfig, status: ConfigStatus): Promise<void> {
    try {
      status.notes.push(...(await this.core.check(cfg)));
    } catch (e) {
      status.errors.push((e as Error).message);
    }
  }

  async deinit(): Promise<void> {
    await this.core.close();
  }

  async mintX509CaAndSubscribe(
    req: MintX509CARequest,
    stream: ResponseStream<MintX509CAResponse>,
    ctx: CallContext,
  ): Promise<void> {
    const r = await this.core.mint(req.csr, req.preferredTtl);
    await stream.send({ x509CaChain: r.chain, upstreamX509Roots: r.roots });
    // Stay open: later messages are root updates (empty chain), until SPIRE cancels the stream (next rotation).
    await this.core.subscribe(ctx.signal, (roots) => stream.send({ x509CaChain: [], upstreamX509Roots: roots }));
  }

  async subscribeToLocalBundle(
    _req: object,
    stream: ResponseStream<SubscribeToLocalBundleResponse>,
    ctx: CallContext,
  ): Promise<void> {
    // SPIRE ends spire-server on any error here but Unimplemented (pkg/server/ca/manager SubscribeToLocalBundle).
    const roots = this.core.roots();
    if (roots.length === 0) throw unimplemented('the upstream authority has no roots yet (not configured)');
    await stream.send({ upstreamX509Roots: roots, upstreamJwtKeys: [] });
    await this.core.subscribe(ctx.signal, (r) => stream.send({ upstreamX509Roots: r, upstreamJwtKeys: [] }));
  }
}
