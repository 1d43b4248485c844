/**
 * The plain value tree produced by the config parsers, plus side tables that keep
 * source positions, number source text and the "repeated key" marker without
 * changing the shape of the values themselves.
 */

/** 1-based line and column (column counted in UTF-16 code units from the line start). */
export interface SourcePos {
  readonly line: number;
  readonly column: number;
}

/**
 * A parsed configuration value. Integers outside the JS safe-integer range are `bigint`;
 * all other numbers are `number`. JSON `null` never appears (a `null` member is dropped).
 */
export type ConfigValue = string | number | bigint | boolean | ConfigValue[] | ConfigObject;

/** A parsed object/block. Keys are own enumerable properties (even `__proto__`); read with `Object.hasOwn`. */
export interface ConfigObject {
  [key: string]: ConfigValue;
}

interface ValueMeta {
  readonly pos: SourcePos;
  /** Source text of a number literal (Go decodes a number into a string field as its source text). */
  readonly raw?: string;
}

// Side tables live in non-enumerable symbol properties: invisible to Object.keys, JSON.stringify
// and assert.deepStrictEqual, and much cheaper than WeakMaps for large trees.
const META: unique symbol = Symbol('sdk.config.meta');
const REPEATED: unique symbol = Symbol('sdk.config.repeated');
interface Side {
  /** line * 2^26 + column, packed to keep large trees cheap. Lists use `list`, objects `map`. */
  list?: number[];
  map?: Map<string, number>;
  /** number source text, only where it differs from String(value) */
  raw?: Map<string | number, string>;
}
interface WithMeta {
  [META]?: Side;
  [REPEATED]?: true;
}
const COL = 67108864; // 2^26

/** @internal */
export function setMeta(container: object, key: string | number, meta: ValueMeta): void {
  const c = container as WithMeta;
  let side = c[META];
  if (side === undefined) {
    side = {};
    Object.defineProperty(container, META, { value: side, enumerable: false, writable: false, configurable: true });
  }
  const packed = meta.pos.line * COL + Math.min(meta.pos.column, COL - 1);
  if (typeof key === 'number') {
    const list = (side.list ??= []);
    while (list.length < key) list.push(0);
    list[key] = packed;
  } else {
    (side.map ??= new Map()).set(key, packed);
  }
  const raw = meta.raw;
  if (raw !== undefined) {
    const v = (container as Record<string | number, unknown>)[key];
    if (v === undefined || String(v) !== raw) (side.raw ??= new Map()).set(key, raw);
  } else {
    side.raw?.delete(key);
  }
}

/** @internal */
export function getMeta(container: object, key: string | number): ValueMeta | undefined {
  const side = (container as WithMeta)[META];
  if (side === undefined) return undefined;
  const p = typeof key === 'number' ? side.list?.[key] : side.map?.get(key);
  if (p === undefined || p === 0) return undefined;
  const pos = { line: Math.floor(p / COL), column: p % COL };
  const raw = getRaw(container, key);
  return raw === undefined ? { pos } : { pos, raw };
}

/** @internal Source text of a number value (stored only when it differs from String(value)). */
export function getRaw(container: object, key: string | number): string | undefined {
  const r = (container as WithMeta)[META]?.raw?.get(key);
  if (r !== undefined) return r;
  const v = (container as Record<string | number, unknown>)[key];
  return typeof v === 'number' || typeof v === 'bigint' ? String(v) : undefined;
}

/** @internal */
export function markRepeated(arr: ConfigValue[]): ConfigValue[] {
  Object.defineProperty(arr, REPEATED, { value: true, enumerable: false, writable: false, configurable: true });
  return arr;
}

/**
 * Where `container[key]` came from: for an object member, the position of its key
 * (the first occurrence when the key is repeated); for a list element, the element.
 */
export function positionOf(
  container: ConfigObject | readonly ConfigValue[],
  key: string | number,
): SourcePos | undefined {
  return getMeta(container, key)?.pos;
}

/** Source text of the number literal at `container[key]` (e.g. `"0x10"`, `"1e3"`), if it was a number. */
export function numberSourceText(
  container: ConfigObject | readonly ConfigValue[],
  key: string | number,
): string | undefined {
  return getRaw(container, key);
}

/**
 * True when the array is not a list literal but the accumulation of a key that appeared
 * more than once in one body (`k = 1` `k = 2`, repeated blocks, or a JSON array of objects,
 * which HCL v1 flattens into repeated keys).
 */
export function isRepeated(value: unknown): boolean {
  return Array.isArray(value) && (value as WithMeta)[REPEATED] === true;
}

/** @internal Define an own enumerable property (safe for `__proto__`). */
export function defineKey(obj: ConfigObject, key: string, value: ConfigValue): void {
  if (key !== '__proto__') {
    obj[key] = value;
    return;
  }
  Object.defineProperty(obj, key, { value, writable: true, enumerable: true, configurable: true });
}

export function isConfigObject(v: ConfigValue | undefined): v is ConfigObject {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}
