/**
 * Typed config builder on top of `parseConfigText`.
 *
 * Decoding rules (Go `hcl.Decode` into a struct, made stricter where Go is silently lossy):
 *  - Keys match exactly; failing that, case-insensitively (as Go does), with a note.
 *  - Unknown keys are errors (`unknown configuration key "outer.inner"`); Go ignores them.
 *  - A key set more than once: scalar fields use the last value (Go behaviour) and add a
 *    note; `stringList` concatenates the lists; `object`/`stringMap` merge the blocks
 *    (members merge recursively with the same rules); `objectList` collects every block.
 *  - string: accepts strings/heredocs and numbers (as their source text, like Go); not bools.
 *  - int: number literals (integral) or numeric strings in Go `ParseInt(s, 0, 64)` syntax.
 *  - bool: `true`/`false` literals; the strings "true"/"false" are accepted with a note
 *    (Go's decoder rejects them).
 *  - duration: Go `time.ParseDuration` strings ("10s", "1h30m", "500ms"), or 0 -> milliseconds; with `days: true`
 *    also the unit `d` (24h), which Go lacks.
 */
import { HclSyntaxError, parseConfigText } from './hcl';
import {
  type ConfigObject,
  type ConfigValue,
  defineKey,
  getRaw,
  isConfigObject,
  isRepeated,
  markRepeated,
  setMeta,
} from './tree';
import { looksSecretKey, registerConfigSecrets } from './secrets';

export interface ConfigStatus {
  errors: string[];
  notes: string[];
}

type FieldKind = 'string' | 'int' | 'bool' | 'duration' | 'stringList' | 'object' | 'stringMap' | 'objectList';

/** A value plus where it came from (number source text for Go-style string coercion). */
interface Located {
  readonly value: ConfigValue;
  readonly raw?: string;
}

/** object fields declared with `defaultEmpty: true` */
const DEFAULT_EMPTY = new WeakSet<FieldSpec<unknown>>();

const INVALID: unique symbol = Symbol('invalid');
type Invalid = typeof INVALID;

export interface FieldSpec<T> {
  readonly kind: FieldKind;
  readonly required: boolean;
  readonly secret: boolean;
  readonly description: string | undefined;
  /** Value used when the key is absent (already a fresh copy per call). */
  readonly defaultValue: (() => T) | undefined;
  /** @internal Decodes all occurrences of the key (length >= 1). */
  readonly decode: (occ: readonly Located[], path: string, status: ConfigStatus, opts: DecodeOptions) => T | Invalid;
  /** @internal Nested schema for object/objectList (for redaction). */
  readonly schema?: Schema;
}

export type Schema = Record<string, FieldSpec<unknown>>;

type FieldValue<F> = F extends FieldSpec<infer T> ? T : never;
type OptionalKeys<S extends Schema> = { [K in keyof S]-?: undefined extends FieldValue<S[K]> ? K : never }[keyof S];
type RequiredKeys<S extends Schema> = Exclude<keyof S, OptionalKeys<S>>;
type Expand<T> = T extends infer O ? { [K in keyof O]: O[K] } : never;

/** The decoded type of a schema: required or defaulted fields are non-optional. */
export type Infer<S extends Schema> = Expand<
  { -readonly [K in RequiredKeys<S>]: FieldValue<S[K]> } & { -readonly [K in OptionalKeys<S>]?: FieldValue<S[K]> }
>;

export interface DecodeOptions {
  /** What to do with keys the schema does not know. Default `'error'`. */
  unknownKeys?: 'error' | 'note' | 'ignore';
}

// ---------------------------------------------------------------------------------------
// Option types
// ---------------------------------------------------------------------------------------

