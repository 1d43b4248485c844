#!/usr/bin/env node
// SPIRE external plugin entry point: WorkloadAttestor "unix" (plugin_cmd = <dist>/plugins/unix-workloadattestor/main.js).
import { serve, workloadAttestor } from '@spire-hw/sdk';
import { UnixAttestor } from './plugin';

serve(workloadAttestor(new UnixAttestor()), { onUncaughtError: 'log' }); // stateless: keep serving
