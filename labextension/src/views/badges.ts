/**
 * The badge row under a cell: prompt and model versions, status, a link to the
 * MLflow run; a click expands the details. Render only: data in, element out.
 */
import {
  LineageRecord,
  RegistryAction,
  Tone,
  aliasText,
  cellVerdicts,
  namedByRegistry,
  runUrl,
  verdictTone,
  versionLabel
} from '../lineage';
import { fmtSeconds, h, shortDigest, table } from './dom';

export interface BadgeOptions {
  /** The MLflow UI base URL. */
  mlflowBase: string;
  /** Where the record came from: `output` (live) or `metadata` (saved notebook). */
  source: 'output' | 'metadata';
  /** Start expanded. */
  open?: boolean;
}

function chip(kind: string, label: string, value: string, title = ''): HTMLElement {
  return h(
    'span',
    { class: `jp-llmops-chip jp-llmops-chip-${kind}`, title: title || undefined },
    h('span', { class: 'jp-llmops-chip-label' }, label),
    h('span', { class: 'jp-llmops-chip-value' }, value)
  );
}

function runLinks(record: LineageRecord, base: string): HTMLElement[] {
  return record.runs.map(run => {
    const url = runUrl(base, run);
    const label = `run ${run.run_id.slice(0, 8)}`;
    const title = `MLflow ${run.kind || 'run'} ${run.run_id}`;
    return url
      ? h('a', { class: 'jp-llmops-chip jp-llmops-run', href: url, title }, label, ' ↗')
      : h('span', { class: 'jp-llmops-chip jp-llmops-run', title }, label);
  });
}

/** Chip classes per tone; `ok`/`error` reuse the status colours (green / warning). */
const TONE_KIND: Record<Tone, string> = { good: 'ok', bad: 'error', neutral: 'neutral' };

/** A verdict chip: the verdict itself, coloured by what it means. */
function verdictChip(check: string, verdict: string, title: string): HTMLElement {
  const tone = verdictTone(verdict);
  const el = chip(TONE_KIND[tone], check, verdict || '?', title);
  el.classList.add('jp-llmops-verdict-chip', `jp-llmops-tone-${tone}`);
  el.dataset.tone = tone;
  return el;
}

function registryChip(a: RegistryAction, short: boolean): HTMLElement {
  if (a.action === 'alias') {
    const value = aliasText(a, short);
    return chip('alias', 'alias', value, `${a.kind} ${a.name}@${a.alias}`);
  }
  return chip(
    `registry jp-llmops-chip-${a.action}`,
    a.action,
    `${a.kind} ${a.name} ${versionLabel(a.version)}`
  );
}

/** The always-visible summary line of chips. */
export function badgeSummary(record: LineageRecord, base: string): HTMLElement[] {
  const chips: HTMLElement[] = [];
  const verdicts = cellVerdicts(record);
  if (record.status !== 'ok') {
    chips.push(chip('error', '✗', `error${record.error_type ? ` ${record.error_type}` : ''}`));
  } else if (!verdicts.length) {
    // "ok" says the cell ran; a cell with a verdict shows the verdict instead.
    chips.push(chip('ok', '✓', 'ok'));
  }
  for (const v of verdicts) {
    chips.push(verdictChip(v.check, v.verdict, `${v.check} ${v.name}: ${v.verdict}`));
  }
  const registered = new Set(
    record.registry.filter(a => a.action === 'registered').map(a => `${a.kind}\n${a.name}`)
  );
  for (const a of record.registry) {
    chips.push(registryChip(a, registered.has(`${a.kind}\n${a.name}`)));
  }
  for (const p of record.prompts) {
    if (!namedByRegistry(record, 'prompt', p)) {
      chips.push(chip('prompt', 'prompt', `${p.name} ${versionLabel(p.version)}`.trim(), p.digest));
    }
  }
  for (const m of record.models) {
    if (!namedByRegistry(record, 'model', m)) {
      chips.push(chip('model', 'model', `${m.name} ${versionLabel(m.version)}`.trim(), m.digest));
    }
  }
  const drifted = record.pins.filter(p => p.drift);
  if (drifted.length) {
    chips.push(
      chip(
        'drift',
        '⚠',
        `${drifted.length} pin${drifted.length > 1 ? 's' : ''} drifted`,
        drifted.map(p => p.message || `${p.name}@${p.alias}`).join('\n')
      )
    );
  }
  chips.push(...runLinks(record, base));
  return chips;
}

