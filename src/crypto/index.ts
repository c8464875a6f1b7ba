/**
 * src/crypto: keys, certificates and thing tokens. Pure functions: no files, no logging.
 * Code that only needs keys or tokens can import keys.ts / jwt.ts directly and skip loading
 * @peculiar/x509 (x509.ts) at start-up.
 */
export * from "./errors.ts";
export * from "./keys.ts";
export * from "./x509.ts";
export * from "./jwt.ts";
