#!/usr/bin/env node
// SPIRE external plugin entry point: WorkloadAttestor "windows" (plugin_cmd = node.exe, plugin_args = [<dist>\plugins\windows-workloadattestor\main.js]).
import { serve, workloadAttestor } from '@spire-hw/sdk';
import { WindowsAttestor } from './plugin';

serve(workloadAttestor(new WindowsAttestor()), { onUncaughtError: 'log' }); // stateless: keep serving
