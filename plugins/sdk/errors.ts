// Errors as data: a PluginError carries the gRPC status code SPIRE will see. Anything else thrown by a plugin is
// answered as Internal (and logged), never a crash. A leaf module (no grpc-js): plugin cores throw PluginError
// without loading the transport.
import { redactString } from './log';

/** gRPC status codes (values fixed by the gRPC spec, doc/statuscodes.md). */
export const Code = {
  OK: 0,
  CANCELLED: 1,
  UNKNOWN: 2,
  INVALID_ARGUMENT: 3,
  DEADLINE_EXCEEDED: 4,
  NOT_FOUND: 5,
  ALREADY_EXISTS: 6,
  PERMISSION_DENIED: 7,
  RESOURCE_EXHAUSTED: 8,
  FAILED_PRECONDITION: 9,
  ABORTED: 10,
  OUT_OF_RANGE: 11,
  UNIMPLEMENTED: 12,
  INTERNAL: 13,
  UNAVAILABLE: 14,
  DATA_LOSS: 15,
  UNAUTHENTICATED: 16,
} as const;
export type Code = (typeof Code)[keyof typeof Code];

export class PluginError extends Error {
  override readonly name: string = 'PluginError';
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (msg: string, cause?: unknown) => new PluginError(Code.INVALID_ARGUMENT, msg, { cause });
export const failedPrecondition = (msg: string, cause?: unknown) =>
  new PluginError(Code.FAILED_PRECONDITION, msg, { cause });
export const notFound = (msg: string, cause?: unknown) => new PluginError(Code.NOT_FOUND, msg, { cause });
export const internal = (msg: string, cause?: unknown) => new PluginError(Code.INTERNAL, msg, { cause });
export const unavailable = (msg: string, cause?: unknown) => new PluginError(Code.UNAVAILABLE, msg, { cause });
export const permissionDenied = (msg: string, cause?: unknown) =>
  new PluginError(Code.PERMISSION_DENIED, msg, { cause });
export const unimplemented = (msg: string) => new PluginError(Code.UNIMPLEMENTED, msg);
export const alreadyExists = (msg: string, cause?: unknown) => new PluginError(Code.ALREADY_EXISTS, msg, { cause });
export const resourceExhausted = (msg: string, cause?: unknown) =>
  new PluginError(Code.RESOURCE_EXHAUSTED, msg, { cause });
export const deadlineExceeded = (msg: string, cause?: unknown) =>
  new PluginError(Code.DEADLINE_EXCEEDED, msg, { cause });

/** The message of any thrown value, for logs and Internal statuses. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === 'string') return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

/** A gRPC status as the transport sends it (trailers: none). */
export interface Status {
  code: Code;
  details: string;
}

/**
 * Maps any thrown value to the status sent to SPIRE. `internalSeen` is called for values that were neither a
 * PluginError nor a status from a host-service call (a grpc-js ServiceError: numeric `code` and `details`), which
 * passes through. The message is redacted like a log line (SPIRE logs it): a registered secret never leaves in a status.
 */
export function toStatus(e: unknown, internalSeen?: (e: unknown) => void): Status {
  if (e instanceof PluginError) return { code: e.code, details: redactString(e.message) };
  if (typeof e === 'object' && e !== null && typeof (e as { code?: unknown }).code === 'number' && 'details' in e) {
    const s = e as { code: Code; details?: string };
    return { code: s.code, details: redactString(s.details ?? '') };
  }
  internalSeen?.(e);
  return { code: Code.INTERNAL, details: redactString(errorMessage(e)) };
}