interface CommonOpts {
  required?: boolean;
  description?: string;
}
export interface StringOpts extends CommonOpts {
  default?: string;
  /** Never echo the value in messages; `redactConfig` replaces it. */
  secret?: boolean;
  /** Allowed values. */
  oneOf?: readonly string[];
}
export interface IntOpts extends CommonOpts {
  default?: number;
  min?: number;
  max?: number;
  secret?: boolean;
}
export interface BoolOpts extends CommonOpts {
  default?: boolean;
}
export interface DurationOpts extends CommonOpts {
  /** Milliseconds, or a Go duration string. */
  default?: number | string;
  /** Milliseconds. */
  min?: number;
  /** Milliseconds. */
  max?: number;
  /** Also accept the unit `d` (24h). */
  days?: boolean;
}
export interface StringListOpts extends CommonOpts {
  default?: readonly string[];
  secret?: boolean;
}
export interface StringMapOpts extends CommonOpts {
  default?: Readonly<Record<string, string>>;
  secret?: boolean;
}
export interface ObjectOpts extends CommonOpts {
  /** When the block is absent, decode it as an empty block (inner defaults apply). */
  defaultEmpty?: boolean;
}
export interface ObjectListOpts extends CommonOpts {
  /** When absent, use `[]`. */
  defaultEmpty?: boolean;
}

type Present<D> = { required: true } | { default: D };

// ---------------------------------------------------------------------------------------
// Value description helpers
// ---------------------------------------------------------------------------------------

function trunc(s: string): string {
  return s.length > 60 ? s.slice(0, 60) + '…' : s;
}

function describe(loc: Located, secret: boolean): string {
  const v = loc.value;
  if (typeof v === 'string') return secret ? 'string (value redacted)' : `string ${JSON.stringify(trunc(v))}`;
  if (typeof v === 'number' || typeof v === 'bigint')
    return secret ? 'number (value redacted)' : `number ${trunc(loc.raw ?? String(v))}`;
  if (typeof v === 'boolean') return secret ? 'boolean (value redacted)' : `boolean ${v}`;
  if (Array.isArray(v)) return isRepeated(v) ? 'repeated blocks' : 'a list';
  return 'a block';
}

/** A value is shown in messages only when its field is not secret and its key's name does not say it is one. */
function hidden(path: string, secret: boolean): boolean {
  return secret || looksSecretKey(path);
}

function typeError(status: ConfigStatus, path: string, expected: string, loc: Located, secret: boolean): Invalid {
  status.errors.push(`key "${path}": expected ${expected}, got ${describe(loc, hidden(path, secret))}`);
  return INVALID;
}

/** Split a value into its occurrences (a repeated array contributes each element). */
function occurrences(container: ConfigObject | ConfigValue[], key: string | number): Located[] {
  const v = (container as Record<string | number, ConfigValue>)[key]!;
  if (Array.isArray(v) && isRepeated(v)) {
    return v.map((value, i) => {
      const raw = getRaw(v, i);
      return raw === undefined ? { value } : { value, raw };
    });
  }
  const raw = getRaw(container, key);
  return raw === undefined ? [{ value: v }] : [{ value: v, raw }];
}

function lastWins(occ: readonly Located[], path: string, status: ConfigStatus): Located {
  if (occ.length > 1) status.notes.push(`key "${path}" is set ${occ.length} times; the last value is used`);
  return occ[occ.length - 1]!;
}

/** Merge several objects (repeated blocks) into one: members accumulate like repeated keys. */
function mergeObjects(objs: readonly ConfigObject[]): ConfigObject {
  if (objs.length === 1) return objs[0]!;
  const out: ConfigObject = {};
  for (const o of objs) {
    for (const k of Object.keys(o)) {
      for (const loc of occurrences(o, k)) {
        const meta =
          loc.raw === undefined ? { pos: { line: 0, column: 0 } } : { pos: { line: 0, column: 0 }, raw: loc.raw };
        if (!Object.hasOwn(out, k)) {
          defineKey(out, k, loc.value);
          setMeta(out, k, meta);
        } else {
          let acc = out[k]!;
          if (!Array.isArray(acc) || !isRepeated(acc)) {
            const prevRaw = getRaw(out, k);
            acc = markRepeated([acc]);
            setMeta(
              acc,
              0,
              prevRaw === undefined ? { pos: { line: 0, column: 0 } } : { pos: { line: 0, column: 0 }, raw: prevRaw },
            );
            defineKey(out, k, acc);
          }
          acc.push(loc.value);
          setMeta(acc, acc.length - 1, meta);
        }
      }
    }
  }
  return out;
}

function asString(loc: Located, path: string, status: ConfigStatus, secret: boolean): string | Invalid {
  const v = loc.value;
  if (typeof v === 'string') return v;
  if (typeof v === 'number' || typeof v === 'bigint') return loc.raw ?? String(v);
  return typeError(status, path, 'a string', loc, secret);
}

