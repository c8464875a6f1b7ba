/**
 * The exit codes of every command (sysexits(3), so systemd, shells and scripts can tell a bad
 * config, never worth restarting, from a broker that is down, worth retrying). A command returns
 * one for what it did; a failure's code follows from its kind, by the one table here, which
 * main.ts reports with and the SDK gives its errors (the code the CLI would end with).
 */
import type { ErrorKind } from "../shared/errors.ts";
import { toFlashlexError } from "../shared/foreign-errors.ts";

export const ExitCode = {
  OK: 0,
  /** bootstrap: at least one self-test check failed */
  CHECK_FAILED: 1,
  /**
   * serve: it replaced its binary with a verified update (or put the previous one back) and
   * stopped so that its supervisor starts it again (the unit's Restart=on-failure; docs/updates.md)
   */
  RESTART: 3,
  USAGE: 64,
  /** bad input data: not JSON, not UTF-8, too large, unknown message id */
  DATA: 65,
  /** the service could not be reached; the message is queued and `serve` delivers it later */
  UNAVAILABLE: 69,
  /** an unexpected internal error (a bug): please report it */
  SOFTWARE: 70,
  /** a file could not be read or written: disk full, read-only, damaged database */
  IO: 74,
  /** try again later: the outbox is full, the database is busy, another serve runs */
  TEMPFAIL: 75,
  PERMISSION: 77,
  CONFIG: 78,
} as const;

export type ExitCode = (typeof ExitCode)[keyof typeof ExitCode];

/** The exit code of each kind of failure (src/shared/errors.ts). */
export const EXIT_CODE_OF_KIND: Record<ErrorKind, ExitCode> = {
  usage: ExitCode.USAGE,
  data: ExitCode.DATA,
  conflict: ExitCode.DATA,
  unavailable: ExitCode.UNAVAILABLE,
  bug: ExitCode.SOFTWARE,
  io: ExitCode.IO,
  full: ExitCode.IO,
  "read-only": ExitCode.IO,
  damaged: ExitCode.IO,
  "try-later": ExitCode.TEMPFAIL,
  permission: ExitCode.PERMISSION,
  config: ExitCode.CONFIG,
};

/** The exit code of any thrown value, by its kind (a library's error is classified first). */
export function exitCodeOf(err: unknown): ExitCode {
  return EXIT_CODE_OF_KIND[toFlashlexError(err).kind];
}

/** The help text's last section, for every command. */
export const EXIT_CODES_HELP = `Exit codes:
  0   ok
  1   a bootstrap check failed
  3   serve installed an update (or rolled one back) and stopped to be started again by systemd
  64  usage: unknown command or flag, a flag value that is not valid (e.g. --limit abc, a
      --file that is not there), a flag that takes one value given twice
  65  bad input data: not JSON, not UTF-8, too large, unknown message id; nothing was queued;
      collect: the API refused the message for good (kept as rejected, see \`outbox list\`);
      enroll: the hub refused the token, the name or the CSR, or the folder holds a thing
  69  service unavailable: the message is queued and \`serve\` delivers it later (enroll: the
      hub cannot be reached; run it again: it keeps its key in .enrol/ and the hub answers a retry)
  70  internal error (a bug; please report it)
  74  I/O error: disk full, read-only file system, damaged database (the message names the file);
      serve: its database removed or replaced while it ran
  75  try again later: not delivered and nothing was queued (offlinePublishQueueing: 0, or N
      messages already wait; when no answer came, the line says it may or may not have arrived),
      the database is busy, or another serve runs on this data directory;
      collect: serve stopped while it took the message (see \`outbox list\` whether it is queued)
  77  permission denied: install-service needs root; a file or directory this user may not
      read or write (config.yml is 78), or one under a directory it may not enter (never taken
      for a missing one), the line naming whose it is and its mode;
      started by root, a thing's folder it must not act on (several users' paths, one others
      may write in, or another user's when it may not change its user)
  78  configuration error: the message names the file and the key (also: a config.yml that
      cannot be read, a certificate or key that cannot be used, a database of another application or of a newer flashlex; enroll:
      the hub's CA is not the pinned --ca-fingerprint; a FLASHLEX_LOG_LEVEL other than debug,
      info, warn or error, named before the command starts)
  130 interrupted (SIGINT), 143 stopped (SIGTERM), 129 hung up (SIGHUP): enroll and
      install-service, one line saying what was left (serve and messages --follow stop cleanly on a signal and exit 0)`;

/** The help text's last section for the hub's commands: the same codes, in the hub's words. */
export const HUB_EXIT_CODES_HELP = `Exit codes:
  0   ok
  64  usage: unknown command or flag, a flag value that is not valid, a flag that takes one
      value given twice (only hub init's --name may repeat); hub backup: its directory exists,
      lies in the home, is too long, or its parent is missing or not a directory; hub restore:
      the backup is not a directory holding hub.yml and hub.db
  65  bad input data: no such thing, a thing name already taken, hub send's message not JSON,
      too large or too deeply nested
  69  service unavailable: hub send found no hub serve running on this home (its hub.sock),
      or its broker did not take the message for every thing named
  70  internal error (a bug; please report it)
  74  I/O error: disk full, read-only file system, damaged hub.db (the message names the file;
      hub restore: the backup's, and nothing was changed); hub serve: its home or hub.db
      removed or replaced while it ran
  75  try again later: another hub serve runs on this home (hub restore: stop it first), or the
      database is busy; hub send: the hub took the message but did not answer within 30 s (look
      before sending it again)
  77  permission denied: the hub home is another user's (run the command as that user), or a
      file under a directory this user may not enter (never taken for a missing one); started
      by root, a home it must not act on (several users' paths, one others may write in, or
      another user's when it may not change its user); hub backup: a parent directory every
      user may write without the sticky bit
  78  configuration error: hub.yml, a missing hub.db or CA file (the message names the file and
      the key; restore hub.db from a backup), an address hub serve cannot listen on, or an
      environment variable the hub cannot read (FLASHLEX_LOG_LEVEL, FLASHLEX_CRL_VALIDITY_SECONDS)
  130 interrupted (SIGINT), 143 stopped (SIGTERM), 129 hung up (SIGHUP): hub init, hub
      export, hub backup and hub restore left nothing half-written; hub thing create, stopped
      while its zip waited for a pipe's reader, took the thing back; a zip cut short in a pipe is said, with its bytes
      (hub serve stops cleanly on SIGTERM, SIGINT or SIGHUP and exits 0)`;
