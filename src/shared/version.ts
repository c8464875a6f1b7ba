// Replaced at build time by scripts/build.ts (--define); a source run says it is a dev build.
declare const FLASHLEX_VERSION: string;
declare const FLASHLEX_COMMIT: string;

export const VERSION: string = typeof FLASHLEX_VERSION === "string" ? FLASHLEX_VERSION : "0.0.0-dev";
export const COMMIT: string = typeof FLASHLEX_COMMIT === "string" ? FLASHLEX_COMMIT : "unknown";
