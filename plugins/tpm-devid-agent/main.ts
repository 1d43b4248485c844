#!/usr/bin/env node
// SPIRE agent NodeAttestor "tpm_devid" (external plugin): plugin_cmd points at this file's compiled JS.
import { serve, agentNodeAttestor } from '@spire-hw/sdk';
import { TpmDevidAgent } from './plugin';

serve(agentNodeAttestor(new TpmDevidAgent()), { onUncaughtError: 'log' }); // one TPM session per attestation: keep serving
