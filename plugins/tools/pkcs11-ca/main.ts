#!/usr/bin/env node
// spire-pkcs11-ca: root-key ceremony for the pkcs11 UpstreamAuthority. The tool is cli.ts.
import { runFromProcess } from './cli';

runFromProcess();
