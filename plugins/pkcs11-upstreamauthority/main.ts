#!/usr/bin/env node
// SPIRE server UpstreamAuthority (spire.plugin.server.upstreamauthority.v1.UpstreamAuthority) on a PKCS#11 token.
import { serve, upstreamAuthority } from '@spire-hw/sdk';
import { Pkcs11UpstreamAuthority } from './plugin';

serve(upstreamAuthority(new Pkcs11UpstreamAuthority()), { onUncaughtError: 'exit' }); // token state unknown after a bug: exit