/** Go `strconv.ParseInt(s, 0, 64)`. Returns undefined when not valid syntax. */
export function parseGoInt(s: string): bigint | undefined {
  const m = /^([+-]?)(.*)$/s.exec(s);
  if (m === null) return undefined;
  const neg = m[1] === '-';
  let body = m[2]!;
  let prefix = '';
  let digitsRe: RegExp;
  const p = body.slice(0, 2).toLowerCase();
  if (p === '0x' || p === '0o' || p === '0b') {
    prefix = p;
    body = body.slice(2);
    const cls = p === '0x' ? '[0-9a-fA-F]' : p === '0o' ? '[0-7]' : '[01]';
    digitsRe = new RegExp(`^_?${cls}+(_${cls}+)*$`);
  } else if (body.length > 1 && body[0] === '0') {
    prefix = '0o';
    body = body.slice(1);
    digitsRe = /^_?[0-7]+(_[0-7]+)*$/;
  } else {
    digitsRe = /^[0-9]+(_[0-9]+)*$/;
  }
  if (body.length > 400 || !digitsRe.test(body)) return undefined;
  const v = BigInt((prefix === '' ? '' : prefix) + body.replace(/_/g, ''));
  const r = neg ? -v : v;
  if (r < -(2n ** 63n) || r > 2n ** 63n - 1n) return undefined;
  return r;
}