/** The expanded details: pins, digests, tokens, latency, table versions. */
export function badgeDetails(record: LineageRecord, base: string): HTMLElement {
  const tokens = record.tokens;
  const facts = h(
    'div',
    { class: 'jp-llmops-facts' },
    h('span', {}, `tokens ${tokens.prompt ?? '–'} in / ${tokens.completion ?? '–'} out`),
    h('span', {}, `latency ${fmtSeconds(record.latency_s)}`),
    h('span', {}, `cell ${fmtSeconds(record.duration_s)}`),
    record.started ? h('span', {}, `started ${record.started}`) : null,
    record.execution_count !== null ? h('span', {}, `execution [${record.execution_count}]`) : null
  );
  const digestRows = [
    ...record.prompts.map(p => [
      'prompt',
      p.name,
      versionLabel(p.version),
      shortDigest(p.digest),
      ''
    ]),
    ...record.models.map(m => [
      'model',
      m.name,
      versionLabel(m.version),
      shortDigest(m.digest),
      m.backend
    ])
  ];
  const pinRows = record.pins.map(p => [
    p.kind,
    p.name,
    versionLabel(p.version),
    p.alias ? `@${p.alias} → ${versionLabel(p.alias_now)}` : '',
    p.drift ? h('span', { class: 'jp-llmops-drift' }, `⚠ ${p.message || 'alias moved'}`) : 'pinned'
  ]);
  const tableRows = record.tables.map(t => [t.table, t.version_before, t.version_after, t.step]);
  const verdictRows = [
    ...record.shadow.map(s => ['shadow', s.name, s.verdict, s.run_id.slice(0, 8)]),
    ...record.adapter_checks.map(a => ['adapter check', a.name, a.verdict, a.run_id.slice(0, 8)])
  ];
  const runRows = record.runs.map(r => {
    const url = runUrl(base, r);
    return [r.kind, url ? h('a', { href: url }, r.run_id) : r.run_id, r.experiment_id];
  });
  return h(
    'div',
    { class: 'jp-llmops-details' },
    record.summary ? h('div', { class: 'jp-llmops-summary' }, record.summary) : null,
    facts,
    table(['', 'name', 'version', 'digest', 'backend'], digestRows, 'jp-llmops-table'),
    table(['pin', 'name', 'version', 'alias', 'state'], pinRows, 'jp-llmops-table jp-llmops-pins'),
    table(['table', 'before', 'after', 'step'], tableRows, 'jp-llmops-table'),
    table(['check', 'name', 'verdict', 'run'], verdictRows, 'jp-llmops-table'),
    table(['run', 'id', 'experiment'], runRows, 'jp-llmops-table')
  );
}

/** The whole badge row: a `<details>` whose summary holds the chips. */
export function renderBadges(record: LineageRecord, options: BadgeOptions): HTMLElement {
  const summary = h(
    'summary',
    { class: 'jp-llmops-badges', title: 'LLMOps lineage: click for details' },
    ...badgeSummary(record, options.mlflowBase)
  );
  const root = h(
    'details',
    {
      class: `jp-llmops-lineage jp-llmops-from-${options.source}`,
      dataset: { source: options.source }
    },
    summary,
    badgeDetails(record, options.mlflowBase)
  );
  if (options.open) {
    root.setAttribute('open', '');
  }
  return root;
}

/** Shown in place of badges when a payload cannot be read. */
export function renderLineageError(message: string): HTMLElement {
  return h(
    'div',
    { class: 'jp-llmops-lineage jp-llmops-lineage-invalid' },
    `LLMOps lineage: ${message}`
  );
}
