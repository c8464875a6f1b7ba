import { csrfToken, type MessageView, messageItem } from "./dom.ts";

/** Why `text` is not one JSON document, or undefined when it is. */
export function jsonProblem(text: string): string | undefined {
  if (text.trim() === "") return 'Type a JSON document, e.g. {"text": "hello"}.';
  try {
    JSON.parse(text);
    return undefined;
  } catch (err) {
    return `Not valid JSON: ${(err as Error).message}`;
  }
}

/**
 * Send Message (`form[data-send]`): checks the JSON on every keystroke (aria-invalid and a
 * polite status line), refuses to send a document that does not parse, and sends with fetch so
 * the page stays put: the message appears in the sent list as pending, and the live feed
 * (live.ts) turns it delivered. Without this script the form still posts and the hub checks.
 */
export function wireSendForms(root: ParentNode): void {
  for (const form of root.querySelectorAll<HTMLFormElement>("form[data-send]")) {
    const area = form.querySelector<HTMLTextAreaElement>("textarea")!;
    const status = form.querySelector<HTMLElement>("[data-json-status]")!;
    const button = form.querySelector<HTMLButtonElement>('button[type="submit"]')!;
    const check = () => {
      const problem = jsonProblem(area.value);
      area.setAttribute("aria-invalid", problem ? "true" : "false");
      status.textContent = problem ?? "Valid JSON.";
      return problem;
    };
    area.addEventListener("input", check);
    check();
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (check()) {
        area.focus();
        return;
      }
      button.disabled = true;
      status.textContent = "Sending…";
      try {
        const response = await fetch(form.action, {
          method: "POST",
          headers: { Accept: "application/json", "X-CSRF-Token": csrfToken() },
          body: new URLSearchParams(new FormData(form) as unknown as Record<string, string>),
          credentials: "same-origin",
        });
        const answer = (await response.json().catch(() => ({}))) as { message?: MessageView; error?: string };
        if (!response.ok || !answer.message) {
          status.textContent = `Not sent: ${answer.error ?? `the hub answered ${response.status}`}`;
          return;
        }
        status.textContent = `Sent as ${answer.message.id}: pending until the thing acknowledges it.`;
        addSent(answer.message);
      } catch {
        status.textContent = "Not sent: the hub could not be reached.";
      } finally {
        button.disabled = false;
      }
    });
  }
}

/** Puts a sent message at the top of the sent list unless the live feed already did. */
export function addSent(view: MessageView): void {
  const list = document.querySelector('[data-list="sent"]');
  if (!list || list.querySelector(`li[data-id="${CSS.escape(view.id)}"]`)) return;
  list.prepend(messageItem(view, false));
  document.querySelector("[data-empty]")?.remove();
}
