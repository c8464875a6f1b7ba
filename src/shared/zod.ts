/**
 * zod, set up once for every schema of the program: they import `z` from here, so the setting
 * is made before any of them parses anything.
 *
 * jitless: each configuration is validated once per process, and zod's JIT (a `new Function`
 * compiled per object schema) costs more than it saves: about 8 ms of a one-shot `collect` in
 * the compiled binary.
 */
import { z } from "zod";

z.config({ jitless: true });

export { z };
