// Replaced at build time by scripts/build.ts (--define); a source run says it is a dev build.
declare const FLASHLEX_VERSION: string;
declare const FLASHLEX_COMMIT: string;
declare const FLASHLEX_TARGET: string;
declare const FLASHLEX_COMMIT_TIME: string;

export const VERSION: string = typeof FLASHLEX_VERSION === "string" ? FLASHLEX_VERSION : "0.0.0-dev";
export const COMMIT: string = typeof FLASHLEX_COMMIT === "string" ? FLASHLEX_COMMIT : "unknown";
/** The release target this binary was built for (scripts/targets.ts, `linux-arm64`); a source run has none. */
export const TARGET: string | undefined = typeof FLASHLEX_TARGET === "string" ? FLASHLEX_TARGET : undefined;
/**
 * When the commit this binary was built from was made (ISO 8601 UTC); undefined in a source run.
 * A release signed before it is older than this build, and self-update refuses it (docs/updates.md).
 */
export const COMMIT_TIME: string | undefined = typeof FLASHLEX_COMMIT_TIME === "string" ? FLASHLEX_COMMIT_TIME : undefined;
