// Errors as data: a PluginError carries the gRPC status code SPIRE will see. Anything else thrown by a plugin is
// answered as Internal (and logged), never a crash.
import { status as Code, type ServiceError, Metadata } from "@grpc/grpc-js";
import { redactString } from "./log";

export { Code };
export type StatusCode = Code;

export class PluginError extends Error {
  override readonly name = "PluginError";
  constructor(
    readonly code: Code,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export const invalidArgument = (msg: string, cause?: unknown) => new PluginError(Code.INVALID_ARGUMENT, msg, { cause });
export const failedPrecondition = (msg: string, cause?: unknown) => new PluginError(Code.FAILED_PRECONDITION, msg, { cause });
export const notFound = (msg: string, cause?: unknown) => new PluginError(Code.NOT_FOUND, msg, { cause });
export const internal = (msg: string, cause?: unknown) => new PluginError(Code.INTERNAL, msg, { cause });
export const unavailable = (msg: string, cause?: unknown) => new PluginError(Code.UNAVAILABLE, msg, { cause });
export const permissionDenied = (msg: string, cause?: unknown) => new PluginError(Code.PERMISSION_DENIED, msg, { cause });
export const unimplemented = (msg: string) => new PluginError(Code.UNIMPLEMENTED, msg);
export const alreadyExists = (msg: string, cause?: unknown) => new PluginError(Code.ALREADY_EXISTS, msg, { cause });
export const resourceExhausted = (msg: string, cause?: unknown) => new PluginError(Code.RESOURCE_EXHAUSTED, msg, { cause });
export const deadlineExceeded = (msg: string, cause?: unknown) => new PluginError(Code.DEADLINE_EXCEEDED, msg, { cause });

/** The message of any thrown value, for logs and Internal statuses. */
export function errorMessage(e: unknown): string {
  if (e instanceof Error) return e.message;
  if (typeof e === "string") return e;
  try {
    return JSON.stringify(e) ?? String(e);
  } catch {
    return String(e);
  }
}

/** True when `e` is a gRPC status-shaped error (from a grpc-js client call). */
export function isServiceError(e: unknown): e is ServiceError {
  return typeof e === "object" && e !== null && typeof (e as { code?: unknown }).code === "number" && "details" in e;
}

export interface StatusObject {
  code: Code;
  details: string;
  metadata: Metadata;
}

/**
 * Maps any thrown value to the status sent to SPIRE. `internalSeen` is called for values that were not PluginErrors.
 * The message is redacted like a log line (SPIRE logs it): a registered secret never leaves in a status.
 */
export function toStatus(e: unknown, internalSeen?: (e: unknown) => void): StatusObject {
  if (e instanceof PluginError) return { code: e.code, details: redactString(e.message), metadata: new Metadata() };
  if (isServiceError(e)) return { code: e.code, details: redactString(e.details ?? ""), metadata: new Metadata() };
  internalSeen?.(e);
  return { code: Code.INTERNAL, details: redactString(errorMessage(e)), metadata: new Metadata() };
}
