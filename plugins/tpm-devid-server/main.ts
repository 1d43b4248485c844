#!/usr/bin/env node
// SPIRE external plugin entry point: server NodeAttestor "tpm_devid" (plugin_cmd = <dist>/plugins/tpm-devid-server/main.js).
import { serve, serverNodeAttestor } from '@spire-hw/sdk';
import { TpmDevidServer } from './plugin';

serve(serverNodeAttestor(new TpmDevidServer()), { onUncaughtError: 'log' }); // stateless verifier: keep serving
