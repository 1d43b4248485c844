/** Shared helpers for PKCS#11 tests: a private SoftHSM per test file, a recording logger. */
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createSoftHsm, type SoftHsm, type SoftHsmOptions } from '../../../simulators/softhsm2';
import type { LogFields, Logger } from '@spire-hw/sdk';

export function softhsmForThisProcess(opts: SoftHsmOptions = {}): SoftHsm {
  const hsm = createSoftHsm(opts);
  // SoftHSM reads SOFTHSM2_CONF at C_Initialize; the module is process-global, one SoftHSM instance per test file.
  process.env['SOFTHSM2_CONF'] = hsm.conf;
  return hsm;
}

export interface RecordedLog {
  level: string;
  msg: string;
  fields?: Record<string, unknown>;
}

export function recordingLogger(echo = !!process.env['PKCS11_TEST_LOG']): Logger & { lines: RecordedLog[] } {
  const lines: RecordedLog[] = [];
  const make = (base: LogFields | undefined): Logger => {
    const mk = (level: string) => (msg: string, f?: LogFields) => {
      const fields = base || f ? { ...base, ...f } : undefined;
      lines.push({ level, msg, ...(fields ? { fields } : {}) });
      if (echo) process.stderr.write(`[${level}] ${msg} ${fields ? JSON.stringify(fields) : ''}\n`);
    };
    return {
      level: 'trace',
      trace: mk('trace'),
      debug: mk('debug'),
      info: mk('info'),
      warn: mk('warn'),
      error: mk('error'),
      with: (f) => make({ ...base, ...f }),
    };
  };
  return Object.assign(make(undefined), { lines });
}

export function tmpFile(name: string, content?: string, mode = 0o600): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), 'pkcs11-test-'));
  const p = path.join(d, name);
  if (content !== undefined) fs.writeFileSync(p, content, { mode });
  return p;
}

export function hclFor(hsm: SoftHsm, extra: Record<string, string | number | boolean> = {}, token = hsm.label): string {
  const kv: Record<string, string | number | boolean> = {
    module_path: hsm.modulePath,
    token_label: token,
    pin: hsm.pin,
    key_identifier_value: 'server-a',
    ...extra,
  };
  return Object.entries(kv)
    .filter(([, v]) => v !== '')
    .map(([k, v]) => `${k} = ${typeof v === 'string' ? JSON.stringify(v) : String(v)}`)
    .join('\n\n');
}
