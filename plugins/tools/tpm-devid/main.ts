#!/usr/bin/env node
// spire-tpm-devid: provision TPM DevID keys for SPIRE's tpm_devid node attestor. The tool is cli.ts.
import { runFromProcess } from './cli';

runFromProcess();
