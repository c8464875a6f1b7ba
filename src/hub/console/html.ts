/**
 * HTML made safe by construction: `html\`...\`` escapes every value it is given unless the value
 * is itself Html (made by this template, or `trustedHtml` for the one or two fixed fragments
 * that need it). So a thing's name, a payload or a query parameter can only ever appear as text:
 * a payload holding `<script>` shows as `&lt;script&gt;`. Attribute values must be quoted in the
 * template (`href="${url}"`); quotes are escaped too.
 */
export class Html {
  constructor(readonly text: string) {}
  toString(): string {
    return this.text;
  }
}

const ESCAPES: Record<string, string> = { "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#39;", "`": "&#96;" };

/** `text` with the five HTML metacharacters (and the backtick) as entities. */
export function escapeHtml(text: string): string {
  return text.replace(/[&<>"'`]/g, (c) => ESCAPES[c]!);
}

/**
 * What a template value becomes: Html as it is, an array as its items one after another,
 * null / undefined / false as nothing, anything else as escaped text.
 */
function render(value: unknown): string {
  if (value instanceof Html) return value.text;
  if (Array.isArray(value)) return value.map(render).join("");
  if (value === null || value === undefined || value === false) return "";
  return escapeHtml(String(value));
}

/** The tagged template: the literal parts as written, every `${value}` rendered (escaped). */
export function html(strings: TemplateStringsArray, ...values: unknown[]): Html {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) out += render(values[i]) + strings[i + 1]!;
  return new Html(out);
}

/** Marks text as HTML without escaping; only for fragments this code wrote itself, never for input. */
export function trustedHtml(text: string): Html {
  return new Html(text);
}