const DURATION_UNITS_MS: Readonly<Record<string, number>> = {
  ns: 1e-6,
  us: 1e-3,
  µs: 1e-3,
  μs: 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

/** Go `time.ParseDuration` (with `days`, also the unit `d` = 24h), result in milliseconds. Returns undefined when invalid. */
export function parseGoDuration(s: string, opts: { days?: boolean } = {}): number | undefined {
  let rest = s;
  let neg = false;
  if (rest.startsWith('-') || rest.startsWith('+')) {
    neg = rest[0] === '-';
    rest = rest.slice(1);
  }
  if (rest === '0') return 0;
  if (rest === '') return undefined;
  let total = 0;
  const re = /^([0-9]*(?:\.[0-9]*)?)([^0-9.]+)/;
  while (rest !== '') {
    const m = re.exec(rest);
    if (m === null) return undefined;
    const num = m[1]!;
    const unit = m[2]!;
    if (num === '' || num === '.') return undefined;
    const mult =
      unit === 'd' && opts.days === true
        ? 86_400_000
        : Object.hasOwn(DURATION_UNITS_MS, unit)
          ? DURATION_UNITS_MS[unit]
          : undefined;
    if (mult === undefined) return undefined;
    total += Number(num) * mult;
    rest = rest.slice(m[0].length);
  }
  if (!Number.isFinite(total) || total > 9.223372036854775e15 /* int64 ns in ms */) return undefined;
  return neg ? -total : total;
}

function checkRange(
  v: number,
  path: string,
  status: ConfigStatus,
  min: number | undefined,
  max: number | undefined,
  show: (n: number) => string,
): boolean {
  if (min !== undefined && v < min) {
    status.errors.push(`key "${path}": must be at least ${show(min)}, got ${show(v)}`);
    return false;
  }
  if (max !== undefined && v > max) {
    status.errors.push(`key "${path}": must be at most ${show(max)}, got ${show(v)}`);
    return false;
  }
  return true;
}

function make<T>(
  kind: FieldKind,
  opts: CommonOpts & { secret?: boolean },
  defaultValue: (() => T) | undefined,
  decode: FieldSpec<T>['decode'],
  schema?: Schema,
): FieldSpec<T> {
  const spec: FieldSpec<T> = {
    kind,
    required: opts.required === true,
    secret: opts.secret === true,
    description: opts.description,
    defaultValue,
    decode,
  };
  return schema === undefined ? spec : { ...spec, schema };
}

// ---------------------------------------------------------------------------------------
// Field factories
// ---------------------------------------------------------------------------------------

function stringField(opts: StringOpts & Present<string>): FieldSpec<string>;
function stringField(opts?: StringOpts): FieldSpec<string | undefined>;
function stringField(opts: StringOpts = {}): FieldSpec<string | undefined> {
  const secret = opts.secret === true;
  const def = opts.default;
  return make<string | undefined>('string', opts, def === undefined ? undefined : () => def, (occ, path, status) => {
    const s = asString(lastWins(occ, path, status), path, status, secret);
    if (s === INVALID) return INVALID;
    if (opts.oneOf !== undefined && !opts.oneOf.includes(s)) {
      const allowed = opts.oneOf.map((o) => JSON.stringify(o)).join(', ');
      status.errors.push(
        `key "${path}": must be one of ${allowed}, got ${hidden(path, secret) ? 'a redacted value' : JSON.stringify(trunc(s))}`,
      );
      return INVALID;
    }
    return s;
  });
}

function intField(opts: IntOpts & Present<number>): FieldSpec<number>;
function intField(opts?: IntOpts): FieldSpec<number | undefined>;
function intField(opts: IntOpts = {}): FieldSpec<number | undefined> {
  const secret = opts.secret === true;
  const def = opts.default;
  return make<number | undefined>('int', opts, def === undefined ? undefined : () => def, (occ, path, status) => {
    const loc = lastWins(occ, path, status);
    const v = loc.value;
    let n: bigint | number | undefined;
    if (typeof v === 'number') {
      if (!Number.isInteger(v)) return typeError(status, path, 'an integer', loc, secret);
      n = v;
    } else if (typeof v === 'bigint') {
      n = v;
    } else if (typeof v === 'string') {
      n = parseGoInt(v);
      if (n === undefined) return typeError(status, path, 'an integer', loc, secret);
    } else {
      return typeError(status, path, 'an integer', loc, secret);
    }
    if (typeof n === 'bigint') {
      if (n < BigInt(Number.MIN_SAFE_INTEGER) || n > BigInt(Number.MAX_SAFE_INTEGER)) {
        status.errors.push(
          `key "${path}": integer ${hidden(path, secret) ? '(value redacted)' : trunc(n.toString())} is out of range`,
        );
        return INVALID;
      }
      n = Number(n);
    }
    const show = (x: number): string => (hidden(path, secret) && x === n ? '(value redacted)' : String(x));
    if (!checkRange(n, path, status, opts.min, opts.max, show)) return INVALID;
    return n;
  });
}

function boolField(opts: BoolOpts & Present<boolean>): FieldSpec<boolean>;
function boolField(opts?: BoolOpts): FieldSpec<boolean | undefined>;
function boolField(opts: BoolOpts = {}): FieldSpec<boolean | undefined> {
  const def = opts.default;
  return make<boolean | undefined>('bool', opts, def === undefined ? undefined : () => def, (occ, path, status) => {
    const loc = lastWins(occ, path, status);
    const v = loc.value;
    if (typeof v === 'boolean') return v;
    if (v === 'true' || v === 'false') {
      status.notes.push(
        `key "${path}": the string "${v}" was accepted as the boolean ${v}; write ${v} without quotes (Go plugins reject the quoted form)`,
      );
      return v === 'true';
    }
    return typeError(status, path, 'a boolean (true or false)', loc, false);
  });
}

function durationField(opts: DurationOpts & Present<number | string>): FieldSpec<number>;
function durationField(opts?: DurationOpts): FieldSpec<number | undefined>;
function durationField(opts: DurationOpts = {}): FieldSpec<number | undefined> {
  let def: number | undefined;
  if (typeof opts.default === 'string') {
    def = parseGoDuration(opts.default, opts);
    if (def === undefined) throw new TypeError(`field.duration: invalid default ${JSON.stringify(opts.default)}`);
  } else {
    def = opts.default;
  }
  const d = def;
  return make<number | undefined>('duration', opts, d === undefined ? undefined : () => d, (occ, path, status) => {
    const loc = lastWins(occ, path, status);
    const v = loc.value;
    let ms: number | undefined;
    if (typeof v === 'string') ms = parseGoDuration(v.trim(), opts);
    else if (v === 0) ms = 0;
    if (ms === undefined) return typeError(status, path, 'a duration such as "10s", "1h30m" or "500ms"', loc, false);
    const show = (x: number): string => formatMs(x);
    if (!checkRange(ms, path, status, opts.min, opts.max, show)) return INVALID;
    return ms;
  });
}

function formatMs(ms: number): string {
  if (ms !== 0 && Math.abs(ms) < 1) return `${+(ms * 1000).toPrecision(12)}µs`;
  if (Math.abs(ms) < 1000) return `${+ms.toPrecision(12)}ms`;
  return `${+(ms / 1000).toPrecision(12)}s`;
}

function stringListField(opts: StringListOpts & Present<readonly string[]>): FieldSpec<string[]>;
function stringListField(opts?: StringListOpts): FieldSpec<string[] | undefined>;
function stringListField(opts: StringListOpts = {}): FieldSpec<string[] | undefined> {
  const secret = opts.secret === true;
  const def = opts.default;
  return make<string[] | undefined>(
    'stringList',
    opts,
    def === undefined ? undefined : () => [...def],
    (occ, path, status) => {
      const out: string[] = [];
      let ok = true;
      let index = 0;
      for (const loc of occ) {
        const v = loc.value;
        if (!Array.isArray(v) || isRepeated(v)) {
          typeError(status, path, 'a list of strings', loc, secret);
          ok = false;
          continue;
        }
        for (let i = 0; i < v.length; i++) {
          const raw = getRaw(v, i);
          const s = asString(
            raw === undefined ? { value: v[i]! } : { value: v[i]!, raw },
            `${path}[${index++}]`,
            status,
            secret,
          );
          if (s === INVALID) ok = false;
          else out.push(s);
        }
      }
      return ok ? out : INVALID;
    },
  );
}

function collectObjects(
  occ: readonly Located[],
  path: string,
  status: ConfigStatus,
  expected: string,
  secret: boolean,
): ConfigObject[] | Invalid {
  const objs: ConfigObject[] = [];
  let ok = true;
  for (const loc of occ) {
    if (isConfigObject(loc.value)) objs.push(loc.value);
    else {
      typeError(status, path, expected, loc, secret);
      ok = false;
    }
  }
  return ok ? objs : INVALID;
}

function stringMapField(
  opts: StringMapOpts & Present<Readonly<Record<string, string>>>,
): FieldSpec<Record<string, string>>;
function stringMapField(opts?: StringMapOpts): FieldSpec<Record<string, string> | undefined>;
function stringMapField(opts: StringMapOpts = {}): FieldSpec<Record<string, string> | undefined> {
  const secret = opts.secret === true;
  const def = opts.default;
  return make<Record<string, string> | undefined>(
    'stringMap',
    opts,
    def === undefined ? undefined : () => copyRecord(def),
    (occ, path, status) => {
      const objs = collectObjects(occ, path, status, 'a block of string values', secret);
      if (objs === INVALID) return INVALID;
      const merged = mergeObjects(objs);
      const out: Record<string, string> = {};
      let ok = true;
      for (const k of Object.keys(merged)) {
        const sub = `${path}.${k}`;
        const s = asString(lastWins(occurrences(merged, k), sub, status), sub, status, secret);
        if (s === INVALID) ok = false;
        else Object.defineProperty(out, k, { value: s, writable: true, enumerable: true, configurable: true });
      }
      return ok ? out : INVALID;
    },
  );
}

function copyRecord(r: Readonly<Record<string, string>>): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of Object.keys(r))
    Object.defineProperty(out, k, { value: r[k], writable: true, enumerable: true, configurable: true });
  return out;
}

