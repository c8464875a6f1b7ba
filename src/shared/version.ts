// Replaced at build time by scripts/build.ts (--define); a source run says it is a dev build.
declare const FLASHLEX_VERSION: string;
declare const FLASHLEX_COMMIT: string;
declare const FLASHLEX_TARGET: string;

export const VERSION: string = typeof FLASHLEX_VERSION === "string" ? FLASHLEX_VERSION : "0.0.0-dev";
export const COMMIT: string = typeof FLASHLEX_COMMIT === "string" ? FLASHLEX_COMMIT : "unknown";
/** The release target this binary was built for (scripts/targets.ts, `linux-arm64`); a source run has none. */
export const TARGET: string | undefined = typeof FLASHLEX_TARGET === "string" ? FLASHLEX_TARGET : undefined;
