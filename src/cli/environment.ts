/**
 * The environment variables flashlex reads whose value has a form, checked once before any
 * command runs: a bad one is a configuration error (78) on one line naming the variable, its
 * value and what it takes, for every command alike, instead of a default taken without a word.
 * (FLASHLEX_HUB_DIR, FLASHLEX_HUB_DB and FLASHLEX_ENROLL_TOKEN are checked where they are used,
 * as the flags they stand in for are; the FLASHLEX_FAULT_* hooks are the tests'.)
 */
import { crlValiditySeconds } from "../hub/things/crl-renewal.ts";
import { logLevelFromEnv } from "../shared/log.ts";

/** Throws ConfigError (78) for the first variable of `env` whose value is not one it takes. */
export function checkEnvironment(env: NodeJS.ProcessEnv = process.env): void {
  logLevelFromEnv(env);
  crlValiditySeconds(env);
}