function objectField<S extends Schema>(
  schema: S,
  opts: ObjectOpts & ({ required: true } | { defaultEmpty: true }),
): FieldSpec<Infer<S>>;
function objectField<S extends Schema>(schema: S, opts?: ObjectOpts): FieldSpec<Infer<S> | undefined>;
function objectField<S extends Schema>(schema: S, opts: ObjectOpts = {}): FieldSpec<Infer<S> | undefined> {
  const decode: FieldSpec<Infer<S> | undefined>['decode'] = (occ, path, status, dopts) => {
    const objs = collectObjects(occ, path, status, 'a block', false);
    if (objs === INVALID) return INVALID;
    const r = decodeObject(mergeObjects(objs), schema, path, status, dopts);
    return r === INVALID ? INVALID : (r as Infer<S>);
  };
  const spec = make<Infer<S> | undefined>('object', opts, undefined, decode, schema);
  // defaultEmpty is handled in decodeObject (it needs the status to report inner required keys).
  if (opts.defaultEmpty === true) DEFAULT_EMPTY.add(spec);
  return spec;
}

function objectListField<S extends Schema>(
  schema: S,
  opts: ObjectListOpts & ({ required: true } | { defaultEmpty: true }),
): FieldSpec<Infer<S>[]>;
function objectListField<S extends Schema>(schema: S, opts?: ObjectListOpts): FieldSpec<Infer<S>[] | undefined>;
function objectListField<S extends Schema>(schema: S, opts: ObjectListOpts = {}): FieldSpec<Infer<S>[] | undefined> {
  const decode: FieldSpec<Infer<S>[] | undefined>['decode'] = (occ, path, status, dopts) => {
    const out: Infer<S>[] = [];
    let ok = true;
    for (const loc of occ) {
      const v = loc.value;
      const items: Located[] = Array.isArray(v) && !isRepeated(v) ? v.map((value) => ({ value })) : [loc];
      for (const item of items) {
        const sub = `${path}[${out.length}]`;
        if (!isConfigObject(item.value)) {
          typeError(status, sub, 'a block', item, false);
          ok = false;
          out.push({} as Infer<S>);
          continue;
        }
        const r = decodeObject(item.value, schema, sub, status, dopts);
        if (r === INVALID) ok = false;
        out.push(r as Infer<S>);
      }
    }
    return ok ? out : INVALID;
  };
  return make<Infer<S>[] | undefined>(
    'objectList',
    opts,
    opts.defaultEmpty === true ? () => [] : undefined,
    decode,
    schema,
  );
}

