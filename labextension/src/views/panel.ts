/**
 * The LLMOps side panel's content: pins with drift warnings, the cells carrying
 * lineage, recent shadow verdicts, links into the MLflow UI. Render only.
 */
import { mlflowBase, oneLine, runUrl, verdictTone, versionLabel } from '../lineage';
import { CellLineage, PinState, ShadowEntry } from '../model';
import { h, shortDigest } from './dom';

export interface PanelData {
  notebookName: string | null;
  pins: PinState | null;
  cells: CellLineage[];
  shadows: ShadowEntry[];
  mlflowBase: string;
  /** Which setting gave the base: shown so a user knows the one to change. */
  mlflowOrigin?: 'lab setting' | 'kernel' | 'default';
}

export interface PanelActions {
  /** Scroll the notebook to a cell and select it. */
  revealCell(cellKey: string): void;
}

function section(title: string, ...body: (HTMLElement | null)[]): HTMLElement {
  return h('section', { class: 'jp-llmops-panel-section' }, h('h3', {}, title), ...body);
}

function empty(message: string): HTMLElement {
  return h('p', { class: 'jp-llmops-panel-empty' }, message);
}

function pinsSection(state: PinState | null, actions: PanelActions): HTMLElement {
  if (!state || !state.pins.length) {
    return section('Pins', empty('No pins in force. Pin one with %llm_pin prompt NAME@ALIAS.'));
  }
  const cell = state.executionCount !== null ? `cell [${state.executionCount}]` : 'a cell';
  // Saved lineage is what the notebook held when saved, not what this kernel has in force.
  const origin = state.live ? `kernel state as of ${cell}` : `as saved with ${cell}`;
  const items = state.pins.map(p =>
    h(
      'li',
      {
        class: `jp-llmops-pin${p.drift ? ' jp-llmops-pin-drift' : ''}`,
        title: p.digest || undefined
      },
      h('span', { class: 'jp-llmops-pin-name' }, `${p.kind} ${p.name} ${versionLabel(p.version)}`),
      p.alias ? h('span', { class: 'jp-llmops-pin-alias' }, ` @${p.alias}`) : null,
      p.digest ? h('span', { class: 'jp-llmops-pin-digest' }, ` ${shortDigest(p.digest)}`) : null,
      p.drift
        ? h(
            'div',
            { class: 'jp-llmops-drift' },
            `⚠ drift: @${p.alias} now → ${versionLabel(p.alias_now)}`,
            p.message ? ` (${p.message})` : ''
          )
        : null
    )
  );
  const banner = state.drifted.length
    ? h(
        'div',
        { class: 'jp-llmops-drift-banner', role: 'alert' },
        `⚠ ${state.drifted.length} pin${state.drifted.length > 1 ? 's' : ''} drifted: the alias moved since it was pinned`
      )
    : null;
  return section(
    'Pins',
    banner,
    h('ul', { class: 'jp-llmops-pin-list' }, ...items),
    h(
      'a',
      {
        class: 'jp-llmops-panel-origin',
        href: '#',
        onclick: ev => (ev.preventDefault(), actions.revealCell(state.cellKey))
      },
      origin
    )
  );
}

function cellsSection(cells: CellLineage[], base: string, actions: PanelActions): HTMLElement {
  if (!cells.length) {
    return section('Cells with lineage', empty('No cell of this notebook carries lineage yet.'));
  }
  const items = cells.map(c => {
    const count = c.record.execution_count;
    const run = c.record.runs[0];
    const url = run ? runUrl(base, run) : null;
    return h(
      'li',
      {
        class: `jp-llmops-cell-item jp-llmops-status-${c.record.status}`,
        role: 'button',
        tabindex: '0',
        title: 'Scroll to this cell',
        dataset: { cellKey: c.cellKey },
        onclick: () => actions.revealCell(c.cellKey)
      },
      h('span', { class: 'jp-llmops-cell-count' }, count !== null ? `[${count}] ` : '[ ] '),
      h('span', { class: 'jp-llmops-cell-text' }, oneLine(c.record)),
      c.record.status === 'error' ? h('span', { class: 'jp-llmops-cell-error' }, ' ✗') : null,
      url ? h('a', { class: 'jp-llmops-run', href: url, title: run.run_id }, ' ↗') : null
    );
  });
  return section('Cells with lineage', h('ul', { class: 'jp-llmops-cell-list' }, ...items));
}

function shadowSection(shadows: ShadowEntry[], base: string, actions: PanelActions): HTMLElement {
  if (!shadows.length) {
    return section('Shadow comparisons', empty('None yet: run %%shadow to compare two models.'));
  }
  const items = shadows.map(s => {
    const url = runUrl(base, { run_id: s.run_id, experiment_id: s.experiment_id });
    return h(
      'li',
      {
        class: 'jp-llmops-shadow-item',
        role: 'button',
        onclick: () => actions.revealCell(s.cellKey)
      },
      h('span', { class: 'jp-llmops-shadow-name' }, s.name),
      ' ',
      h(
        'span',
        {
          class:
            `jp-llmops-verdict jp-llmops-verdict-${s.verdict.replace(/[^a-z0-9_-]/gi, '')} ` +
            `jp-llmops-tone-${verdictTone(s.verdict)}`
        },
        s.verdict
      ),
      url ? h('a', { class: 'jp-llmops-run', href: url, title: s.run_id }, ' ↗') : null
    );
  });
  return section('Shadow comparisons', h('ul', { class: 'jp-llmops-shadow-list' }, ...items));
}

const ORIGIN_NOTE = {
  kernel: "from the kernel's ui_url",
  'lab setting': 'from Settings > LLMOps (overrides the kernel)',
  default: "default: set the kernel's ui_url (%config LlmopsMagics.ui_url = ...)"
} as const;

/** The whole panel body. */
export function renderPanel(data: PanelData, actions: PanelActions): HTMLElement {
  const base = mlflowBase(data.mlflowBase);
  return h(
    'div',
    { class: 'jp-llmops-panel-body' },
    h(
      'header',
      { class: 'jp-llmops-panel-header' },
      h('h2', {}, 'LLMOps'),
      h(
        'div',
        { class: 'jp-llmops-panel-notebook' },
        data.notebookName ?? 'Open a notebook to see its lineage.'
      )
    ),
    pinsSection(data.pins, actions),
    cellsSection(data.cells, data.mlflowBase, actions),
    shadowSection(data.shadows, data.mlflowBase, actions),
    section(
      'MLflow',
      base && data.mlflowOrigin
        ? h('p', { class: 'jp-llmops-panel-empty' }, ORIGIN_NOTE[data.mlflowOrigin])
        : null,
      base
        ? h(
            'a',
            { class: 'jp-llmops-mlflow-link', href: `${base}/#/experiments` },
            `Open the MLflow UI ↗ (${base})`
          )
        : empty('Set the MLflow UI base URL in Settings > LLMOps.')
    )
  );
}
