/**
 * dist-template/flashlex.py, the Python module thing applications use (the old SDK's
 * FlashlexSDK): shipped byte for byte in every distribution zip (hub/things/distribution.ts) and
 * written beside config.yml by `enroll` (thing/enrol), so either way of making a thing folder
 * gives its applications the same module.
 */
import pythonModule from "../../dist-template/flashlex.py" with { type: "text" };

/** The module's text: no placeholders. */
export const PYTHON_MODULE: string = pythonModule;

/** Its file name in a thing's folder, beside config.yml. */
export const PYTHON_MODULE_FILE = "flashlex.py";
