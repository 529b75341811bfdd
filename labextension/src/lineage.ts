/**
 * The lineage record a kernel emits as `application/vnd.llmops.lineage+json`, and a
 * parser that turns whatever arrived into that shape.
 *
 * The kernel is trusted to run code but its strings are not trusted as markup: names
 * and messages come from users, prompts and models. Parsing coerces every field to
 * its type so views never meet an object where they expect text.
 */

export const LINEAGE_MIME = 'application/vnd.llmops.lineage+json';

/** The newest record version this extension reads (it reads older ones too). */
export const LINEAGE_VERSION = 2;

export interface PromptUse {
  name: string;
  version: string;
  digest: string;
}

export interface ModelUse {
  name: string;
  version: string;
  digest: string;
  backend: string;
}

export interface RunRef {
  run_id: string;
  experiment_id: string;
  kind: string;
}

export interface Pin {
  kind: string;
  name: string;
  version: string;
  alias: string;
  alias_now: string;
  digest: string;
  drift: boolean;
  message: string;
}

export interface TableStep {
  table: string;
  version_before: string;
  version_after: string;
  step: string;
}

export interface Verdict {
  name: string;
  verdict: string;
  run_id: string;
}

/** Registry work a cell did: registered or pinned a version, or moved an alias. */
export interface RegistryAction {
  action: 'registered' | 'pinned' | 'alias';
  kind: string;
  name: string;
  version: string;
  alias: string;
  /** Alias moves: the version before (empty when the alias is new) and after (empty: unset). */
  from: string;
  to: string;
}

export interface LineageRecord {
  version: number;
  record_id: string;
  session_id: string;
  notebook: string;
  cell_id: string;
  execution_count: number | null;
  status: 'ok' | 'error';
  error_type: string;
  started: string;
  duration_s: number | null;
  prompts: PromptUse[];
  models: ModelUse[];
  runs: RunRef[];
  pins: Pin[];
  tokens: { prompt: number | null; completion: number | null };
  latency_s: number | null;
  tables: TableStep[];
  shadow: Verdict[];
  adapter_checks: Verdict[];
  registry: RegistryAction[];
  summary: string;
  /** The kernel's MLflow UI setting when the record was made (empty: not set). */
  ui_url: string;
}

/** Why a payload could not be read as a lineage record. */
export class LineageFormatError extends Error {}

type Json = { [key: string]: unknown };