/** Field constructors. Fields are optional unless `required: true` or a `default` is given. */
export const field = {
  string: stringField,
  int: intField,
  bool: boolField,
  duration: durationField,
  stringList: stringListField,
  object: objectField,
  stringMap: stringMapField,
  /** Repeated blocks (`item { } item { }`), a list of objects, or a JSON array of objects. */
  objectList: objectListField,
};

// ---------------------------------------------------------------------------------------
// Decoding
// ---------------------------------------------------------------------------------------

function decodeObject(
  obj: ConfigObject,
  schema: Schema,
  prefix: string,
  status: ConfigStatus,
  opts: DecodeOptions,
): Record<string, unknown> | Invalid {
  const before = status.errors.length;
  const join = (k: string): string => (prefix === '' ? k : `${prefix}.${k}`);
  const byField = new Map<string, Located[]>();
  let lower: Map<string, string[]> | undefined;
  for (const key of Object.keys(obj)) {
    let name: string | undefined = Object.hasOwn(schema, key) ? key : undefined;
    if (name === undefined) {
      if (lower === undefined) {
        lower = new Map();
        for (const f of Object.keys(schema)) {
          const l = f.toLowerCase();
          lower.set(l, [...(lower.get(l) ?? []), f]);
        }
      }
      const cands = lower.get(key.toLowerCase());
      if (cands !== undefined && cands.length === 1) {
        name = cands[0]!;
        status.notes.push(`key "${join(key)}" was matched to "${join(name)}" ignoring case`);
      }
    }
    if (name === undefined) {
      const mode = opts.unknownKeys ?? 'error';
      if (mode === 'error') status.errors.push(`unknown configuration key "${join(key)}"`);
      else if (mode === 'note') status.notes.push(`unknown configuration key "${join(key)}" is ignored`);
      continue;
    }
    const list = byField.get(name);
    if (list === undefined) byField.set(name, occurrences(obj, key));
    else list.push(...occurrences(obj, key));
  }
  const out: Record<string, unknown> = {};
  for (const name of Object.keys(schema)) {
    const spec = schema[name]!;
    const path = join(name);
    const occ = byField.get(name);
    let value: unknown;
    if (occ === undefined) {
      if (spec.kind === 'object' && isDefaultEmpty(spec)) {
        value = spec.decode([{ value: {} }], path, status, opts);
      } else if (spec.defaultValue !== undefined) {
        value = spec.defaultValue();
      } else {
        if (spec.required) status.errors.push(`key "${path}" is required`);
        continue;
      }
    } else {
      value = spec.decode(occ, path, status, opts);
    }
    if (value === INVALID || value === undefined) continue;
    Object.defineProperty(out, name, { value, writable: true, enumerable: true, configurable: true });
  }
  return status.errors.length > before ? INVALID : out;
}

