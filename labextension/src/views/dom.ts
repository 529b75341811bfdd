/**
 * A tiny element builder whose children are text nodes or elements, never markup:
 * every string that reaches the page goes through `textContent` semantics.
 */

export type Child = Node | string | number | null | undefined | false;

export interface Attrs {
  class?: string;
  title?: string;
  href?: string;
  role?: string;
  tabindex?: string;
  dataset?: Record<string, string>;
  onclick?: (ev: MouseEvent) => void;
}

export function h(tag: string, attrs: Attrs = {}, ...children: Child[]): HTMLElement {
  const el = document.createElement(tag);
  const { dataset, onclick, ...plain } = attrs;
  for (const [name, value] of Object.entries(plain)) {
    if (value !== undefined) {
      el.setAttribute(name, value);
    }
  }
  if (dataset) {
    Object.assign(el.dataset, dataset);
  }
  if (onclick) {
    el.addEventListener('click', onclick);
  }
  if (tag === 'a') {
    // Links open the MLflow UI beside the notebook, never in its place.
    el.setAttribute('target', '_blank');
    el.setAttribute('rel', 'noopener noreferrer');
  }
  for (const child of children) {
    if (child === null || child === undefined || child === false) {
      continue;
    }
    el.appendChild(typeof child === 'object' ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A short digest for display: the first 12 hex digits after any `sha256:`. */
export function shortDigest(digest: string): string {
  const bare = digest.replace(/^sha256:/, '');
  return bare.length > 12 ? bare.slice(0, 12) : bare;
}

export function fmtSeconds(s: number | null): string {
  return s === null ? '–' : s < 10 ? `${s.toFixed(2)} s` : `${s.toFixed(1)} s`;
}

/** A two-column-or-more table; empty rows give nothing. */
export function table(headers: string[], rows: Child[][], cls: string): HTMLElement | null {
  if (!rows.length) {
    return null;
  }
  return h(
    'table',
    { class: cls },
    h('thead', {}, h('tr', {}, ...headers.map(x => h('th', {}, x)))),
    h('tbody', {}, ...rows.map(r => h('tr', {}, ...r.map(c => h('td', {}, c)))))
  );
}
