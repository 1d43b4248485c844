#!/usr/bin/env node
// SPIRE agent KeyManager (spire.plugin.agent.keymanager.v1.KeyManager) whose keys live in the TPM.
import { agentKeyManager, serve } from '@spire-hw/sdk';
import { TpmKeyManager } from './plugin';

serve(agentKeyManager(new TpmKeyManager()), { onUncaughtError: 'exit' }); // key state unknown after a bug: exit
