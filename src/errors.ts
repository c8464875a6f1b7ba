/**
 * Exit codes follow sysexits(3) so that systemd, shells and scripts can tell a bad config
 * (never worth restarting) from a broker that is down (worth retrying).
 */
export const ExitCode = {
  OK: 0,
  /** bootstrap: at least one self-test check failed */
  CHECK_FAILED: 1,
  USAGE: 64,
  /** bad input data: not JSON, too large, unknown message id */
  DATA: 65,
  /** the service could not be reached; the message is queued and `serve` delivers it later */
  UNAVAILABLE: 69,
  /** the outbox is full (offlinePublishQueueing); nothing was queued, try again later */
  TEMPFAIL: 75,
  /** an unexpected internal error (a bug): please report it */
  SOFTWARE: 70,
  IO: 74,
  PERMISSION: 77,
  CONFIG: 78,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** An error that knows which exit code it means. Its message is one line, safe to print. */
export class FlashlexError extends Error {
  constructor(
    message: string,
    readonly exitCode: ExitCode,
  ) {
    super(message);
    this.name = "FlashlexError";
  }
}

export class ConfigError extends FlashlexError {
  constructor(message: string) {
    super(message, ExitCode.CONFIG);
    this.name = "ConfigError";
  }
}

export class InputError extends FlashlexError {
  constructor(message: string) {
    super(message, ExitCode.DATA);
    this.name = "InputError";
  }
}

export class UsageError extends FlashlexError {
  constructor(message: string) {
    super(message, ExitCode.USAGE);
    this.name = "UsageError";
  }
}

/** Maps an unknown thrown value to an exit code, for main.ts. */
export function exitCodeOf(err: unknown): ExitCode {
  if (err instanceof FlashlexError) return err.exitCode;
  const code = (err as NodeJS.ErrnoException | undefined)?.code;
  if (code === "EACCES" || code === "EPERM") return ExitCode.PERMISSION;
  if (code === "ENOENT" || code === "EISDIR" || code === "ENOSPC" || code === "EROFS") return ExitCode.IO;
  if (code === "EADDRINUSE") return ExitCode.UNAVAILABLE;
  return ExitCode.SOFTWARE;
}