function isDefaultEmpty(spec: FieldSpec<unknown>): boolean {
  return DEFAULT_EMPTY.has(spec);
}

/**
 * Parse `text` (HCL v1 or JSON; empty = all defaults) and decode it with `schema`.
 * Problems are appended to `status.errors` (each naming the key); informational
 * messages to `status.notes`. Returns the value when this call added no error.
 * Messages never contain the value of a `secret` field, of a key whose name says it is a secret, or of an unknown
 * key; every value under such a key in `text` is registered with the log redactor first, whether or not it parses.
 */
export function decodeConfig<S extends Schema>(
  text: string,
  schema: S,
  status: ConfigStatus,
  opts: DecodeOptions = {},
): Infer<S> | undefined {
  // Before parsing: a value under a secret key is redacted from every log line even when the text does not parse.
  registerConfigSecrets(text, { schema });
  let tree: ConfigObject;
  try {
    tree = parseConfigText(text);
  } catch (e: unknown) {
    if (e instanceof HclSyntaxError) {
      status.errors.push(`syntax error: ${e.message}`);
      return undefined;
    }
    throw e;
  }
  return decodeConfigObject(tree, schema, status, opts);
}

/** Decode an already parsed tree (see `parseConfigText`). */
export function decodeConfigObject<S extends Schema>(
  tree: ConfigObject,
  schema: S,
  status: ConfigStatus,
  opts: DecodeOptions = {},
): Infer<S> | undefined {
  const r = decodeObject(tree, schema, '', status, opts);
  return r === INVALID ? undefined : (r as Infer<S>);
}

/** A copy of a decoded config with every `secret` field replaced by "(redacted)", for logging. */
export function redactConfig<S extends Schema>(value: Infer<S>, schema: S): Record<string, unknown> {
  return redact(value as Record<string, unknown>, schema);
}

function redact(value: Record<string, unknown>, schema: Schema): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const k of Object.keys(value)) {
    const spec = Object.hasOwn(schema, k) ? schema[k] : undefined;
    let v = value[k];
    if (spec?.secret === true) v = '(redacted)';
    else if (spec?.schema !== undefined && spec.kind === 'object' && typeof v === 'object' && v !== null)
      v = redact(v as Record<string, unknown>, spec.schema);
    else if (spec?.schema !== undefined && spec.kind === 'objectList' && Array.isArray(v)) {
      const inner = spec.schema;
      v = v.map((e: unknown) =>
        typeof e === 'object' && e !== null ? redact(e as Record<string, unknown>, inner) : e,
      );
    }
    Object.defineProperty(out, k, { value: v, writable: true, enumerable: true, configurable: true });
  }
  return out;
}

// ---------------------------------------------------------------------------------------
// Core configuration
// ---------------------------------------------------------------------------------------

/**
 * Validate the trust domain from `ConfigureRequest.core_configuration` like SPIRE's
 * `pluginconf.Build` (messages match SPIRE's, including the word "server" on the agent).
 */
export function coreTrustDomain(core: { trustDomain?: string } | undefined, status: ConfigStatus): string | undefined {
  if (core === undefined || core === null) {
    status.errors.push('server core configuration is required');
    return undefined;
  }
  const td = core.trustDomain;
  if (td === undefined || td === null || td === '') {
    status.errors.push('server core configuration must contain trust_domain');
    return undefined;
  }
  const problem = trustDomainProblem(td);
  if (problem !== undefined) {
    status.errors.push(`server core configuration trust_domain is malformed: ${problem}`);
    return undefined;
  }
  return td;
}

/** go-spiffe's rules for a trust domain name (bare name; no scheme, port or path). */
export function trustDomainProblem(td: string): string | undefined {
  if (td === '') return 'trust domain is missing';
  if (td.includes(':/')) return 'expected a bare trust domain name, not a SPIFFE ID or URI';
  for (let i = 0; i < td.length; i++) {
    const c = td.charCodeAt(i);
    const ok = (c >= 97 && c <= 122) || (c >= 48 && c <= 57) || c === 46 || c === 45 || c === 95;
    if (!ok) return 'trust domain characters are limited to lowercase letters, numbers, dots, dashes, and underscores';
  }
  return undefined;
}
