/**
 * Must be the FIRST import of a plugin main. libuv reads UV_THREADPOOL_SIZE once, at the thread pool's first use, and
 * pkcs11js runs C_SignAsync / C_GenerateKeyPairAsync on that pool (shared with fs, dns, zlib, crypto). The pool must
 * be at least max_sessions wide or async signing serialises; the configuration arrives much later than the first use,
 * so the main sets a generous default here (operators can override it in the plugin's environment).
 */
export const DEFAULT_UV_THREADPOOL_SIZE = 16;
if (!process.env['UV_THREADPOOL_SIZE']) process.env['UV_THREADPOOL_SIZE'] = String(DEFAULT_UV_THREADPOOL_SIZE);

export function uvThreadpoolSize(): number {
  const n = Number(process.env['UV_THREADPOOL_SIZE']);
  return Number.isInteger(n) && n > 0 ? Math.min(n, 1024) : 4;
}
