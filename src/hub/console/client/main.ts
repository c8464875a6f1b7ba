/**
 * The console's browser script (one small ES module, no framework): the pages work without it
 * (plain forms and links); it adds copy buttons, confirmations, the JSON editor's checks and
 * the live lists. It never puts received text into the page as HTML (dom.ts).
 */
import { wireConfirmations, wireCopyButtons } from "./copy.ts";
import { wireSendForms } from "./json-editor.ts";
import { wireLiveLists } from "./live.ts";

wireCopyButtons(document);
wireConfirmations(document);
wireSendForms(document);
wireLiveLists(document);
// The sent list needs delivered states that arrive while addSent runs; the message id is the key.
document.documentElement.dataset.script = "ready";
