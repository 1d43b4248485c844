#!/usr/bin/env node
// SPIRE agent KeyManager (spire.plugin.agent.keymanager.v1.KeyManager) backed by a PKCS#11 token.
import './uv-threadpool'; // first: sizes libuv's thread pool before anything uses it
import { agentKeyManager, serve } from '@spire-hw/sdk';
import { Pkcs11KeyManager } from './plugin';

serve(agentKeyManager(new Pkcs11KeyManager()), { onUncaughtError: 'exit' }); // key state unknown after a bug: exit
