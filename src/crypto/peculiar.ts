/**
 * @peculiar/x509, loaded after the Reflect metadata polyfill it needs: it uses tsyringe, which
 * throws at evaluation unless `Reflect.getMetadata` exists. With two `import` statements the
 * order is not kept: Bun's runtime evaluates a module's CommonJS imports before its ES ones, and
 * its bundler, for a module loaded lazily (`await import`), the ES ones first, whatever the
 * source says. Two `require` calls run in the order written, in the runtime, in the bundle and
 * in the Node build alike.
 */
import type * as X509 from "@peculiar/x509";

require("reflect-metadata");
export const x509: typeof X509 = require("@peculiar/x509");