function isObject(value: unknown): value is Json {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

function text(value: unknown): string {
  if (value === null || value === undefined) {
    return '';
  }
  return typeof value === 'object' ? JSON.stringify(value) : String(value);
}

function num(value: unknown): number | null {
  const n = typeof value === 'string' && value.trim() !== '' ? Number(value) : value;
  return typeof n === 'number' && Number.isFinite(n) ? n : null;
}

function list<T>(value: unknown, item: (o: Json) => T): T[] {
  return Array.isArray(value) ? value.filter(isObject).map(item) : [];
}

function registryAction(o: Json): RegistryAction {
  const action = text(o.action);
  return {
    action: action === 'registered' || action === 'pinned' ? action : 'alias',
    kind: text(o.kind),
    name: text(o.name),
    version: text(o.version),
    alias: text(o.alias),
    from: text(o.from),
    to: text(o.to)
  };
}

/** Registry work: the kernel's `registry` list, or (older kernels) alias moves only. */
function registryActions(data: Json): RegistryAction[] {
  if (Array.isArray(data.registry)) {
    return list(data.registry, registryAction);
  }
  return list(data.aliases, o => registryAction({ ...o, action: 'alias' }));
}

function adapterVerdict(o: Json): Verdict {
  return { name: text(o.adapter ?? o.name), verdict: text(o.verdict), run_id: text(o.run_id) };
}

/**
 * Read a lineage payload (an object, or its JSON text) into a `LineageRecord`.
 *
 * @throws LineageFormatError when the payload is not an object or names a newer
 *   record version than this extension understands.
 */
export function parseLineage(payload: unknown): LineageRecord {
  let data = payload;
  if (typeof data === 'string') {
    try {
      data = JSON.parse(data);
    } catch {
      throw new LineageFormatError('lineage payload is not JSON');
    }
  }
  if (!isObject(data)) {
    throw new LineageFormatError('lineage payload is not a JSON object');
  }
  const version = num(data.version) ?? LINEAGE_VERSION;
  if (version > LINEAGE_VERSION) {
    throw new LineageFormatError(
      `lineage record version ${version} is newer than this extension reads ` +
        `(${LINEAGE_VERSION}): pip install -U llmops-magics and reload the page`
    );
  }
  const tokens = isObject(data.tokens) ? data.tokens : {};
  return {
    version,
    record_id: text(data.record_id),
    session_id: text(data.session_id),
    notebook: text(data.notebook),
    cell_id: text(data.cell_id),
    execution_count: num(data.execution_count),
    status: data.status === 'error' ? 'error' : 'ok',
    error_type: text(data.error_type),
    started: text(data.started),
    duration_s: num(data.duration_s),
    prompts: list(data.prompts, o => ({
      name: text(o.name),
      version: text(o.version),
      digest: text(o.digest)
    })),
    models: list(data.models, o => ({
      name: text(o.name),
      version: text(o.version),
      digest: text(o.digest),
      backend: text(o.backend)
    })),
    runs: list(data.runs, o => ({
      run_id: text(o.run_id),
      experiment_id: text(o.experiment_id),
      kind: text(o.kind)
    })),
    pins: list(data.pins, o => ({
      kind: text(o.kind),
      name: text(o.name),
      version: text(o.version),
      alias: text(o.alias),
      alias_now: text(o.alias_now),
      digest: text(o.digest),
      drift: o.drift === true,
      message: text(o.message)
    })),
    tokens: { prompt: num(tokens.prompt), completion: num(tokens.completion) },
    latency_s: num(data.latency_s),
    tables: list(data.tables, o => ({
      table: text(o.table),
      version_before: text(o.version_before),
      version_after: text(o.version_after),
      step: text(o.step)
    })),
    shadow: list(data.shadow, o => ({
      name: text(o.name),
      verdict: text(o.verdict),
      run_id: text(o.run_id)
    })),
    adapter_checks: list(data.adapter_checks, adapterVerdict),
    registry: registryActions(data),
    summary: text(data.summary),
    ui_url: text(data.ui_url)
  };
}

/**
 * Whether a record describes the cell `cellId`. The kernel's hook stamps each bundle
 * with the id of the cell that ran (JupyterLab sends it with the execute request); a
 * record of another cell shown on purpose (e.g. by `%lineage`) is not this cell's.
 */
export function describesCell(record: LineageRecord, cellId: string): boolean {
  return !record.cell_id || record.cell_id === cellId;
}

/** Pins whose alias has moved since they were pinned. */
export function driftedPins(record: LineageRecord): Pin[] {
  return record.pins.filter(p => p.drift);
}

/**
 * The MLflow UI address of a run, or `null` when no safe link can be made.
 *
 * Only http(s) bases are linked so a setting or payload can never produce a
 * `javascript:` URL; ids are percent-encoded.
 */
export function runUrl(
  base: string,
  run: { run_id: string; experiment_id?: string }
): string | null {
  const root = mlflowBase(base);
  if (root === null || !run.run_id) {
    return null;
  }
  const runId = encodeURIComponent(run.run_id);
  if (!run.experiment_id) {
    // The MLflow UI resolves a run's experiment itself from this route.
    return `${root}/#/runs/${runId}`;
  }
  return `${root}/#/experiments/${encodeURIComponent(run.experiment_id)}/runs/${runId}`;
}

/** The MLflow UI base without a trailing slash, or `null` unless it is http(s). */
export function mlflowBase(base: string): string | null {
  const trimmed = (base || '').trim().replace(/\/+$/, '');
  return /^https?:\/\/[^\s]+$/i.test(trimmed) ? trimmed : null;
}

/** A short version label: `v4`, or `@alias` style text kept as given. */
export function versionLabel(version: string): string {
  return /^\d+$/.test(version) ? `v${version}` : version;
}

/** `chat/2`, or `default` for a model named without a version. */
export function refLabel(ref: { name: string; version: string }): string {
  return ref.version ? `${ref.name}/${ref.version}` : ref.name;
}

/**
 * An alias move as people say it: `chat@champion 1 -> 2`; `short` drops the name
 * (the cell registered it, so `challenger -> 2` is clear); an empty `to` is an unset.
 */
export function aliasText(a: RegistryAction, short = false): string {
  const target = short ? a.alias : `${a.name}@${a.alias}`;
  if (!a.to) {
    return `${target} unset${a.from ? ` (was ${a.from})` : ''}`;
  }
  return a.from && a.from !== a.to ? `${target} ${a.from} -> ${a.to}` : `${target} -> ${a.to}`;
}

/** Registry work as phrases: `registered model chat/2`, `challenger -> 2`, `pinned prompt summarize/1`. */
export function registryPhrases(record: LineageRecord): string[] {
  const registered = new Set(
    record.registry.filter(a => a.action === 'registered').map(a => `${a.kind}\n${a.name}`)
  );
  return record.registry.map(a =>
    a.action === 'alias'
      ? aliasText(a, registered.has(`${a.kind}\n${a.name}`))
      : `${a.action} ${a.kind} ${refLabel(a)}`
  );
}

/** Whether a prompt/model ref is already named by the cell's registry work. */
export function namedByRegistry(
  record: LineageRecord,
  kind: string,
  ref: { name: string; version: string }
): boolean {
  return record.registry.some(
    a => a.action !== 'alias' && a.kind === kind && a.name === ref.name && a.version === ref.version
  );
}

export type Tone = 'good' | 'bad' | 'neutral';

const GOOD = new Set(['ok', 'equivalent', 'better', 'compatible', 'pass', 'passed']);
const BAD = new Set([
  'worse',
  'degraded',
  'breaking',
  'no-effect',
  'regressed',
  'fail',
  'failed',
  'error'
]);

/** How a verdict reads: good news, bad news, or neither (inconclusive, unknown words). */
export function verdictTone(verdict: string): Tone {
  const v = verdict.trim().toLowerCase();
  return GOOD.has(v) ? 'good' : BAD.has(v) ? 'bad' : 'neutral';
}

/** The cell's verdicts (shadow comparisons, then adapter checks), with where they came from. */
export function cellVerdicts(record: LineageRecord): (Verdict & { check: 'shadow' | 'adapter' })[] {
  return [
    ...record.shadow.map(s => ({ ...s, check: 'shadow' as const })),
    ...record.adapter_checks.map(a => ({ ...a, check: 'adapter' as const }))
  ];
}

/** The plain-text one-liner shown where there is no room for badges. */
export function oneLine(record: LineageRecord): string {
  const parts: string[] = registryPhrases(record);
  for (const p of record.prompts) {
    if (!namedByRegistry(record, 'prompt', p)) {
      parts.push(`prompt ${refLabel(p)}`);
    }
  }
  for (const m of record.models) {
    if (!namedByRegistry(record, 'model', m)) {
      parts.push(`model ${refLabel(m)}`);
    }
  }
  for (const s of record.shadow) {
    parts.push(`shadow ${s.name} ${s.verdict}`.trim());
  }
  for (const a of record.adapter_checks) {
    parts.push(`adapter ${a.name} ${a.verdict}`.trim());
  }
  if (record.status === 'error') {
    parts.push(`error ${record.error_type}`.trim());
  }
  return parts.length ? parts.join(' · ') : record.summary || 'llmops work';
}
