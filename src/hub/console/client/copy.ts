/** "Copy" buttons: `data-copy="<element id>"` copies that element's text to the clipboard. */
export function wireCopyButtons(root: ParentNode): void {
  for (const button of root.querySelectorAll<HTMLButtonElement>("button[data-copy]")) {
    const label = button.textContent ?? "Copy";
    button.addEventListener("click", async () => {
      const source = document.getElementById(button.dataset.copy ?? "");
      if (!source) return;
      const text = source.textContent ?? "";
      try {
        await navigator.clipboard.writeText(text);
        button.textContent = "Copied";
      } catch {
        // No clipboard (plain HTTP on another host): select the text so Ctrl+C copies it.
        const range = document.createRange();
        range.selectNodeContents(source);
        const selection = getSelection();
        selection?.removeAllRanges();
        selection?.addRange(range);
        button.textContent = "Selected: press Ctrl+C";
      }
      setTimeout(() => (button.textContent = label), 2500);
    });
  }
}

/** Forms with `data-confirm="question"` ask before they submit. */
export function wireConfirmations(root: ParentNode): void {
  for (const form of root.querySelectorAll<HTMLFormElement>("form[data-confirm]")) {
    form.addEventListener("submit", (event) => {
      if (!confirm(form.dataset.confirm ?? "Are you sure?")) event.preventDefault();
    });
  }
}
