#!/usr/bin/env node
// SPIRE server KeyManager (spire.plugin.server.keymanager.v1.KeyManager) backed by a PKCS#11 token.
import './uv-threadpool'; // first: sizes libuv's thread pool before anything uses it
import { serve, serverKeyManager } from '@spire-hw/sdk';
import { Pkcs11KeyManager } from './plugin';

serve(serverKeyManager(new Pkcs11KeyManager()), { onUncaughtError: 'exit' }); // key state unknown after a bug: exit
