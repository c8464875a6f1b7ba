// A release whose serve refuses its config at start, as a new version does that no longer takes
// a key the previous one took: the real flashlex (src/main.ts's runMain, so the trial exit rule
// too) run with `-c /dev/null`, which serve refuses with 78 (configuration). Built like flashlex
// (scripts/build.ts, another entry) by test/integration/service-update.test.ts.
import { runMain } from "../../src/main.ts";

const argv = [...process.argv];
const at = argv.findIndex((w) => w === "-c" || w === "--config");
if (at >= 0) argv[at + 1] = "/dev/null";
runMain(argv);
