/**
 * State the views render: the lineage of each open notebook's cells, the pins in
 * force, recent shadow verdicts, and the MLflow UI base URL. No DOM here.
 */
import { ISignal, Signal } from '@lumino/signaling';

import { LineageRecord, Pin, Verdict, driftedPins, mlflowBase } from './lineage';

/** Where links point when neither the lab setting nor the kernel names a UI. */
export const DEFAULT_MLFLOW_URL = 'http://127.0.0.1:5000';

/**
 * The MLflow UI base URL, shared by the badge renderer and the panel. One setting
 * governs it: the kernel's `ui_url` (sent with each lineage record); the lab setting
 * `mlflowUiUrl`, when the user sets it, overrides it.
 */
export class MlflowLinks {
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  get base(): string {
    return this._user ?? this._kernel ?? DEFAULT_MLFLOW_URL;
  }

  /** Where the base comes from, for the panel to say. */
  get origin(): 'lab setting' | 'kernel' | 'default' {
    return this._user !== null ? 'lab setting' : this._kernel !== null ? 'kernel' : 'default';
  }

  /**
   * Use the lab setting's URL; an empty one follows the kernel again.
   *
   * @returns an error message with the fix when the URL is not http(s), else `null`
   *   (the previous base stays in force on error).
   */
  setBase(url: string | null | undefined): string | null {
    if (!(url ?? '').trim()) {
      return this._update(() => (this._user = null));
    }
    const clean = mlflowBase(url as string);
    if (clean === null) {
      return (
        `MLflow UI base URL ${JSON.stringify(url)} is not an http(s) address: ` +
        `set e.g. ${DEFAULT_MLFLOW_URL} in Settings > LLMOps, or leave it empty to follow the kernel's ui_url`
      );
    }
    return this._update(() => (this._user = clean));
  }

  /** The kernel's `ui_url` from a record that just arrived; empty or unsafe ones are ignored. */
  setKernelBase(url: string): void {
    const clean = mlflowBase(url);
    if (clean !== null) {
      this._update(() => (this._kernel = clean));
    }
  }

  private _update(change: () => void): null {
    const before = this.base;
    change();
    if (this.base !== before) {
      this._changed.emit(this.base);
    }
    return null;
  }

  private _user: string | null = null;
  private _kernel: string | null = null;
  private _changed = new Signal<this, string>(this);
}

/** One cell's latest lineage. */
export interface CellLineage {
  cellKey: string;
  record: LineageRecord;
  /** Arrival order; a later record is newer. */
  seq: number;
  /** Made by the running kernel, not read from the saved notebook. */
  live: boolean;
}

export interface ShadowEntry extends Verdict {
  cellKey: string;
  experiment_id: string;
}

export interface PinState {
  pins: Pin[];
  drifted: Pin[];
  /** The cell whose record carried this state. */
  cellKey: string;
  executionCount: number | null;
  started: string;
  /** The kernel made this state; `false` when it was read from the saved notebook. */
  live: boolean;
}

class NotebookLineage {
  cells = new Map<string, CellLineage>();
  order: string[] = [];
}

/**
 * Lineage per notebook (keyed by the notebook widget's id) and per cell (keyed by
 * the cell model's id, stable while the notebook is open).
 */
export class LineageModel {
  constructor(readonly links: MlflowLinks = new MlflowLinks()) {}

  /** Emitted with the notebook key whenever that notebook's lineage changes. */
  get changed(): ISignal<this, string> {
    return this._changed;
  }

  /** Emitted when the notebook the panel follows changes. */
  get activeChanged(): ISignal<this, string | null> {
    return this._activeChanged;
  }

  get active(): string | null {
    return this._active;
  }

  set active(key: string | null) {
    if (key !== this._active) {
      this._active = key;
      this._activeChanged.emit(key);
    }
  }

  /**
   * Record a cell's lineage; it replaces what the cell carried before. `live`: the
   * kernel just made it (else it was read from the saved notebook).
   */
  ingest(notebookKey: string, cellKey: string, record: LineageRecord, live = true): void {
    const nb = this._notebook(notebookKey);
    nb.cells.set(cellKey, { cellKey, record, seq: ++this._seq, live });
    if (!nb.order.includes(cellKey)) {
      nb.order.push(cellKey);
    }
    this._changed.emit(notebookKey);
  }

  /** The cell no longer carries lineage (re-run without llmops work, or deleted). */
  forget(notebookKey: string, cellKey: string): void {
    const nb = this._notebooks.get(notebookKey);
    if (nb?.cells.delete(cellKey)) {
      this._changed.emit(notebookKey);
    }
  }

  /** The notebook's cells in document order, so the panel lists them top-down. */
  setOrder(notebookKey: string, cellKeys: string[]): void {
    const nb = this._notebook(notebookKey);
    const changed = cellKeys.join('\n') !== nb.order.join('\n');
    nb.order = [...cellKeys];
    for (const key of [...nb.cells.keys()]) {
      if (!cellKeys.includes(key)) {
        nb.cells.delete(key);
      }
    }
    if (changed) {
      this._changed.emit(notebookKey);
    }
  }

  closeNotebook(notebookKey: string): void {
    this._notebooks.delete(notebookKey);
    if (this._active === notebookKey) {
      this.active = null;
    }
  }

  /** Cells carrying lineage, in document order. */
  cells(notebookKey: string): CellLineage[] {
    const nb = this._notebooks.get(notebookKey);
    if (!nb) {
      return [];
    }
    return nb.order.map(k => nb.cells.get(k)).filter((c): c is CellLineage => !!c);
  }

  /** The latest cell lineage by arrival, or `undefined`. */
  latest(notebookKey: string): CellLineage | undefined {
    let best: CellLineage | undefined;
    for (const c of this.cells(notebookKey)) {
      if (!best || c.seq > best.seq) {
        best = c;
      }
    }
    return best;
  }

  /**
   * The kernel's pins: those of the newest record, which describes the state in
   * force when that cell ran (pin and alias cells emit records too).
   */
  pins(notebookKey: string): PinState | null {
    const latest = this.latest(notebookKey);
    if (!latest) {
      return null;
    }
    const { record } = latest;
    return {
      pins: record.pins,
      drifted: driftedPins(record),
      cellKey: latest.cellKey,
      executionCount: record.execution_count,
      started: record.started,
      live: latest.live
    };
  }

  /** Shadow verdicts, newest first. */
  shadows(notebookKey: string, limit = 10): ShadowEntry[] {
    const byNewest = [...this.cells(notebookKey)].sort((a, b) => b.seq - a.seq);
    const out: ShadowEntry[] = [];
    for (const c of byNewest) {
      const experiment = c.record.runs[0]?.experiment_id ?? '';
      for (const s of c.record.shadow) {
        const run = c.record.runs.find(r => r.run_id === s.run_id);
        out.push({ ...s, cellKey: c.cellKey, experiment_id: run?.experiment_id ?? experiment });
      }
    }
    return out.slice(0, limit);
  }

  private _notebook(key: string): NotebookLineage {
    let nb = this._notebooks.get(key);
    if (!nb) {
      nb = new NotebookLineage();
      this._notebooks.set(key, nb);
    }
    return nb;
  }

  private _notebooks = new Map<string, NotebookLineage>();
  private _seq = 0;
  private _active: string | null = null;
  private _changed = new Signal<this, string>(this);
  private _activeChanged = new Signal<this, string | null>(this);
}

/**
 * Cells loaded from a saved notebook carry no arrival order: order them by when
 * they ran so the newest record (the pin state) is the last one ingested.
 */
export function byStarted<T extends { record: LineageRecord }>(items: T[]): T[] {
  const key = (r: LineageRecord) => {
    if (/^\d+(\.\d+)?$/.test(r.started)) {
      // Epoch seconds (or milliseconds from a JS clock).
      const n = Number(r.started);
      return n < 1e12 ? n * 1000 : n;
    }
    const t = Date.parse(r.started);
    return Number.isFinite(t) ? t : -Infinity;
  };
  return items
    .map((item, i) => ({ item, i }))
    .sort((a, b) => key(a.item.record) - key(b.item.record) || a.i - b.i)
    .map(x => x.item);
}
